"""Saving and loading converted weights: an orbax PyTree checkpoint plus `spec.json`.

Layout of a checkpoint directory:
  spec.json     ModelSpec.to_dict(), with `params_sha256` = `zoo.params_digest` of the params
  params/       orbax PyTreeCheckpointer tree {"encoder": {...}, "decoder": {...} (MAE only)}
  (extra files the caller asked for, e.g. the converter's conversion.json)

`save` writes everything into a temporary sibling directory and renames it into place, so a reader
never sees a half-written checkpoint. It never replaces anything but a previous checkpoint: an
existing non-empty directory is refused unless `overwrite=True`, and even then only when it holds
nothing but a previous checkpoint's files. `load` checks every parameter name and shape against
the spec and the parameters' digest against `spec.json`, and reports all missing, unexpected and
mis-shaped entries at once.

Examples:
  >>> save("/ckpt/dino_vits16", params, spec)
  >>> module, params, spec = load("/ckpt/dino_vits16")
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Collection, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vitjax import errors, fileio
from vitjax.models import zoo
from vitjax.models.mae_decoder import MAEDecoder
from vitjax.models.vit import VisionTransformer

SPEC_FILE = "spec.json"
PARAMS_DIR = "params"
# Names a previous checkpoint may hold besides spec.json and params/ (the converter's record; the
# pretraining run's provenance and loss curve): only a directory holding nothing else is replaced.
KNOWN_EXTRA_FILES = ("conversion.json", "train_info.json", "loss_curve.csv")


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
    *,
    overwrite: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
    protect: Collection[str | os.PathLike] = (),
) -> str:
    """Writes params (+ MAE decoder) and spec atomically into a new checkpoint directory.

    Args:
      checkpoint_dir: destination directory (created; parents too). It must not exist, be empty,
        or (with `overwrite`) hold a previous checkpoint and nothing else.
      params: encoder parameters of `spec` (a "decoder" entry, as `load` returns, is taken as the
        decoder when `decoder_params` is None).
      spec: the model spec; `has_decoder` is stored as whether a decoder was written, and
        `params_sha256` as the digest of the parameters written.
      decoder_params: optional MAE decoder parameters.
      overwrite: replace a previous checkpoint at `checkpoint_dir`.
      extra_files: {file name: bytes} written into the checkpoint directory too (inside the same
        atomic rename); names must be in `KNOWN_EXTRA_FILES`.
      protect: paths (e.g. the converter's input file) that must not lie inside `checkpoint_dir`.

    Returns:
      The absolute checkpoint path.

    Raises:
      CheckpointError: the parameters do not match the spec's shapes, or `checkpoint_dir` is a
        file, holds anything but a previous checkpoint, or holds one and `overwrite` is False.
    """
    path = os.path.abspath(os.fspath(checkpoint_dir))
    extra_files = dict(extra_files or {})
    unknown = sorted(set(extra_files) - set(KNOWN_EXTRA_FILES))
    if unknown:
        raise errors.CheckpointError(
            f"{path}: extra files {unknown} are not checkpoint files; known: {KNOWN_EXTRA_FILES}"
        )
    check_checkpoint_dir(path, overwrite=overwrite, protect=protect)
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
    digest = zoo.params_digest(_loaded_layout(tree))
    if spec.params_sha256 and spec.params_sha256 != digest:
        logging.info("save %s: params_sha256 updated (the parameters differ from the spec's)", path)
    spec = dataclasses.replace(spec, params_sha256=digest)

    tmp = fileio.make_temp_dir(path)
    try:
        ocp.PyTreeCheckpointer().save(os.path.join(tmp, PARAMS_DIR), tree)
        fileio.atomic_write_text(os.path.join(tmp, SPEC_FILE), spec.to_json())
        for name, data in extra_files.items():
            fileio.atomic_write_bytes(os.path.join(tmp, name), data)
        # Checked again right before the rename: the directory may have changed meanwhile.
        check_checkpoint_dir(path, overwrite=overwrite, protect=protect)
        fileio.replace_dir(tmp, path, allowed=(SPEC_FILE, PARAMS_DIR, *KNOWN_EXTRA_FILES))
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def check_checkpoint_dir(
    checkpoint_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    protect: Collection[str | os.PathLike] = (),
    flag: str = "overwrite=True",
) -> bool:
    """Whether `save` may write `checkpoint_dir` (see `fileio.check_output_dir`).

    Returns:
      True when the directory exists (empty, or a previous checkpoint to be replaced).

    Raises:
      CheckpointError: naming the directory and what is in the way.
    """
    return fileio.check_output_dir(
        checkpoint_dir,
        overwrite=overwrite,
        marker=SPEC_FILE,
        allowed=(SPEC_FILE, PARAMS_DIR, *KNOWN_EXTRA_FILES),
        what="vitjax checkpoint",
        error=errors.CheckpointError,
        flag=flag,
        protect=protect,
    )


def _loaded_layout(tree: dict) -> dict:
    """The params as `load` returns them (encoder tree with the decoder under "decoder")."""
    params = dict(tree["encoder"])
    if "decoder" in tree:
        params["decoder"] = tree["decoder"]
    return params


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
    if spec.has_decoder:
        if "decoder" not in tree:
            raise errors.CheckpointError(f"{path}: spec says has_decoder but no decoder was saved")
        _check_tree(
            tree["decoder"], zoo.param_shapes(spec, decoder=True), f"{path} (decoder params)"
        )
    else:
        tree.pop("decoder", None)
    numpy_params = _loaded_layout(_to_numpy(tree))
    digest = zoo.params_digest(numpy_params)
    if spec.params_sha256 and spec.params_sha256 != digest:
        raise errors.CheckpointError(
            f"{os.path.join(path, SPEC_FILE)}: params_sha256 {spec.params_sha256[:16]}... does "
            f"not match the parameters in {os.path.join(path, PARAMS_DIR)} ({digest[:16]}...); "
            "the parameters were changed after saving. Save them again with models.save"
        )
    if not spec.params_sha256:
        # A checkpoint written before digests were recorded: compute it now.
        spec = dataclasses.replace(spec, params_sha256=digest)
    params = _to_jax(numpy_params)
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
