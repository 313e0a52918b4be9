"""Known-answer models: hand-built ViT weights whose patch tokens are a known function of pixels.

They run through the ordinary `VisionTransformer` and `ModelSpec` (a DINO-layout ViT: learned
position table, final LayerNorm), so every experiment treats them like any other model; only the
weights are chosen by hand. A run with them checks the pipeline, not a representation: a transposed
patch grid, a label map off by one tile or a variance ranking over the wrong axis shows as a number
that differs from the one computed by hand. In a config: `--config.models=known:colour,...`
(`known:<kind>[:<patch>]`, patch 16 by default). The report marks them as known-answer models.

Width D = 16, one block. Pixels are only scaled to [0, 1] (`preprocessing` mean 0, std 1). Before
the final LayerNorm every patch token is the vector `x` below (P = patch size, g = native grid):

  dims 0-2   mean R, G, B of the patch                        (kinds colour, colour_planted)
  dim  3     mean grey of the top half minus the bottom half  ("vertical half-difference")
  dim  4     mean grey of the left half minus the right half  ("horizontal half-difference")
  dims 5-9   minus dims 0-4
  dims 10-11 +CONSTANT, -CONSTANT (patch-embedding bias: keeps the LayerNorm well conditioned)
  dims 12-15 colour: 0.  colour_planted: PLANTED * (+a, -a, +b, -b) with a = cos(t), b = sin(t),
             t = 2 pi (row * gw + col) / (gh * gw) (position table: varies with position, never
             with the image; variance PLANTED^2 / 2 per dim before the LayerNorm).
             position: POSITION * (+u, -u, +v, -v), u = 2 row / (g - 1) - 1, v = same for col.
  kind position: dims 0-9 are 0 (the patch embedding ignores the pixels).
  kind constant: every token is exactly CONSTANT_TOKEN (final LayerNorm scale 0, bias +-1).

The attention and MLP output projections of the block are zero (their inputs are random), so the
residual stream carries `x` unchanged. Every token has mean exactly 0 (the dims come in +/- pairs),
so the final LayerNorm (scale 1, bias 0; experiments extract with `norm=True`) returns
`x / sqrt(mean(x**2) + 1e-6)`: the features are that known function of the pixels, which tests
recompute in numpy from the raw tiles. Away from the native grid the position table is resampled
like DINO's (bicubic), so it stays a function of position only.

Examples:
  >>> module, params, spec = known_model("colour")
  >>> spec.name, spec.weights_hash[:13]
  ('known_colour16', 'known-colour-')
"""

from __future__ import annotations

import hashlib

import flax
import jax.numpy as jnp
import numpy as np

from vitjax import errors
from vitjax.models.vit import VisionTransformer
from vitjax.models.zoo import ModelSpec, Preprocessing, create_model, flatten_params, init_params

# The `config.models` family word of known-answer models: `known:<kind>[:<patch>]`.
KNOWN = "known"
KINDS = ("colour", "position", "constant", "colour_planted")
DEFAULT_PATCH = 16
WIDTH = 16
NUM_HEADS = 2
MLP_DIM = 32
DEPTH = 1
# Feature dimensions (see the module docstring).
COLOUR_DIMS = (0, 1, 2)
VERTICAL_DIM = 3
HORIZONTAL_DIM = 4
STAT_DIMS = (0, 1, 2, 3, 4)
MIRROR_OFFSET = 5
CONSTANT_DIMS = (10, 11)
POSITION_DIMS = (12, 13, 14, 15)
PLANTED_DIMS = POSITION_DIMS
CONSTANT = 2.0
PLANTED = 8.0
POSITION = 2.0
# The token of kind `constant`: +-1 entries, so every dot product between tokens is an integer.
CONSTANT_TOKEN = np.tile(np.array([1.0, -1.0], np.float32), WIDTH // 2)
WEIGHTS_PREFIX = "known-"


def known_spec(
    kind: str, patch_size: int = DEFAULT_PATCH, native_grid: tuple[int, int] = (14, 14)
) -> ModelSpec:
    """The ModelSpec of known-answer model `kind` (weights_hash filled in by `known_model`).

    Raises:
      ConfigError: unknown kind, or an odd / non-positive patch size.
    """
    if kind not in KINDS:
        raise errors.ConfigError(
            f"config.models: unknown known-answer model {KNOWN}:{kind}; known kinds: "
            f"{', '.join(KINDS)} (e.g. '{KNOWN}:colour' or '{KNOWN}:colour:14')"
        )
    patch_size = int(patch_size)
    if patch_size < 2 or patch_size % 2:
        raise errors.ConfigError(
            f"config.models: {KNOWN}:{kind}:{patch_size}: the patch size must be even and >= 2 "
            "(the texture statistics split each patch into halves), e.g. 16 or 14"
        )
    return ModelSpec(
        family="dino",
        size=KNOWN,
        patch_size=patch_size,
        width=WIDTH,
        depth=DEPTH,
        num_heads=NUM_HEADS,
        mlp_dim=MLP_DIM,
        native_grid=tuple(int(g) for g in native_grid),
        preprocessing=Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        name=f"{KNOWN}_{kind}{patch_size}",
    )


def _patch_kernel(kind: str, p: int) -> np.ndarray:
    """float32 [P, P, 3, D] HWIO kernel of the patch embedding (inputs: pixels / 255)."""
    kernel = np.zeros((p, p, 3, WIDTH), np.float64)
    if kind in ("colour", "colour_planted"):
        for c in COLOUR_DIMS:
            kernel[:, :, c, c] = 1.0 / (p * p)
        half = 1.0 / (3 * p * p / 2)  # mean grey (mean of the 3 channels) of a half patch
        kernel[: p // 2, :, :, VERTICAL_DIM] = half
        kernel[p // 2 :, :, :, VERTICAL_DIM] = -half
        kernel[:, : p // 2, :, HORIZONTAL_DIM] = half
        kernel[:, p // 2 :, :, HORIZONTAL_DIM] = -half
        for d in STAT_DIMS:
            kernel[..., d + MIRROR_OFFSET] = -kernel[..., d]
    return kernel.astype(np.float32)


def _position_rows(kind: str, grid: tuple[int, int]) -> np.ndarray:
    """float32 [gh * gw, D] row-major position-table entries of the patches."""
    gh, gw = grid
    rows = np.arange(gh)[:, None] * np.ones((1, gw))
    cols = np.ones((gh, 1)) * np.arange(gw)[None, :]
    table = np.zeros((gh, gw, WIDTH), np.float64)
    if kind == "colour_planted":
        # One angle per position: the planted pair of pairs has the same norm everywhere, so the
        # LayerNorm statistics do not depend on position, yet no two positions look alike.
        theta = 2.0 * np.pi * (rows * gw + cols) / (gh * gw)
        a, b = np.cos(theta), np.sin(theta)
        table[..., POSITION_DIMS] = PLANTED * np.stack([a, -a, b, -b], axis=-1)
    elif kind == "position":
        u = 2.0 * rows / max(gh - 1, 1) - 1.0
        v = 2.0 * cols / max(gw - 1, 1) - 1.0
        table[..., POSITION_DIMS] = POSITION * np.stack([u, -u, v, -v], axis=-1)
    return table.reshape(gh * gw, WIDTH).astype(np.float32)


def known_params(spec: ModelSpec, kind: str, seed: int = 0) -> dict:
    """The hand-built float32 parameters of `kind` for `spec` (see the module docstring).

    Parameters that cannot change the output (the block's LayerNorms, qkv and fc1, whose results
    are multiplied by zero output projections) keep random values, so that a bug that lets them
    through shows.
    """
    flat = flax.traverse_util.flatten_dict(init_params(spec, seed))
    rng = np.random.default_rng(seed)
    out = {}
    for path, value in flat.items():
        out[path] = np.asarray(value, np.float32).copy()
        if path[-1] in ("scale", "bias") and path[0] != "norm":
            out[path] = (1.0 + 0.1 * rng.standard_normal(value.shape)).astype(np.float32)
    bias = np.zeros(WIDTH, np.float32)
    bias[list(CONSTANT_DIMS)] = (CONSTANT, -CONSTANT)
    out[("patch_embed", "kernel")] = _patch_kernel(kind, spec.patch_size)
    out[("patch_embed", "bias")] = bias
    out[("cls_token",)] = bias.reshape(1, 1, WIDTH)
    table = np.zeros((1, 1 + spec.native_grid[0] * spec.native_grid[1], WIDTH), np.float32)
    table[0, 1:] = _position_rows(kind, spec.native_grid)
    out[("pos_embed",)] = table
    for i in range(spec.depth):
        for layer in ("attn", "proj"), ("mlp", "fc2"):
            for leaf in ("kernel", "bias"):
                path = (f"block_{i}", *layer, leaf)
                out[path] = np.zeros_like(out[path])
    out[("norm", "scale")] = np.full(WIDTH, 0.0 if kind == "constant" else 1.0, np.float32)
    out[("norm", "bias")] = (
        CONSTANT_TOKEN.copy() if kind == "constant" else np.zeros(WIDTH, np.float32)
    )
    return flax.traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in out.items()})


def weights_digest(params: dict) -> str:
    """sha256 (hex, 16 chars) of every parameter's path, shape and float32 bytes."""
    h = hashlib.sha256()
    for path, value in sorted(flatten_params(params).items()):
        value = np.ascontiguousarray(np.asarray(value, np.float32))
        h.update(f"{path}:{value.shape};".encode())
        h.update(value.tobytes())
    return h.hexdigest()[:16]


def known_model(
    kind: str,
    patch_size: int = DEFAULT_PATCH,
    native_grid: tuple[int, int] = (14, 14),
    seed: int = 0,
    dtype=jnp.float32,
) -> tuple[VisionTransformer, dict, ModelSpec]:
    """A known-answer model (see the module docstring).

    Args:
      kind: one of KINDS: 'colour' (mean colour and half-differences, no position), 'position'
        (position only), 'constant' (one fixed token), 'colour_planted' (colour plus four dims of
        large, class-independent, position-driven variance: PLANTED_DIMS).
      patch_size: P (even).
      native_grid: (gh, gw) grid of the position table (224 / P by default).
      seed: seed of the parameters that do not reach the output.
      dtype: matmul dtype of the module.

    Returns:
      (module, params, spec); `spec.weights_hash` = 'known-<kind>-<digest of the weights>'.
    """
    spec = known_spec(kind, patch_size, native_grid)
    params = known_params(spec, kind, seed)
    spec = spec.__class__.from_dict(
        dict(spec.to_dict(), weights_hash=f"{WEIGHTS_PREFIX}{kind}-{weights_digest(params)}")
    )
    return create_model(spec, dtype), params, spec


def is_known(spec) -> bool:
    """Whether `spec` (a ModelSpec or its dict) is a known-answer model's."""
    weights = spec.get("weights_hash") if isinstance(spec, dict) else spec.weights_hash
    size = spec.get("size") if isinstance(spec, dict) else spec.size
    return size == KNOWN and str(weights or "").startswith(WEIGHTS_PREFIX)
