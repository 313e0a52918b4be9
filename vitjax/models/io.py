"""Saving and loading converted weights: an orbax PyTree checkpoint plus `spec.json`.

Layout of a checkpoint directory:
  spec.json     ModelSpec.to_dict()
  params/       orbax PyTreeCheckpointer tree {"encoder": {...}, "decoder": {...} (MAE only)}

`save` writes everything into a temporary sibling directory and renames it into place, so a reader
never sees a half-written checkpoint. `load` checks every parameter name and shape against the
spec and reports all missing, unexpected and mis-shaped entries at once.

Examples:
  >>> save("/ckpt/dino_vits16", params, spec)
  >>> module, params, spec = load("/ckpt/dino_vits16")
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vitjax import errors
from vitjax.models import zoo
from vitjax.models.mae_decoder import MAEDecoder
from vitjax.models.vit import VisionTransformer

SPEC_FILE = "spec.json"
PARAMS_DIR = "params"


def _check_tree(tree: dict, expected: dict[str, tuple[int, ...]], where: str) -> None:
    """Raises CheckpointError listing every missing, unexpected and mis-shaped parameter."""
    if not isinstance(tree, dict):
        raise errors.CheckpointError(
            f"{where}: expected a parameter dict, got {type(tree).__name__}"
        )
    got = {k: tuple(np.shape(v)) for k, v in zoo.flatten_params(tree).items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    misshaped = [
        f"{k}: got {got[k]}, expected {expected[k]}"
        for k in sorted(set(got) & set(expected))
        if got[k] != expected[k]
    ]
    if missing or unexpected or misshaped:
        raise errors.CheckpointError(
            f"{where}: parameters do not match the spec; missing {missing}; "
            f"unexpected {unexpected}; mis-shaped {misshaped}"
        )


def _to_numpy(tree: dict) -> dict:
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), tree)


def save(
    checkpoint_dir: str | os.PathLike,
    params: dict,
    spec: zoo.ModelSpec,
    decoder_params: dict | None = None,
) -> str:
    """Writes params (+ MAE decoder) and spec atomically, replacing an existing checkpoint.

    Args:
      checkpoint_dir: destination directory (created; parents too).
      params: encoder parameters of `spec` (a "decoder" entry, as `load` returns, is taken as the
        decoder when `decoder_params` is None).
      spec: the model spec; `has_decoder` is stored as whether a decoder was written.
      decoder_params: optional MAE decoder parameters.

    Returns:
      The absolute checkpoint path.

    Raises:
      CheckpointError: the parameters do not match the spec's shapes.
    """
    path = os.path.abspath(os.fspath(checkpoint_dir))
    params = dict(params)
    if decoder_params is None:
        decoder_params = params.pop("decoder", None)
    else:
        params.pop("decoder", None)
    has_decoder = decoder_params is not None
    if spec.has_decoder != has_decoder:
        logging.info(
            "save %s: has_decoder set to %s (decoder given: %s)", path, has_decoder, has_decoder
        )
        spec = dataclasses.replace(spec, has_decoder=has_decoder)
    _check_tree(params, zoo.param_shapes(spec), f"{path} (encoder params)")
    tree = {"encoder": _to_numpy(params)}
    if has_decoder:
        _check_tree(
            decoder_params, zoo.param_shapes(spec, decoder=True), f"{path} (decoder params)"
        )
        tree["decoder"] = _to_numpy(decoder_params)

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    os.makedirs(tmp)
    try:
        ocp.PyTreeCheckpointer().save(os.path.join(tmp, PARAMS_DIR), tree)
        with open(os.path.join(tmp, SPEC_FILE), "w", encoding="utf-8") as f:
            f.write(spec.to_json())
        if os.path.exists(path):
            # Directories cannot be renamed over non-empty ones: move the old one aside first.
            old = os.path.join(parent, f".{os.path.basename(path)}.old-{uuid.uuid4().hex}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_spec(checkpoint_dir: str | os.PathLike) -> zoo.ModelSpec:
    """Reads `spec.json` of a checkpoint.

    Raises:
      CheckpointError: the directory or file is missing, unreadable or not a valid spec.
    """
    path = os.path.abspath(os.fspath(checkpoint_dir))
    if not os.path.isdir(path):
        raise errors.CheckpointError(f"{path}: checkpoint directory does not exist")
    spec_path = os.path.join(path, SPEC_FILE)
    try:
        with open(spec_path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise errors.CheckpointError(f"{spec_path}: missing model spec file") from e
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.CheckpointError(f"{spec_path}: unreadable model spec ({e})") from e
    try:
        return zoo.ModelSpec.from_dict(data)
    except (errors.ConfigError, TypeError, ValueError) as e:
        raise errors.CheckpointError(f"{spec_path}: invalid model spec: {e}") from e


def _restore(path: str) -> dict:
    params_path = os.path.join(path, PARAMS_DIR)
    if not os.path.isdir(params_path):
        raise errors.CheckpointError(f"{params_path}: missing parameter directory")
    try:
        tree = ocp.PyTreeCheckpointer().restore(params_path)
    except Exception as e:  # orbax raises many types (ValueError, FileNotFoundError, tensorstore)
        raise errors.CheckpointError(f"{params_path}: unreadable orbax checkpoint ({e})") from e
    if not isinstance(tree, dict) or "encoder" not in tree:
        raise errors.CheckpointError(
            f"{params_path}: expected an 'encoder' entry in the checkpoint"
        )
    return tree


def _to_jax(tree: dict) -> dict:
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def load(
    checkpoint_dir: str | os.PathLike, dtype=jnp.float32
) -> tuple[VisionTransformer, dict, zoo.ModelSpec]:
    """Loads a checkpoint written by `save`.

    Args:
      checkpoint_dir: the checkpoint directory.
      dtype: matmul dtype of the returned module (params are float32 regardless).

    Returns:
      (module, params, spec); params["decoder"] holds the MAE decoder when one was saved.

    Raises:
      CheckpointError: missing/corrupt directory, spec or parameters, or parameters that do not
        match the spec (the message names the path and every offending key).
    """
    path = os.path.abspath(os.fspath(checkpoint_dir))
    spec = load_spec(path)
    tree = _restore(path)
    _check_tree(tree["encoder"], zoo.param_shapes(spec), f"{path} (encoder params)")
    params = _to_jax(tree["encoder"])
    if spec.has_decoder:
        if "decoder" not in tree:
            raise errors.CheckpointError(f"{path}: spec says has_decoder but no decoder was saved")
        _check_tree(
            tree["decoder"], zoo.param_shapes(spec, decoder=True), f"{path} (decoder params)"
        )
        params["decoder"] = _to_jax(tree["decoder"])
    return zoo.create_model(spec, dtype), params, spec


def load_decoder(checkpoint_dir: str | os.PathLike, dtype=jnp.float32) -> tuple[MAEDecoder, dict]:
    """Loads the MAE decoder of a checkpoint.

    Returns:
      (MAEDecoder module, decoder params).

    Raises:
      CheckpointError: as `load`, or the checkpoint has no decoder.
    """
    path = os.path.abspath(os.fspath(checkpoint_dir))
    spec = load_spec(path)
    if not spec.has_decoder:
        raise errors.CheckpointError(f"{path}: checkpoint {spec.name!r} has no MAE decoder")
    tree = _restore(path)
    if "decoder" not in tree:
        raise errors.CheckpointError(f"{path}: spec says has_decoder but no decoder was saved")
    _check_tree(tree["decoder"], zoo.param_shapes(spec, decoder=True), f"{path} (decoder params)")
    return zoo.create_decoder(spec, dtype), _to_jax(tree["decoder"])
