"""Converts official PyTorch ViT checkpoints into vitjax parameter trees, loudly.

The conversion is strict: every tensor the family's official layout requires must be present with
its exact shape, every tensor in the file must be either converted or on the family's list of known
ignorable keys, and the result must match the parameter tree of the vitjax model built from the
spec. Otherwise `CheckpointError` lists all missing, unexpected and mis-shaped keys at once.

Examples:
  >>> conversion = convert_file("dino", "dino_vitbase16_pretrain.pth", "/tmp/dino_vitb16")
  >>> module, params, spec = models.load("/tmp/dino_vitb16")
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from checkpoints_convert import layouts, reader
from vitjax import models
from vitjax.errors import CheckpointError, ConfigError
from vitjax.models import families

CONVERSION_REPORT = "conversion.json"


@dataclasses.dataclass
class Conversion:
    """A converted checkpoint and what happened to each tensor of the file.

    Attributes:
      spec: the vitjax `ModelSpec` of the converted model.
      params: encoder parameter tree (nested dicts of float32 numpy arrays).
      decoder_params: MAE decoder parameter tree, or None when the file has no decoder.
      wrapper: where in the file the tensors were read ("checkpoint['teacher']", "top level").
      converted: file keys that became parameters.
      ignored: file key -> why it was dropped (known-ignorable key or other training branch).
      other_entries: top-level entries of a training checkpoint that were not read.
    """

    spec: models.ModelSpec
    params: dict[str, Any]
    decoder_params: dict[str, Any] | None
    wrapper: str
    converted: list[str]
    ignored: dict[str, str]
    other_entries: list[str]

    def summary(self) -> str:
        """One paragraph for the log: counts and the ignored keys grouped by reason."""
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.ignored.items():
            by_reason.setdefault(reason, []).append(key)
        lines = [
            f"{self.spec.name}: converted {len(self.converted)} tensors from {self.wrapper}"
            + (" (+ MAE decoder)" if self.decoder_params is not None else "")
        ]
        for reason, keys in sorted(by_reason.items()):
            shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
            lines.append(f"  ignored {len(keys)} ({reason}): {shown}")
        if self.other_entries:
            lines.append(f"  top-level entries not read: {', '.join(self.other_entries)}")
        return "\n".join(lines)

    def report(self) -> dict[str, Any]:
        """JSON-serialisable record of the conversion (written next to the checkpoint)."""
        return {
            "name": self.spec.name,
            "family": self.spec.family,
            "weights_hash": self.spec.weights_hash,
            "params_sha256": self.spec.params_sha256,
            "wrapper": self.wrapper,
            "converted": sorted(self.converted),
            "ignored": dict(sorted(self.ignored.items())),
            "top_level_entries_not_read": self.other_entries,
            "has_decoder": self.decoder_params is not None,
        }


# --------------------------------------------------------------------------------------------
# Shapes inferred from the file.


@dataclasses.dataclass(frozen=True)
class FileShapes:
    """Dimensions read off the file's tensors (None where the tensor is absent or odd)."""

    width: int | None = None
    patch_size: int | None = None
    depth: int | None = None
    grid: tuple[int, int] | None = None
    num_registers: int | None = None
    decoder_depth: int | None = None
    # Further ModelSpec fields the layout reads off the file, e.g. (("proj_dim", 768),), or
    # implied by its flavour (the position resampling rule of an HF vs a big_vision SigLIP file).
    spec_fields: tuple[tuple[str, Any], ...] = ()


def _block_indices(prefix_format: str, keys) -> set[int]:
    pattern = re.compile("^" + re.escape(prefix_format).replace(r"\{i\}", r"(\d+)"))
    return {int(m.group(1)) for k in keys if (m := pattern.match(k))}


def _square_side(count: int) -> int | None:
    side = math.isqrt(count)
    return side if side * side == count and side > 0 else None


def infer_file_shapes(family: str, tensors: Mapping[str, np.ndarray]) -> FileShapes:
    """Reads width, patch size, depth, native grid and register count off a canonical state dict."""
    _, patch, pos, _ = layouts.model_names(family)
    width = patch_size = grid = num_registers = None
    weight = tensors.get(f"{patch}.weight")
    if weight is not None and weight.ndim == 4 and weight.shape[2] == weight.shape[3]:
        width, patch_size = int(weight.shape[0]), int(weight.shape[2])
    blocks = _block_indices(layouts.block_names(family).prefix, tensors)
    depth = max(blocks) + 1 if blocks else None
    if pos is not None and (p := tensors.get(pos)) is not None and p.ndim == 3:
        side = _square_side(p.shape[1] - 1)
        grid = (side, side) if side else None
    decoder_blocks = _block_indices(layouts.MAE_DECODER_BLOCK.prefix, tensors)
    decoder_depth = max(decoder_blocks) + 1 if decoder_blocks else None
    shapes = FileShapes(width, patch_size, depth, grid, num_registers, decoder_depth)
    # Family-specific fields (SimMIM's grid from its bias table, DINOv2-reg's register count).
    infer = layouts.get_layout(family).infer
    return dataclasses.replace(shapes, **infer(tensors)) if infer is not None else shapes


def _pick_size(
    family: str,
    width: int | None,
    patch_size: int | None,
    grid: tuple[int, int] | None = None,
    spec_fields=(),
) -> tuple[str, str | None]:
    """The registered size whose width is `width`, and a note when there is none.

    Among sizes of that width, one whose patch size and native grid match wins (CLIP L/14 at 224
    and at 336 px differ only in their grid), then one whose patch size matches. Sizes of one
    width and patch (DINOv3 S and S+) are told apart first by the spec fields the file implies
    (its MLP kind): sizes whose spec agrees with all of them come first.
    """
    variants = [(s, p) for f, s, p in models.list_variants() if f == family]
    sizes = [s for s, _ in variants]
    # Without a match, fall back to a base model so that the key comparison can still report
    # everything that is missing or mis-shaped.
    fallback = "b" if "b" in sizes else sizes[0]
    if width is None:
        return fallback, None
    matches = [
        (s, p) for s, p in variants if models.get_spec(family, s, patch_size=p).width == width
    ]
    if not matches:
        known = sorted({(s, models.get_spec(family, s, patch_size=p).width) for s, p in variants})
        return fallback, (
            f"the patch embedding width {width} matches no '{family}' size; known (size, width): "
            f"{known}"
        )

    def agrees(item) -> bool:
        spec = models.get_spec(family, item[0], patch_size=item[1])
        return all(getattr(spec, field) == value for field, value in spec_fields)

    matches.sort(key=lambda item: not agrees(item))  # stable: registry order otherwise
    for size, patch in matches:
        native = models.get_spec(family, size, patch_size=patch).native_grid
        if patch == patch_size and grid is not None and tuple(grid) == native:
            return size, None
    for size, patch in matches:
        if patch == patch_size:
            return size, None
    return matches[0][0], None


def build_spec(
    family: str,
    shapes: FileShapes,
    *,
    size: str | None,
    patch_size: int | None,
    depth: int | None,
    decoder_depth: int | None,
    with_decoder: bool,
    weights_hash: str,
    source: str,
) -> tuple[models.ModelSpec, list[str]]:
    """The `ModelSpec` the file is converted to: explicit arguments first, then the file's shapes.

    Depth is never inferred: a file missing its last blocks must fail, not convert to a shallower
    model. Pass `depth` for reduced-depth test checkpoints.

    Returns:
      (spec, notes): notes explain inferred values that fit no registered variant (the spec then
      falls back to a default one and the key comparison reports the mismatching shapes).

    Raises:
      CheckpointError: unknown family, or an explicit size/patch size that is not registered.
    """
    layouts.get_layout(family)  # CheckpointError naming the known families
    notes = []
    if size is None:
        size, note = _pick_size(
            family, shapes.width, patch_size or shapes.patch_size, shapes.grid, shapes.spec_fields
        )
        notes += [note] if note else []
    patch = patch_size or shapes.patch_size
    try:
        if patch_size is None and patch is not None:
            try:
                models.get_spec(family, size, patch_size=patch)
            except ConfigError as err:
                notes.append(f"the file's patch size does not fit: {err}")
                patch = None
        base = models.get_spec(family, size, patch_size=patch)
    except ConfigError as err:
        raise CheckpointError(f"{source}: {err}") from err
    overrides: dict[str, Any] = {}
    if depth is not None and depth != base.depth:
        overrides["depth"] = depth
    if shapes.grid is not None and tuple(shapes.grid) != _grid(base):
        overrides["native_grid"] = shapes.grid
    if shapes.num_registers not in (None, base.num_registers):
        overrides["num_registers"] = shapes.num_registers
    if with_decoder and decoder_depth is not None and decoder_depth != base.decoder_depth:
        overrides["decoder_depth"] = decoder_depth
    for field, value in shapes.spec_fields:
        if getattr(base, field) != value:
            overrides[field] = value
    spec = (
        models.get_spec(family, size, patch_size=base.patch_size, **overrides)
        if overrides
        else base
    )
    # has_decoder is a property of this file, not a variant: keep it out of the spec's name.
    spec = dataclasses.replace(spec, has_decoder=with_decoder, weights_hash=weights_hash)
    return spec, notes


def _grid(spec: models.ModelSpec) -> tuple[int, int]:
    return tuple(spec.native_grid)


def encoder_dims(spec: models.ModelSpec, options: Mapping[str, Any] | None = None):
    """The layout dimensions implied by a `ModelSpec` (plus config-derived layout options)."""
    return layouts.EncoderDims(
        width=spec.width,
        depth=spec.depth,
        patch_size=spec.patch_size,
        mlp_dim=spec.mlp_dim,
        num_heads=spec.num_heads,
        grid=_grid(spec),
        num_registers=spec.num_registers,
        mlp=spec.mlp,
        qkv_bias=spec.qkv_bias,
        proj_dim=spec.proj_dim,
        options=tuple(sorted((options or {}).items())),
    )


def decoder_dims(spec: models.ModelSpec) -> layouts.DecoderDims:
    """MAE decoder layout dimensions implied by a `ModelSpec`."""
    rows, cols = _grid(spec)
    return layouts.DecoderDims(
        width=spec.decoder_width,
        depth=spec.decoder_depth,
        mlp_dim=spec.decoder_mlp_dim,
        num_patches=rows * cols,
        pred_dim=spec.patch_size * spec.patch_size * 3,
    )


# --------------------------------------------------------------------------------------------
# Matching the file against the layout.


@dataclasses.dataclass
class Match:
    """Result of comparing a canonical state dict with a family's expected layout."""

    rules: list[layouts.Rule]
    decoder_rules: list[layouts.Rule]
    missing: list[str]
    unexpected: list[str]
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    ignored: dict[str, str]
    bad_values: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.misshaped or self.bad_values)


def match_layout(
    family: str,
    spec: models.ModelSpec,
    state: layouts.SelectedState,
    options: Mapping[str, Any] | None = None,
) -> Match:
    """Compares the selected tensors with every key the family's layout expects at `spec`."""
    layout = layouts.get_layout(family)
    rules = layouts.encoder_rules(family, encoder_dims(spec, options), state.tensors)
    dec_rules = []
    if layout.has_decoder and spec.has_decoder:
        dec_rules = layouts.decoder_rules(spec.width, decoder_dims(spec))
    expected: dict[str, tuple[int, ...]] = {}
    for rule in rules + dec_rules:
        expected.update(zip(rule.sources, rule.shapes, strict=True))
    tensors = state.tensors
    missing = [k for k in expected if k not in tensors]
    misshaped = [
        (state.original[k], tuple(tensors[k].shape), shape)
        for k, shape in expected.items()
        if k in tensors and tuple(tensors[k].shape) != shape
    ]
    unexpected, ignored, bad_values = [], {}, []
    for name in tensors:
        if name in expected:
            continue
        reason = layouts.ignorable_reason(family, name)
        if reason is None:
            unexpected.append(state.original[name])
        else:
            ignored[state.original[name]] = reason
    for name, value in tensors.items():
        if name in expected and not np.issubdtype(value.dtype, np.floating):
            bad_values.append(f"{state.original[name]}: dtype {value.dtype}, expected floating")
    if layout.check_values is not None:
        for key, problem in layout.check_values(tensors, _grid(spec)):
            bad_values.append(f"{state.original[key]}: {problem}")
    if layout.check_dims is not None:
        for key, problem in layout.check_dims(tensors, encoder_dims(spec)):
            bad_values.append(f"{state.original[key]}: {problem}")
    return Match(
        rules,
        dec_rules,
        sorted(missing, key=_natural),
        sorted(unexpected, key=_natural),
        sorted(misshaped, key=lambda item: _natural(item[0])),
        ignored,
        bad_values,
    )


def _natural(key: str) -> list:
    """Sort key that orders blocks.2 before blocks.10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _family_hints(family: str, checkpoint: Mapping[str, Any], checkpoint_key, source) -> list[str]:
    """Other families whose layout the file matches exactly (for the error message)."""
    hints = []
    for other in layouts.convertible_families():
        if other == family:
            continue
        try:
            state = layouts.canonicalize(other, checkpoint, checkpoint_key, source)
            shapes = infer_file_shapes(other, state.tensors)
            keys = list(state.tensors)
            spec, _ = build_spec(
                other,
                shapes,
                size=None,
                patch_size=None,
                depth=shapes.depth,
                decoder_depth=shapes.decoder_depth,
                with_decoder=layouts.has_mae_decoder(keys),
                weights_hash="",
                source=source,
            )
            if match_layout(other, spec, state).ok:
                hints.append(other)
        except Exception:  # a hint is best effort; the real error is raised by the caller
            continue
    return hints


def _format_error(
    source: str,
    family: str,
    spec: models.ModelSpec,
    state: layouts.SelectedState,
    match: Match,
    hints: list[str],
    notes: list[str],
) -> str:
    lines = [
        f"{source}: cannot convert as family '{family}' ({spec.name}: depth {spec.depth}, width "
        f"{spec.width}, patch {spec.patch_size}; tensors read from {state.wrapper})."
    ]
    if match.missing:
        lines.append(
            f"  missing ({len(match.missing)}, official names): {', '.join(match.missing)}"
        )
    if match.unexpected:
        lines.append(f"  unexpected ({len(match.unexpected)}): {', '.join(match.unexpected)}")
    if match.misshaped:
        shown = "; ".join(f"{k}: file {got}, expected {want}" for k, got, want in match.misshaped)
        lines.append(f"  mis-shaped ({len(match.misshaped)}): {shown}")
    if match.bad_values:
        lines.append(f"  bad values ({len(match.bad_values)}): {'; '.join(match.bad_values)}")
    file_depth = infer_file_shapes(family, state.tensors).depth
    if file_depth is not None and file_depth != spec.depth:
        lines.append(f"  the file has {file_depth} blocks; pass depth={file_depth} if intended")
    lines += [f"  {note}" for note in notes]
    if hints:
        lines.append(f"  the keys match family {hints} exactly; is --family right?")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Building and checking the trees.


def _set(tree: dict[str, Any], path: tuple[str, ...], value: np.ndarray) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _build_tree(rules: list[layouts.Rule], tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for rule in rules:
        arrays = [np.asarray(tensors[k], dtype=np.float32) for k in rule.sources]
        _set(tree, rule.target, np.asarray(rule.build(*arrays), dtype=np.float32))
    return tree


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[int, ...]]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = tuple(value.shape)
    return flat


def _check_against_model(spec: models.ModelSpec, params, decoder_params) -> None:
    """Fails if the converted trees differ from the trees the vitjax model itself creates."""
    pairs = [("encoder", _flatten(params), models.param_shapes(spec))]
    if decoder_params is not None:
        pairs.append(("decoder", _flatten(decoder_params), models.param_shapes(spec, decoder=True)))
    for what, got, want in pairs:
        if got != want:
            extra = sorted(set(got) - set(want))
            lacking = sorted(set(want) - set(got))
            shapes = sorted(k for k in set(got) & set(want) if got[k] != want[k])
            raise CheckpointError(
                f"converter bug: the {what} tree for {spec.name} differs from the vitjax model's: "
                f"extra {extra}, lacking {lacking}, shapes differ {shapes}"
            )


# Families whose official files are self-supervised backbones: none carries a classification
# head (docs/checkpoints.md section 5). A file that has one is a fine-tuned or
# supervised model, whose patch features are not the ones the family's results describe.
BACKBONE_ONLY_FAMILIES = ("dino", "ibot", "mae", "dinov2", "dinov2_reg")
_CLASSIFIER_KEYS = re.compile(r"^head(\.fc)?\.weight$")  # timm: `head`, newer timm: `head.fc`


def classifier_head(family: str, state: layouts.SelectedState) -> str | None:
    """Describes the linear classification head of a backbone-only family's file, if it has one.

    The projection heads of the official training checkpoints (DINO/iBOT `head.mlp.*`,
    `head.last_layer.*`; DINOv2 `dino_head.*`, `ibot_head.*`) are not classifiers and pass.

    Returns:
      e.g. "a supervised classifier with a 1000-way head: head.weight [1000, 768]", or None.
    """
    if family not in BACKBONE_ONLY_FAMILIES:
        return None
    heads = [
        (state.original[name], tuple(value.shape))
        for name, value in state.tensors.items()
        if _CLASSIFIER_KEYS.match(name) and value.ndim == 2
    ]
    if not heads:
        return None
    key, shape = heads[0]
    fine_tuned = any(name.startswith("fc_norm.") for name in state.tensors)
    kind = "a fine-tuned classifier" if fine_tuned else "a supervised classifier"
    return f"{kind} with a {shape[0]}-way head: {key} {list(shape)}"


def convert_checkpoint(
    family: str,
    checkpoint: Mapping[str, Any],
    *,
    size: str | None = None,
    patch_size: int | None = None,
    checkpoint_key: str | None = None,
    depth: int | None = None,
    decoder_depth: int | None = None,
    weights_hash: str = "unknown",
    source: str = "<checkpoint>",
    check_model: bool = True,
    config: Mapping[str, Any] | None = None,
    allow_classifier_head: bool = False,
    weight_set: str | None = None,
) -> Conversion:
    """Converts a checkpoint already read into memory (see `reader.read_checkpoint`).

    Args:
      family: one of `layouts.FAMILIES`.
      checkpoint: top-level mapping of the file (flat state dict or training checkpoint).
      size: model size ('s', 'b', 'l'...); inferred from the patch-embedding width when None.
      patch_size: inferred from the patch-embedding kernel when None.
      checkpoint_key: wrapper entry or training branch to read; default: flat, else `teacher`,
        `model`, `state_dict`, `student` in that order (see `layouts.select_state_dict`).
      depth: number of blocks; default the size's standard depth (never inferred, so a file
        missing blocks fails).
      decoder_depth: MAE decoder blocks; default the spec's.
      weights_hash: recorded in the spec (the CLI passes the file's sha256).
      source: file name used in messages.
      check_model: also compare the converted tree with the vitjax model's own parameter tree.
      config: the layout's config file content (timm: the Hub config.json), for layouts that
        build the spec from it.
      allow_classifier_head: convert a DINO/iBOT/MAE/DINOv2 file that carries a linear
        classification head (a supervised or fine-tuned model; the head is dropped). Refused
        by default: the official files of these families have none.
      weight_set: a named weight set of the family record whose preprocessing differs from the
        default (DINOv3 'sat493m'); None = the default.

    Returns:
      The `Conversion` (trees of float32 numpy arrays, spec with `params_sha256`, report of
      ignored keys).

    Raises:
      CheckpointError: with the complete list of missing, unexpected and mis-shaped keys, or a
        classification head in a backbone-only family's file.
    """
    layout = layouts.get_layout(family)  # CheckpointError naming the known families
    state = layouts.canonicalize(family, checkpoint, checkpoint_key, source)
    head = classifier_head(family, state)
    if head is not None and not allow_classifier_head:
        raise CheckpointError(
            f"{source}: looks like {head}; the official {family} files are self-supervised "
            f"backbones without a classification head, so this is not a {family} checkpoint as "
            "published. Check --family and --input; to convert its backbone anyway (the head is "
            "dropped), pass --allow_classifier_head"
        )
    shapes = infer_file_shapes(family, state.tensors)
    options: dict[str, Any] = {}
    retarget: dict[str, Any] = {}
    if layout.from_config is not None:
        if config is None:
            raise CheckpointError(
                f"{source}: family '{family}' needs its {layout.config_file} (the model's "
                "configuration) next to the weights"
            )
        fields, options, unsupported = layout.from_config(config, source)
        if unsupported:
            raise CheckpointError(
                f"{source}: cannot convert as family '{family}': the vitjax ViT cannot express "
                f"{len(unsupported)} option(s) of this model: " + "; ".join(unsupported)
            )
        # A config may convert onto another family's model (timm's DINOv3 ports -> dinov3).
        retarget = {k: fields.pop(k) for k in ("family", "size") if k in fields}
        shapes = dataclasses.replace(shapes, spec_fields=shapes.spec_fields + tuple(fields.items()))
    with_decoder = layout.has_decoder and layouts.has_mae_decoder(list(state.tensors))
    spec, notes = build_spec(
        family,
        shapes,
        size=size,
        patch_size=patch_size,
        depth=depth,
        decoder_depth=decoder_depth,
        with_decoder=with_decoder,
        weights_hash=weights_hash,
        source=source,
    )
    if retarget:
        spec = dataclasses.replace(spec, **retarget)
    if weight_set is not None:
        try:
            prep = families.get_family(family).weight_set(weight_set)
        except ConfigError as err:
            raise CheckpointError(f"{source}: {err}") from err
        spec = dataclasses.replace(spec, preprocessing=prep)
    match = match_layout(family, spec, state, options)
    if not match.ok:
        hints = _family_hints(family, checkpoint, checkpoint_key, source)
        raise CheckpointError(_format_error(source, family, spec, state, match, hints, notes))
    params = _build_tree(match.rules, state.tensors)
    decoder_params = (
        _build_tree(match.decoder_rules, state.tensors) if match.decoder_rules else None
    )
    if check_model:
        _check_against_model(spec, params, decoder_params)
    converted = sorted(
        {state.original[k] for rule in match.rules + match.decoder_rules for k in rule.sources}
    )
    ignored = {**match.ignored, **state.dropped}
    if head is not None:
        for name in state.tensors:
            if name.startswith(("head.", "fc_norm.")) or _CLASSIFIER_KEYS.match(name):
                ignored[state.original[name]] = (
                    "classification head (allowed by --allow_classifier_head)"
                )
    all_params = dict(params, decoder=decoder_params) if decoder_params is not None else params
    spec = dataclasses.replace(spec, params_sha256=models.params_digest(all_params))
    return Conversion(
        spec=spec,
        params=params,
        decoder_params=decoder_params,
        wrapper=state.wrapper,
        converted=converted,
        ignored=ignored,
        other_entries=state.other_entries,
    )


def weight_set_of_file(family: str, path: str) -> str | None:
    """The family's named weight set that the file name mentions (e.g. 'sat493m'), or None."""
    name = os.path.basename(path).lower()
    if family not in families.family_names():
        return None
    found = [w for w, _ in families.get_family(family).weight_sets if w.lower() in name]
    return found[0] if found else None


def _read_layout_config(family: str, input_path: str) -> dict[str, Any] | None:
    """The config file the family's layout needs beside the weights (timm: config.json)."""
    name = layouts.get_layout(family).config_file
    if name is None:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(input_path)), name)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"{input_path}: family '{family}' needs {name} beside the weights (expected {path}; "
            "timm's Hub repos and timm.models.push_to_hf_hub.save_for_hf write it)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable JSON config: {err}") from err


def convert_file(
    family: str,
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    size: str | None = None,
    patch_size: int | None = None,
    checkpoint_key: str | None = None,
    depth: int | None = None,
    decoder_depth: int | None = None,
    overwrite: bool = False,
    allow_classifier_head: bool = False,
    weight_set: str | None = None,
) -> Conversion:
    """Reads an official checkpoint file and writes the vitjax checkpoint (what the CLI runs).

    Writes `output_dir` with `models.save` (orbax params + spec.json; the spec's `weights_hash` is
    the sha256 of `input_path`, its `params_sha256` the digest of the converted parameters), plus
    `conversion.json` listing converted and ignored keys, all in one atomic rename. Nothing but
    a previous conversion is ever replaced: `output_dir` must not exist or be empty, or, with
    `overwrite`, hold a previous conversion and nothing else; it may never contain the input.
    This is checked before the input is read.

    Args:
      family: one of `layouts.FAMILIES`.
      input_path: `.pth`/`.pt` (read with `weights_only=True`) or `.safetensors`.
      output_dir: destination directory (created with its parents).
      size, patch_size, checkpoint_key, depth, decoder_depth, allow_classifier_head: see
        `convert_checkpoint`.
      overwrite: replace a previous conversion in `output_dir`.
      weight_set: see `convert_checkpoint`; None = the family's weight set whose name the file
        name contains (DINOv3's `..._sat493m-<hash>.pth`), else the default.

    Returns:
      The `Conversion`.

    Raises:
      CheckpointError: unreadable/truncated/unsafe file, a layout mismatch (all keys listed), or
        an output directory that may not be written (named, with what is in the way).
    """
    input_path = os.fspath(input_path)
    output_dir = os.fspath(output_dir)
    models.check_checkpoint_dir(
        output_dir, overwrite=overwrite, protect=[input_path], flag="--overwrite"
    )
    checkpoint = reader.read_checkpoint(input_path)
    config = _read_layout_config(family, input_path)
    if weight_set is None:
        weight_set = weight_set_of_file(family, input_path)
    conversion = convert_checkpoint(
        family,
        checkpoint,
        size=size,
        patch_size=patch_size,
        checkpoint_key=checkpoint_key,
        depth=depth,
        decoder_depth=decoder_depth,
        weights_hash=reader.file_sha256(input_path),
        source=input_path,
        config=config,
        allow_classifier_head=allow_classifier_head,
        weight_set=weight_set,
    )
    report = {"source": os.path.abspath(input_path), **conversion.report()}
    models.save(
        output_dir,
        conversion.params,
        conversion.spec,
        decoder_params=conversion.decoder_params,
        overwrite=overwrite,
        extra_files={
            CONVERSION_REPORT: (json.dumps(report, indent=1, sort_keys=True) + "\n").encode()
        },
        protect=[input_path],
    )
    logging.info("%s\n  written to %s", conversion.summary(), output_dir)
    return conversion
