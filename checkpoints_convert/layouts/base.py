"""What every family's checkpoint layout shares, and the registry of layouts.

Each family's official names live in one module, `checkpoints_convert/layouts/<layout>.py`, that
registers a `Layout` under the layout name of the family's record (vitjax/models/families.py).
Conversion happens in two steps. `canonicalize` turns whatever wrapper/prefix a file uses
(`model`, `teacher`, `state_dict`, `module.`, `backbone.`, `encoder.`, DINOv2 block chunks,
torchvision's pre-2022 MLP names) into the family's canonical official names, e.g.
`blocks.3.attn.qkv.weight`. `encoder_rules`/`decoder_rules` then list, for given dimensions, every
canonical key the family must have, its shape, and the Flax parameter it becomes. Keys the family
is known to carry but vitjax does not use (heads, mask tokens, decoders of other purposes) are
listed in the layout's `ignorable` patterns and reported by the converter.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vitjax.errors import CheckpointError
from vitjax.models import families

# Wrapper entries tried, in order, when the caller does not name one. Teacher first: the paper and
# the official evaluation scripts use the teacher (dino#44).
WRAPPER_KEYS = ("teacher", "model", "state_dict", "student", "module", "encoder")
BRANCHES = ("teacher", "student")


@dataclasses.dataclass(frozen=True)
class EncoderDims:
    """Encoder sizes that fix every tensor shape of a family's official layout."""

    width: int
    depth: int
    patch_size: int
    mlp_dim: int
    num_heads: int
    grid: tuple[int, int]  # native patch grid (rows, cols) of the stored position embedding
    num_registers: int = 0
    mlp: str = "gelu"  # 'swiglu' blocks store mlp.w12 [2 * mlp_dim, D] and mlp.w3 [D, mlp_dim]
    qkv_bias: str = "full"  # the spec's qkv bias kind ('none': no qkv bias tensor)
    proj_dim: int = 0  # output width of CLIP's image projection; 0 = none
    # Layout options read from a config file (timm: no_embed_class, patch_bias...), as pairs.
    options: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class DecoderDims:
    """MAE decoder sizes."""

    width: int
    depth: int
    mlp_dim: int
    num_patches: int
    pred_dim: int  # P * P * 3


@dataclasses.dataclass(frozen=True)
class Rule:
    """One Flax parameter, built from one or more canonical official tensors.

    Attributes:
      target: path in the Flax tree, e.g. ("block_0", "attn", "qkv", "kernel").
      sources: canonical official keys it is made from.
      shapes: the official shape of each source.
      build: maps the source arrays (in `sources` order) to the Flax array.
    """

    target: tuple[str, ...]
    sources: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    build: Callable[..., np.ndarray]


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _linear_kernel(w: np.ndarray) -> np.ndarray:
    # torch Linear stores (out, in); Flax Dense wants (in, out).
    return np.ascontiguousarray(w.T)


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    # torch Conv2d OIHW -> Flax Conv HWIO.
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _qv_bias(q_bias: np.ndarray, v_bias: np.ndarray) -> np.ndarray:
    # BEiT/SimMIM attention has no key bias: the fused bias is cat(q_bias, 0, v_bias).
    return np.concatenate([q_bias, np.zeros_like(q_bias), v_bias])


def _one(target: tuple[str, ...], key: str, shape: tuple[int, ...], build=_same) -> Rule:
    return Rule(target, (key,), (shape,), build)


one_rule = _one  # for the layout modules
linear_kernel = _linear_kernel
conv_kernel = _conv_kernel


def square_side(count: int) -> int | None:
    """s when count == s * s > 0, else None (square grids read off table lengths)."""
    side = math.isqrt(count)
    return side if side * side == count and side > 0 else None


# --------------------------------------------------------------------------------------------
# Per-family official names.


@dataclasses.dataclass(frozen=True)
class BlockNames:
    """Official names of one transformer block's tensors, relative to the block prefix."""

    prefix: str  # format string with {i}
    norm1: str = "norm1"
    qkv_weight: str = "attn.qkv.weight"
    qkv_bias: str | None = "attn.qkv.bias"
    proj: str = "attn.proj"
    norm2: str = "norm2"
    fc1: str = "mlp.fc1"
    fc2: str = "mlp.fc2"
    w12: str = "mlp.w12"  # SwiGLU (DINOv2 SwiGLUFFNFused): fused [w1; w2]
    w3: str = "mlp.w3"
    ls1: str | None = None
    ls2: str | None = None


TIMM_BLOCK = BlockNames(prefix="blocks.{i}.")
MAE_DECODER_BLOCK = BlockNames(prefix="decoder_blocks.{i}.")

TIMM_MODEL_NAMES = ("cls_token", "patch_embed.proj", "pos_embed", "norm")


@dataclasses.dataclass(frozen=True)
class Layout:
    """One family's official checkpoint layout.

    Attributes:
      name: the layout name a `FamilyRecord.layout` refers to.
      block: official names of a block's tensors.
      model_names: (cls token key, patch conv prefix, position embedding key or None, final norm
        prefix).
      ignorable: (regex, reason) of keys the official files carry that vitjax does not use.
      extra_rules: rules beyond the standard ones (registers, relative position bias).
      rules: replaces the standard rules altogether (layouts that are not timm-like, e.g. CLIP).
      rename: the family's own renaming of a key, after the common prefix stripping.
      strip_encoder_prefix: drop a leading `encoder.` (SimMIM nests its ViT under it;
        torchvision's own names start with it).
      infer: reads family-specific shape fields (`FileShapes` names) off the canonical tensors.
      check_values: (canonical tensors, native grid) -> [(canonical key, problem)] for values
        that are wrong although their shapes fit (SimMIM's relative position index).
      has_decoder: MAE decoder keys may come with the encoder.
      config_file: name of a config file the weights need beside them (timm: config.json).
      from_config: (config, source) -> (spec fields, layout options, unsupported options).
      keyed_rules: (dims, canonical tensors) -> every encoder rule, like `rules`, for layouts
        whose rules depend on the file's keys (DINOv3, SigLIP). A layout with several
        official flavours (a .pth and an HF safetensors naming) picks the flavour from the
        keys; the keys of another flavour are then unexpected, so a mixed file is refused.
      check_dims: (canonical tensors, dims) -> [(canonical key, problem)], like `check_values`
        for values that depend on the dimensions (DINOv3's RoPE periods, k-bias mask).
    """

    name: str
    block: BlockNames
    model_names: tuple[str, str, str | None, str] = TIMM_MODEL_NAMES
    ignorable: tuple[tuple[str, str], ...] = ()
    extra_rules: Callable[[EncoderDims], list[Rule]] | None = None
    rules: Callable[[EncoderDims], list[Rule]] | None = None
    rename: Callable[[str], str] | None = None
    strip_encoder_prefix: bool = True
    infer: Callable[[Mapping[str, np.ndarray]], dict[str, Any]] | None = None
    check_values: (
        Callable[[Mapping[str, np.ndarray], tuple[int, int]], list[tuple[str, str]]] | None
    ) = None
    has_decoder: bool = False
    config_file: str | None = None
    from_config: (
        Callable[[Mapping[str, Any], str], tuple[dict[str, Any], dict[str, Any], list[str]]] | None
    ) = None
    keyed_rules: Callable[[EncoderDims, Mapping[str, np.ndarray]], list[Rule]] | None = None
    check_dims: Callable[[Mapping[str, np.ndarray], EncoderDims], list[tuple[str, str]]] | None = (
        None
    )


_LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Adds `layout` to the registry under `layout.name`; returns it."""
    if layout.name in _LAYOUTS:
        raise CheckpointError(f"layout {layout.name!r} is already registered")
    _LAYOUTS[layout.name] = layout
    return layout


def layout_names() -> tuple[str, ...]:
    """Names of the registered layouts."""
    return tuple(_LAYOUTS)


def convertible_families() -> tuple[str, ...]:
    """The families (registry order) whose record names a registered layout."""
    return tuple(f.name for f in families.list_families() if f.layout in _LAYOUTS)


def get_layout(family: str) -> Layout:
    """The layout of `family` (via its record); CheckpointError naming the known ones otherwise."""
    known = convertible_families()
    if family not in known:
        raise CheckpointError(f"unknown family '{family}'; known families: {known}")
    return _LAYOUTS[families.get_family(family).layout]


def block_names(family: str) -> BlockNames:
    """Official block tensor names of `family`."""
    return get_layout(family).block


def model_names(family: str) -> tuple[str, str, str | None, str]:
    """Returns (cls token key, patch conv prefix, pos-embed key or None, final-norm prefix)."""
    return get_layout(family).model_names


# MAE decoder keys outside the decoder blocks. Present together or not at all.
MAE_DECODER_TOP_KEYS = (
    "decoder_embed.weight",
    "decoder_embed.bias",
    "mask_token",
    "decoder_pos_embed",
    "decoder_norm.weight",
    "decoder_norm.bias",
    "decoder_pred.weight",
    "decoder_pred.bias",
)


def ignorable_reason(family: str, key: str) -> str | None:
    """Why `key` (canonical) may be dropped for `family`, or None if it must be converted."""
    for pattern, reason in get_layout(family).ignorable:
        if re.fullmatch(pattern, key):
            return reason
    return None


def has_mae_decoder(keys: Sequence[str]) -> bool:
    """True when any MAE decoder tensor is present (then all of them must be)."""
    return any(k in MAE_DECODER_TOP_KEYS or k.startswith("decoder_blocks.") for k in keys)


# --------------------------------------------------------------------------------------------
# Rules: every official tensor of a family, its shape and its Flax target.


def _block_rules(
    names: BlockNames,
    i: int,
    width: int,
    mlp_dim: int,
    target_prefix: str,
    mlp: str = "gelu",
) -> list[Rule]:
    p = names.prefix.format(i=i)
    t = f"{target_prefix}{i}"
    d, m = width, mlp_dim
    rules = [
        _one((t, "norm1", "scale"), f"{p}{names.norm1}.weight", (d,)),
        _one((t, "norm1", "bias"), f"{p}{names.norm1}.bias", (d,)),
        _one((t, "attn", "qkv", "kernel"), p + names.qkv_weight, (3 * d, d), _linear_kernel),
        _one((t, "attn", "proj", "kernel"), f"{p}{names.proj}.weight", (d, d), _linear_kernel),
        _one((t, "attn", "proj", "bias"), f"{p}{names.proj}.bias", (d,)),
        _one((t, "norm2", "scale"), f"{p}{names.norm2}.weight", (d,)),
        _one((t, "norm2", "bias"), f"{p}{names.norm2}.bias", (d,)),
    ]
    if mlp == "swiglu":
        rules += [
            _one((t, "mlp", "w12", "kernel"), f"{p}{names.w12}.weight", (2 * m, d), _linear_kernel),
            _one((t, "mlp", "w12", "bias"), f"{p}{names.w12}.bias", (2 * m,)),
            _one((t, "mlp", "w3", "kernel"), f"{p}{names.w3}.weight", (d, m), _linear_kernel),
            _one((t, "mlp", "w3", "bias"), f"{p}{names.w3}.bias", (d,)),
        ]
    else:
        rules += [
            _one((t, "mlp", "fc1", "kernel"), f"{p}{names.fc1}.weight", (m, d), _linear_kernel),
            _one((t, "mlp", "fc1", "bias"), f"{p}{names.fc1}.bias", (m,)),
            _one((t, "mlp", "fc2", "kernel"), f"{p}{names.fc2}.weight", (d, m), _linear_kernel),
            _one((t, "mlp", "fc2", "bias"), f"{p}{names.fc2}.bias", (d,)),
        ]
    if names.qkv_bias is not None:
        rules.append(_one((t, "attn", "qkv", "bias"), p + names.qkv_bias, (3 * d,)))
    else:
        rules.append(
            Rule(
                (t, "attn", "qkv", "bias"),
                (f"{p}attn.q_bias", f"{p}attn.v_bias"),
                ((d,), (d,)),
                _qv_bias,
            )
        )
    if names.ls1 is not None:
        rules.append(_one((t, "ls1", "gamma"), p + names.ls1, (d,)))
        rules.append(_one((t, "ls2", "gamma"), p + names.ls2, (d,)))
    return rules


def encoder_rules(
    family: str, dims: EncoderDims, tensors: Mapping[str, np.ndarray] | None = None
) -> list[Rule]:
    """Every official encoder tensor of `family` at `dims`, with its Flax target.

    Args:
      family: a family with a registered layout.
      dims: encoder sizes (from the model spec).
      tensors: the file's canonical tensors, for layouts that pick a flavour from the keys.

    Returns:
      Rules whose targets are paths in the encoder's Flax parameter tree.
    """
    layout = get_layout(family)
    if layout.keyed_rules is not None:
        return layout.keyed_rules(dims, tensors or {})
    if layout.rules is not None:
        return layout.rules(dims)
    d, p = dims.width, dims.patch_size
    cls_key, patch, pos, norm = model_names(family)
    rules = [
        _one(("cls_token",), cls_key, (1, 1, d)),
        _one(("patch_embed", "kernel"), f"{patch}.weight", (d, 3, p, p), _conv_kernel),
        _one(("patch_embed", "bias"), f"{patch}.bias", (d,)),
        _one(("norm", "scale"), f"{norm}.weight", (d,)),
        _one(("norm", "bias"), f"{norm}.bias", (d,)),
    ]
    if pos is not None:
        rows, cols = dims.grid
        rules.append(_one(("pos_embed",), pos, (1, 1 + rows * cols, d)))
    if layout.extra_rules is not None:
        rules.extend(layout.extra_rules(dims))
    names = layout.block
    for i in range(dims.depth):
        rules.extend(_block_rules(names, i, d, dims.mlp_dim, "block_", dims.mlp))
    return rules


block_rules = _block_rules  # for the layout modules


def decoder_rules(encoder_width: int, dims: DecoderDims) -> list[Rule]:
    """Every official MAE decoder tensor at `dims`, with its target in the decoder's Flax tree."""
    dd = dims.width
    rules = [
        _one(
            ("decoder_embed", "kernel"), "decoder_embed.weight", (dd, encoder_width), _linear_kernel
        ),
        _one(("decoder_embed", "bias"), "decoder_embed.bias", (dd,)),
        _one(("mask_token",), "mask_token", (1, 1, dd)),
        _one(("decoder_pos_embed",), "decoder_pos_embed", (1, 1 + dims.num_patches, dd)),
        _one(("decoder_norm", "scale"), "decoder_norm.weight", (dd,)),
        _one(("decoder_norm", "bias"), "decoder_norm.bias", (dd,)),
        _one(
            ("decoder_pred", "kernel"), "decoder_pred.weight", (dims.pred_dim, dd), _linear_kernel
        ),
        _one(("decoder_pred", "bias"), "decoder_pred.bias", (dims.pred_dim,)),
    ]
    for i in range(dims.depth):
        rules.extend(_block_rules(MAE_DECODER_BLOCK, i, dd, dims.mlp_dim, "decoder_block_"))
    return rules


def expected_relative_position_index(rows: int, cols: int) -> np.ndarray:
    """BEiT/SimMIM relative position index for a (rows, cols) patch window plus the cls token.

    For patches a=(r1, c1), b=(r2, c2): `(r1 - r2 + rows - 1) * (2 * cols - 1) + (c1 - c2 + cols - 1)`;
    cls->token = n, token->cls = n + 1, cls->cls = n + 2 with n = (2 rows - 1)(2 cols - 1).

    Returns:
      int64 [1 + rows * cols, 1 + rows * cols].
    """
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    rel = (r[:, None] - r[None, :] + rows - 1) * (2 * cols - 1) + (
        c[:, None] - c[None, :] + cols - 1
    )
    n = (2 * rows - 1) * (2 * cols - 1)
    index = np.empty((1 + rows * cols, 1 + rows * cols), dtype=np.int64)
    index[1:, 1:] = rel
    index[0, :] = n
    index[:, 0] = n + 1
    index[0, 0] = n + 2
    return index


# --------------------------------------------------------------------------------------------
# Unwrapping and canonical names.


@dataclasses.dataclass
class SelectedState:
    """The tensors picked out of a checkpoint, under canonical names.

    Attributes:
      tensors: canonical key -> array.
      original: canonical key -> the key as written in the file (with its wrapper path).
      dropped: original key -> reason, for tensors of another branch (student vs teacher).
      wrapper: where the tensors were found, e.g. "checkpoint['teacher']" or "top level".
      other_entries: top-level entries of a training checkpoint that were not read (optimizer...).
    """

    tensors: dict[str, np.ndarray]
    original: dict[str, str]
    dropped: dict[str, str]
    wrapper: str
    other_entries: list[str]


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(v, np.ndarray) for v in value.values())


def select_state_dict(
    checkpoint: Mapping[str, Any], checkpoint_key: str | None, source: str
) -> tuple[Mapping[str, Any], str, list[str]]:
    """Finds the state dict inside a checkpoint's top-level mapping.

    Args:
      checkpoint: what `reader.read_checkpoint` returned.
      checkpoint_key: the wrapper entry to read (`teacher`, `student`, `model`, `state_dict`...),
        or None to pick one: a flat state dict is used as is, else the first of `WRAPPER_KEYS`.
        `teacher`/`student` may also name a key prefix (DINOv2 training files); then the wrapper
        holding those prefixes is used.
      source: the file name, for error messages.

    Returns:
      (state dict, description of where it was found, names of the other top-level entries).
    """
    top_arrays = [k for k, v in checkpoint.items() if isinstance(v, np.ndarray)]
    wrappers = [k for k, v in checkpoint.items() if _is_state_dict(v)]
    if checkpoint_key is not None and checkpoint_key in checkpoint:
        chosen = checkpoint_key
        if not _is_state_dict(checkpoint[chosen]):
            raise CheckpointError(
                f"{source}: entry '{chosen}' holds no tensors; entries with tensors: {wrappers}"
            )
    elif checkpoint_key is not None and checkpoint_key not in BRANCHES:
        raise CheckpointError(
            f"{source}: --checkpoint_key='{checkpoint_key}' is not a top-level entry; the file "
            f"has {sorted(map(str, checkpoint))}"
        )
    elif top_arrays and len(top_arrays) >= len(wrappers):
        return checkpoint, "top level", sorted(str(k) for k in checkpoint if k not in top_arrays)
    else:
        candidates = [k for k in WRAPPER_KEYS if k in wrappers] + [
            k for k in wrappers if k not in WRAPPER_KEYS
        ]
        if not candidates:
            raise CheckpointError(
                f"{source}: no tensors found at the top level nor under any entry; entries: "
                f"{sorted(map(str, checkpoint))}"
            )
        chosen = candidates[0]
    others = sorted(str(k) for k in checkpoint if k != chosen)
    return checkpoint[chosen], f"checkpoint['{chosen}']", others


_CHUNKED_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.*)$")


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def _strip_module(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def canonical_name(family: str, key: str) -> tuple[str | None, str]:
    """Canonical official name of a state-dict key, and the training branch it belongs to.

    Returns:
      (branch, name): branch is 'teacher'/'student' for DINOv2 training keys, else None.
    """
    name = _strip_module(key)
    branch = None
    for candidate in BRANCHES:
        if name.startswith(candidate + "."):
            branch, name = candidate, _strip_module(name[len(candidate) + 1 :])
            break
    name = _strip(name, "backbone.")
    layout = get_layout(family)
    if layout.strip_encoder_prefix:
        # SimMIM nests its ViT under `encoder.`; torchvision's own names start with `encoder.`.
        name = _strip(name, "encoder.")
    if match := _CHUNKED_BLOCK.match(name):
        # DINOv2 block_chunks>0 stores block i as blocks.{chunk}.{i} (chunks are identity-padded,
        # so i is already the global index).
        name = f"blocks.{match.group(2)}.{match.group(3)}"
    if layout.rename is not None:
        name = layout.rename(name)
    return branch, name


def canonicalize(
    family: str,
    checkpoint: Mapping[str, Any],
    checkpoint_key: str | None = None,
    source: str = "<checkpoint>",
) -> SelectedState:
    """Picks the state dict out of a checkpoint and renames its keys to the canonical names.

    Args:
      family: a family with a registered layout.
      checkpoint: top-level mapping from `reader.read_checkpoint` (or a plain state dict).
      checkpoint_key: wrapper entry or training branch to read (see `select_state_dict`).
      source: file name for messages.

    Returns:
      The selected tensors.

    Raises:
      CheckpointError: two keys map to the same canonical name, or the state dict holds non-tensor
        values.
    """
    state, wrapper, others = select_state_dict(checkpoint, checkpoint_key, source)
    branch_wanted = checkpoint_key if checkpoint_key in BRANCHES else "teacher"
    named: dict[str, tuple[str | None, str]] = {
        str(k): canonical_name(family, str(k)) for k in state
    }
    branches_present = {b for b, _ in named.values() if b is not None}
    if branches_present and branch_wanted not in branches_present:
        raise CheckpointError(
            f"{source}: {wrapper} has no '{branch_wanted}.' keys; branches present: "
            f"{sorted(branches_present)}"
        )
    if (
        checkpoint_key is not None
        and wrapper != f"checkpoint['{checkpoint_key}']"
        and checkpoint_key not in branches_present
    ):
        raise CheckpointError(
            f"{source}: --checkpoint_key='{checkpoint_key}' names neither a top-level entry nor a "
            f"'{checkpoint_key}.' key prefix; tensors are at {wrapper}. Leave it unset to read them"
        )
    tensors: dict[str, np.ndarray] = {}
    original: dict[str, str] = {}
    dropped: dict[str, str] = {}
    not_tensors = []
    for key, (branch, name) in named.items():
        if branch is not None and branch != branch_wanted:
            dropped[key] = f"{branch} branch (reading {branch_wanted})"
            continue
        value = state[key]
        if not isinstance(value, np.ndarray):
            not_tensors.append(f"{key} ({type(value).__name__})")
            continue
        if name in tensors:
            raise CheckpointError(
                f"{source}: keys '{original[name]}' and '{key}' both map to '{name}' in "
                f"{wrapper}; pass --checkpoint_key to pick one"
            )
        tensors[name] = value
        original[name] = key
    if not_tensors:
        raise CheckpointError(f"{source}: non-tensor values in {wrapper}: {not_tensors}")
    return SelectedState(tensors, original, dropped, wrapper, others)
