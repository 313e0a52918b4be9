"""The model zoo: a spec per official variant, each family's preprocessing, model and weight makers.

A `ModelSpec` says everything needed to rebuild a model (shapes and family numerics) and is saved
as `spec.json` next to the weights. Every official variant is registered, plus a tiny `ti` size
(D=192, 3 heads, depth 12) per family for tests and demos.

Examples:
  >>> spec = get_spec("dino", "s", patch_size=16)
  >>> spec.name
  'dino_vits16'
  >>> module, params, spec = random_model("dinov2_reg", "ti", seed=0, depth=2)
  >>> out = module.apply({"params": params}, preprocess(spec, images_uint8), layers=(0, -1))
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from vitjax import errors
from vitjax.models import families, posembed
from vitjax.models.mae_decoder import MAEDecoder
from vitjax.models.vit import MLP_KINDS, POS_EMBED_KINDS, QKV_BIAS_KINDS, VisionTransformer

# Re-exported: the family records own these (vitjax/models/families.py).
# Names of the families registered at import (families.family_names() is the live list).
FAMILIES = families.family_names()
INTERPOLATIONS = families.INTERPOLATIONS
IMAGENET_MEAN = families.IMAGENET_MEAN
IMAGENET_STD = families.IMAGENET_STD
Preprocessing = families.Preprocessing
_checked_fields = families.checked_fields


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes a model's shapes and numerics (see docs/interfaces.md).

    Attributes:
      family: one of FAMILIES.
      size: a size of the family's record ('ti', 's', 'b', 'l', 'h'; DINOv3 'splus', 'hplus',
        '7b'; SigLIP 'so400m', 'g').
      patch_size: P.
      width: D.
      depth: number of blocks.
      num_heads: H.
      mlp_dim: MLP hidden width.
      num_registers: register tokens (4 for dinov2_reg).
      pos_embed: 'learned' | 'sincos' | 'gsd_sincos' | 'none' | 'rope' (DINOv3's axial RoPE).
      pos_interp: a `posembed.POS_INTERP_*` mode: how the stored table (SimMIM: the relative
        position bias table, 'rel_bias_geometric') reaches other patch grids.
      native_grid: (gh, gw) patch grid of the stored position tables.
      layerscale: whether blocks have LayerScale (`ls1/ls2`).
      layerscale_init: LayerScale value of freshly built weights (1.0 DINOv2 hub, 0.1 SimMIM).
      rel_pos_bias: SimMIM's shared relative position bias.
      qkv_bias: 'full', 'qv' (SimMIM: no k bias; DINOv3: masked k bias) or 'none' (DINOv3 7B).
      mlp: 'gelu' (exact GELU), 'quick_gelu' (OpenAI CLIP's x * sigmoid(1.702 x)) or 'swiglu'
        (DINOv2-g: fused `w12` [D, 2 * mlp_dim] -> silu(x1) * x2 -> `w3`).
      pre_norm: a LayerNorm (`norm_pre`) on [cls, patches] + positions before the blocks (CLIP's
        `ln_pre`).
      patch_bias: the patch embedding has a bias (CLIP's `conv1` has none).
      global_pool: the family's global representation, returned as `global` by the model:
        'cls' (the normed CLS token) or 'cls_proj' (normed CLS token @ `proj`, CLIP's image
        embedding).
      proj_dim: output width E of the `proj` [D, E] matrix ('cls_proj'); 0 = no projection.
      norm_eps: LayerNorm epsilon (1e-6; CLIP 1e-5).
      has_decoder: an MAE pixel decoder comes with the weights.
      class_token: a class token leads the sequence (SigLIP has none; its global_pool is 'map',
        big_vision's attention-pooling head, whose output is then also the `cls` output).
      decoder_width, decoder_depth, decoder_heads, decoder_mlp_dim: MAE decoder shape.
      preprocessing: the family's evaluation preprocessing.
      name: e.g. 'dino_vits16'; overrides are appended ('dino_vits16-depth2').
      weights_hash: 'random-seed<k>' for random weights, else the converter's sha256 of the
        source file ('' when no weights are attached yet).
      params_sha256: `params_digest` of the parameters themselves ('' when not computed yet);
        set by `random_model`, `models.save` and `models.load`. Features and results are keyed on
        it, so weights changed under an unchanged spec and `weights_hash` are never served the
        old weights' features.
    """

    family: str
    size: str
    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    num_registers: int = 0
    pos_embed: str = "learned"
    pos_interp: str = posembed.POS_INTERP_SCALE_OFFSET
    native_grid: tuple[int, int] = (14, 14)
    layerscale: bool = False
    layerscale_init: float = 1.0
    rel_pos_bias: bool = False
    qkv_bias: str = "full"
    mlp: str = "gelu"
    pre_norm: bool = False
    patch_bias: bool = True
    global_pool: str = "cls"
    proj_dim: int = 0
    norm_eps: float = 1e-6
    has_decoder: bool = False
    class_token: bool = True
    decoder_width: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    decoder_mlp_dim: int = 2048
    preprocessing: Preprocessing = Preprocessing()
    name: str = ""
    weights_hash: str = ""
    params_sha256: str = ""

    def __post_init__(self):
        if isinstance(self.preprocessing, dict):
            object.__setattr__(self, "preprocessing", Preprocessing.from_dict(self.preprocessing))
        grid = tuple(int(g) for g in self.native_grid)
        object.__setattr__(self, "native_grid", grid)
        if self.family not in families.family_names():
            raise errors.ConfigError(
                f"family: expected one of {families.family_names()}, got {self.family!r}"
            )
        for field in ("patch_size", "width", "depth", "num_heads", "mlp_dim"):
            if int(getattr(self, field)) < 1:
                raise errors.ConfigError(
                    f"{field}: expected a positive integer, got {getattr(self, field)}"
                )
        if len(grid) != 2 or min(grid) < 1:
            raise errors.ConfigError(f"native_grid: expected two positive sizes, got {grid}")
        if self.width % self.num_heads:
            raise errors.ConfigError(
                f"width: {self.width} is not divisible by num_heads {self.num_heads}"
            )
        if self.pos_embed not in POS_EMBED_KINDS:
            raise errors.ConfigError(
                f"pos_embed: expected one of {POS_EMBED_KINDS}, got {self.pos_embed!r}"
            )
        if self.pos_interp not in posembed.POS_INTERP_MODES:
            raise errors.ConfigError(
                f"pos_interp: expected one of {posembed.POS_INTERP_MODES}, got {self.pos_interp!r}"
            )
        if self.qkv_bias not in QKV_BIAS_KINDS:
            raise errors.ConfigError(
                f"qkv_bias: expected one of {QKV_BIAS_KINDS}, got {self.qkv_bias!r}"
            )
        if self.mlp not in MLP_KINDS:
            raise errors.ConfigError(f"mlp: expected one of {MLP_KINDS}, got {self.mlp!r}")
        if self.global_pool not in families.GLOBAL_POOLS:
            raise errors.ConfigError(
                f"global_pool: expected one of {families.GLOBAL_POOLS}, got {self.global_pool!r}"
            )
        if not self.class_token and self.global_pool != "map":
            raise errors.ConfigError(
                f"global_pool: a model without a class token pools with 'map', got "
                f"{self.global_pool!r}"
            )
        if self.pos_embed == "rope" and (self.width // self.num_heads) % 4:
            raise errors.ConfigError(
                f"num_heads: axial RoPE needs a head width that is a multiple of 4, got "
                f"{self.width} / {self.num_heads}"
            )
        if (self.global_pool == "cls_proj") != (self.proj_dim > 0):
            raise errors.ConfigError(
                f"proj_dim: global_pool 'cls_proj' needs proj_dim > 0 and the others 0, got "
                f"global_pool {self.global_pool!r}, proj_dim {self.proj_dim}"
            )
        if self.pos_embed in ("sincos", "gsd_sincos") and self.width % 4:
            raise errors.ConfigError(
                f"width: sin-cos position encoding needs a multiple of 4, got {self.width}"
            )
        if self.num_registers < 0:
            raise errors.ConfigError(f"num_registers: expected >= 0, got {self.num_registers}")
        if self.layerscale and not self.layerscale_init:
            raise errors.ConfigError("layerscale_init: must be non-zero when layerscale is on")
        if self.has_decoder and self.decoder_width % self.decoder_heads:
            raise errors.ConfigError(
                f"decoder_width: {self.decoder_width} is not divisible by decoder_heads "
                f"{self.decoder_heads}"
            )

    @property
    def native_image_size(self) -> tuple[int, int]:
        """(H, W) in pixels of the native patch grid."""
        return (self.native_grid[0] * self.patch_size, self.native_grid[1] * self.patch_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (`json.dumps` works on it)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["native_grid"] = list(self.native_grid)
        data["preprocessing"] = self.preprocessing.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of `to_dict`; unknown or missing required fields raise ConfigError."""
        return cls(**_checked_fields(cls, data, "spec"))

    def to_json(self) -> str:
        """`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _registered_spec(record: families.FamilyRecord, variant: families.Variant, patch: int):
    fields = {name: getattr(record, name) for name in families.ARCH_FIELDS}
    fields.update(variant.overrides)
    native = variant.native_image_size // patch
    return ModelSpec(
        family=record.name,
        size=variant.size,
        patch_size=patch,
        width=variant.width,
        depth=variant.depth,
        num_heads=variant.num_heads,
        mlp_dim=variant.mlp_dim,
        native_grid=(native, native),
        name=f"{record.name}_" + variant.label.format(size=variant.size, patch=patch),
        **fields,
    )


def _registry() -> dict[tuple[str, str, int], ModelSpec]:
    """Every (family, size, patch) of the family records -> its spec (built on first use, so a
    family registered after import is included)."""
    names = families.family_names()
    if _REGISTRY_CACHE.get("families") != names:
        _REGISTRY_CACHE["families"] = names
        _REGISTRY_CACHE["specs"] = {
            (record.name, variant.size, patch): _registered_spec(record, variant, patch)
            for record in families.list_families()
            for variant in record.variants
            for patch in variant.patch_sizes
        }
    return _REGISTRY_CACHE["specs"]


_REGISTRY_CACHE: dict[str, Any] = {}


def list_variants() -> list[tuple[str, str, int]]:
    """Every registered (family, size, patch_size), sorted."""
    return sorted(_registry())


def _override_tag(key: str, value: Any) -> str:
    if key == "preprocessing":
        blob = json.dumps(_as_preprocessing(value).to_dict(), sort_keys=True).encode()
        return f"prep{hashlib.sha256(blob).hexdigest()[:8]}"
    if isinstance(value, tuple | list):
        value = "x".join(str(v) for v in value)
    return f"{key}{value}"


def _as_preprocessing(value: Any) -> Preprocessing:
    return Preprocessing.from_dict(value) if isinstance(value, dict) else value


def get_spec(family: str, size: str, patch_size: int | None = None, **overrides: Any) -> ModelSpec:
    """The registered spec of a variant, optionally with fields overridden.

    Args:
      family: one of FAMILIES.
      size: a size registered for the family ('ti', 's', 'b', 'l', 'h').
      patch_size: None = the family's default patch size for `size`.
      **overrides: ModelSpec fields to replace (e.g. depth=2); each one except `name` and
        `weights_hash` is appended to the name ('dino_vits16-depth2').

    Returns:
      ModelSpec.

    Raises:
      ConfigError: unknown family/size/patch (the message lists the known ones) or field.
    """
    variant = families.get_family(family).variant(size)
    patches = variant.patch_sizes
    patch = patches[0] if patch_size is None else int(patch_size)
    if patch not in patches:
        raise errors.ConfigError(
            f"patch_size: {patch} is not registered for {family} {size}; known: {list(patches)}"
        )
    spec = _registry()[(family, size, patch)]
    if not overrides:
        return spec
    known = {f.name for f in dataclasses.fields(ModelSpec)} - {"family", "size", "patch_size"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise errors.ConfigError(
            f"overrides: unknown ModelSpec fields {unknown}; known fields: {sorted(known)}"
        )
    if "preprocessing" in overrides:
        overrides["preprocessing"] = _as_preprocessing(overrides["preprocessing"])
    name = overrides.pop("name", None)
    if name is None:
        tags = [
            _override_tag(k, v)
            for k, v in sorted(overrides.items())
            if k not in ("weights_hash", "params_sha256")
            and getattr(spec, k) != (tuple(v) if isinstance(v, list) else v)
        ]
        name = "-".join([spec.name, *tags])
    return dataclasses.replace(spec, name=name, **overrides)


def preprocess(spec: ModelSpec, images) -> jnp.ndarray:
    """Scales to [0, 1] and normalises with the spec's mean/std (no resizing).

    Args:
      spec: the model's spec.
      images: uint8 (or float in [0, 255]) [B, H, W, 3] or [H, W, 3], numpy or JAX (jit-safe).

    Returns:
      float32 array of the same shape.
    """
    if images.shape[-1] != 3:
        raise errors.ConfigError(
            f"images: expected RGB [..., H, W, 3], got shape {tuple(images.shape)}"
        )
    mean = jnp.asarray(spec.preprocessing.mean, jnp.float32)
    std = jnp.asarray(spec.preprocessing.std, jnp.float32)
    return (jnp.asarray(images).astype(jnp.float32) / 255.0 - mean) / std


def create_model(spec: ModelSpec, dtype=jnp.float32) -> VisionTransformer:
    """The flax.linen encoder of `spec` computing its matmuls in `dtype` (params stay float32)."""
    return VisionTransformer(
        patch_size=spec.patch_size,
        width=spec.width,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_dim=spec.mlp_dim,
        num_registers=spec.num_registers,
        pos_embed=spec.pos_embed,
        pos_interp=spec.pos_interp,
        native_grid=spec.native_grid,
        layerscale_init=spec.layerscale_init if spec.layerscale else 0.0,
        rel_pos_bias=spec.rel_pos_bias,
        qkv_bias=spec.qkv_bias,
        mlp=spec.mlp,
        pre_norm=spec.pre_norm,
        patch_bias=spec.patch_bias,
        proj_dim=spec.proj_dim,
        norm_eps=spec.norm_eps,
        class_token=spec.class_token,
        global_pool="map" if spec.global_pool == "map" else "cls",
        dtype=dtype,
    )


def create_decoder(spec: ModelSpec, dtype=jnp.float32) -> MAEDecoder:
    """The MAE decoder of `spec` (ConfigError when `spec.has_decoder` is false)."""
    if not spec.has_decoder:
        raise errors.ConfigError(f"has_decoder: spec {spec.name!r} has no MAE decoder")
    return MAEDecoder(
        patch_size=spec.patch_size,
        width=spec.decoder_width,
        depth=spec.decoder_depth,
        num_heads=spec.decoder_heads,
        mlp_dim=spec.decoder_mlp_dim,
        native_grid=spec.native_grid,
        dtype=dtype,
    )


def _numpy_rng(rng) -> np.random.Generator:
    """An int seed or a JAX key -> numpy Generator (deterministic)."""
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    return np.random.default_rng(np.asarray(jax.random.key_data(rng)).ravel().tolist())


@functools.lru_cache(maxsize=128)
def _param_shapes(spec: ModelSpec, decoder: bool) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if decoder:
        num_tokens = 1 + spec.native_grid[0] * spec.native_grid[1]
        tokens = jax.ShapeDtypeStruct((1, num_tokens, spec.width), jnp.float32)
        tree = jax.eval_shape(create_decoder(spec).init, jax.random.key(0), tokens)
    else:
        # Every block of the encoder is built with the same arguments, so a two-block trace
        # gives every shape; tracing 24-40 blocks of the large variants costs seconds each.
        traced = dataclasses.replace(spec, depth=min(spec.depth, 2))
        images = jax.ShapeDtypeStruct((1, *spec.native_image_size, 3), jnp.float32)
        tree = jax.eval_shape(create_model(traced).init, jax.random.key(0), images)
        return _repeat_last_block(flatten_params(tree["params"]), traced.depth, spec.depth)
    return tuple((k, tuple(v.shape)) for k, v in flatten_params(tree["params"]).items())


def _repeat_last_block(flat: dict, traced_depth: int, depth: int):
    """(path, shape) pairs of a `depth`-block encoder from a `traced_depth`-block trace, in the
    order `module.init`'s tree flattens in (keys sorted at every level, as JAX sorts dicts)."""
    last = f"block_{traced_depth - 1}/"
    out = {path: tuple(leaf.shape) for path, leaf in flat.items()}
    for i in range(traced_depth, depth):
        for path, leaf in flat.items():
            if path.startswith(last):
                out[f"block_{i}/" + path[len(last) :]] = tuple(leaf.shape)
    return tuple(sorted(out.items(), key=lambda item: tuple(item[0].split("/"))))


def param_shapes(spec: ModelSpec, decoder: bool = False) -> dict[str, tuple[int, ...]]:
    """'/'-joined parameter path -> shape of the encoder (or MAE decoder); traced, not computed."""
    return dict(_param_shapes(spec, decoder))


def _initial_value(
    path: str, shape: tuple[int, ...], spec: ModelSpec, rng: np.random.Generator
) -> np.ndarray:
    """The module initialisers' values, drawn with numpy (same distributions, same fixed tables)."""
    leaf = path.rsplit("/", 1)[-1]

    def trunc_normal(std: float) -> np.ndarray:
        return np.clip(rng.standard_normal(shape, np.float32), -2.0, 2.0) * np.float32(std)

    if leaf == "kernel":
        return trunc_normal(1.0 / np.sqrt(np.prod(shape[:-1])))  # LeCun: variance 1 / fan_in
    if leaf == "bias":
        return np.zeros(shape, np.float32)
    if leaf == "scale":
        return np.ones(shape, np.float32)
    if leaf == "gamma":
        return np.full(shape, spec.layerscale_init, np.float32)
    if leaf == "pos_embed" and spec.pos_embed == "sincos":
        return posembed.sincos_pos_embed(shape[-1], spec.native_grid)
    if leaf == "decoder_pos_embed":
        return posembed.sincos_pos_embed(shape[-1], spec.native_grid)
    return trunc_normal(0.02)  # cls/register/mask tokens, learned positions, bias table


def _init_tree(spec: ModelSpec, rng: np.random.Generator, decoder: bool) -> dict:
    flat = {
        tuple(path.split("/")): jnp.asarray(_initial_value(path, shape, spec, rng))
        for path, shape in param_shapes(spec, decoder).items()
    }
    return flax.traverse_util.unflatten_dict(flat)


def init_encoder_params(spec: ModelSpec, rng) -> dict:
    """Freshly initialised encoder parameters (no decoder), float32; see `init_params`."""
    return _init_tree(spec, _numpy_rng(rng), decoder=False)


def init_decoder_params(spec: ModelSpec, rng) -> dict:
    """Freshly initialised MAE decoder parameters, float32; see `init_params`."""
    return _init_tree(spec, _numpy_rng(rng), decoder=True)


def init_params(spec: ModelSpec, rng, image_size: tuple[int, int] | None = None) -> dict:
    """Freshly initialised parameters of `spec` (float32).

    The tree is the one `module.init` builds (its shapes come from `jax.eval_shape` of it), filled
    with the same distributions drawn by numpy: compiling JAX's RNG for every parameter shape costs
    seconds per model, numpy costs nothing. LayerNorm scales are 1, biases 0, LayerScale
    `layerscale_init`, MAE position tables the fixed sin-cos ones.

    Args:
      spec: the model spec.
      rng: an int seed or a JAX key.
      image_size: optional (H, W) the model will run at; checked (e.g. H, W multiples of P, and
        a 'native_only' spec only accepts its native size). Parameter shapes never depend on it.

    Returns:
      The parameter dict; with `spec.has_decoder` the decoder's parameters are under "decoder"
      (the encoder's `apply` ignores that entry).

    Raises:
      ConfigError: the model cannot run at `image_size`.
    """
    if image_size is not None and tuple(image_size) != spec.native_image_size:
        images = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.float32)
        jax.eval_shape(create_model(spec).init, jax.random.key(0), images)
    np_rng = _numpy_rng(rng)
    params = _init_tree(spec, np_rng, decoder=False)
    if spec.has_decoder:
        params["decoder"] = _init_tree(spec, np_rng, decoder=True)
    return params


def flatten_params(params: dict) -> dict[str, Any]:
    """Nested parameter dict -> {'block_0/attn/qkv/kernel': leaf}."""
    return {"/".join(path): leaf for path, leaf in flax.traverse_util.flatten_dict(params).items()}


def params_digest(params: dict) -> str:
    """sha256 (hex) of a parameter tree: every leaf's path, dtype, shape and float32 bytes.

    Leaves are taken in sorted path order and as little-endian C-order float32 (the dtype
    checkpoints store), so the digest is the same for host and device copies of the same values.
    A "decoder" entry (MAE) is part of the tree like any other.

    Args:
      params: nested dict of arrays (numpy or JAX).

    Returns:
      64 hex characters.
    """
    digest = hashlib.sha256(b"vitjax-params/1\n")
    for path, leaf in sorted(flatten_params(params).items()):
        array = np.ascontiguousarray(np.asarray(jax.device_get(leaf), dtype="<f4"))
        digest.update(f"{path}|{array.dtype.str}|{list(array.shape)}\n".encode())
        digest.update(memoryview(array.reshape(-1)).cast("B"))
    return digest.hexdigest()


def count_params(spec: ModelSpec, decoder: bool = False) -> int:
    """Number of float parameters of the encoder (or decoder) tree of `spec`."""
    return int(sum(np.prod(shape) for shape in param_shapes(spec, decoder).values()))


def randomize_params(params: dict, spec: ModelSpec, seed: int) -> dict:
    """Makes freshly initialised weights non-degenerate, like trained ones.

    LayerNorm scales/biases, every bias, LayerScale and the relative-position table get random
    values (default inits of ones/zeros/constants would hide transposition and naming bugs and make
    features of random models uninformative). SimMIM's k bias stays zero.
    """
    rng = np.random.default_rng(seed)
    flat = flax.traverse_util.flatten_dict(params)
    out = {}
    for path, value in sorted(flat.items()):
        leaf = path[-1]
        shape = np.shape(value)
        if leaf == "scale":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif leaf == "bias":
            value = 0.02 * rng.standard_normal(shape)
            if spec.qkv_bias == "qv" and path[-2:] == ("qkv", "bias") and "decoder" not in path:
                third = shape[0] // 3
                value[third : 2 * third] = 0.0
        elif leaf == "gamma":
            value = np.asarray(value) * (1.0 + 0.5 * rng.uniform(-1.0, 1.0, shape))
        elif leaf == "table":
            value = 0.5 * rng.standard_normal(shape)
        out[path] = jnp.asarray(value, jnp.float32)
    return flax.traverse_util.unflatten_dict(out)


def random_model(
    family: str,
    size: str,
    seed: int = 0,
    *,
    patch_size: int | None = None,
    dtype=jnp.float32,
    **overrides: Any,
) -> tuple[VisionTransformer, dict, ModelSpec]:
    """A registered variant with random (non-degenerate) weights, for demos and tests.

    Args:
      family: one of FAMILIES.
      size: registered size.
      seed: weight seed; recorded as `weights_hash='random-seed<seed>'`.
      patch_size: None = default for the size.
      dtype: matmul dtype of the returned module.
      **overrides: ModelSpec fields (e.g. depth=2).

    Returns:
      (module, params, spec); params hold "decoder" when the spec has one.
    """
    overrides["weights_hash"] = f"random-seed{seed}"
    spec = get_spec(family, size, patch_size, **overrides)
    params = randomize_params(init_params(spec, seed), spec, seed)
    spec = dataclasses.replace(spec, params_sha256=params_digest(params))
    return create_model(spec, dtype), params, spec
