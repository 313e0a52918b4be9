"""One Vision Transformer covering DINO, iBOT, MAE, SimMIM, DINOv2(-reg), torchvision and Scale-MAE.

Written in flax.linen rather than NNX: a linen module is a stateless description and its weights
are a plain nested dict of arrays. That dict is what the PyTorch converter writes, what orbax saves
and restores without any module object, and what `jax.jit` shards and donates; `module.apply` is a
pure function, so one compiled forward serves many weight sets (trained vs random) of one shape.

The family differences are fields of the one module: position encoding kind and resampling rule,
registers, LayerScale, SimMIM's shared relative position bias and q/v-only attention bias. Names
of submodules and parameters are fixed (`checkpoints_convert/` maps PyTorch keys onto them):

  patch_embed/{kernel [P,P,3,D], bias}   cls_token [1,1,D]   pos_embed [1,1+g*g,D]
  register_tokens [1,R,D]   rel_pos_bias/table [(2g-1)^2+3, H]   norm/{scale,bias}
  block_{i}/{norm1,attn/qkv,attn/proj,norm2,mlp/fc1,mlp/fc2,ls1/gamma,ls2/gamma}

Numerics follow the PyTorch originals: exact (erf) GELU, LayerNorm eps 1e-6 with the two-pass
variance, attention scale hd^-0.5. `dtype` is the matmul dtype; parameters stay float32 and the
residual stream, LayerNorm and softmax stay float32 whatever `dtype` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vitjax import errors
from vitjax.models import posembed
from vitjax.models.families import MLP_KINDS

LAYERNORM_EPS = 1e-6
ROPE_BASE = 100.0  # DINOv3's RoPE period base (every released model)
POS_EMBED_KINDS = ("learned", "sincos", "gsd_sincos", "none", "rope")
QKV_BIAS_KINDS = ("full", "qv", "none")
# Where VisionTransformer's global vector comes from: the class token (then optionally projected
# with `proj_dim`), or big_vision's attention-pooling head (SigLIP).
GLOBAL_POOLS = ("cls", "map")

Dtype = Any
_trunc_normal = nn.initializers.truncated_normal(0.02)


def layer_norm(name: str, eps: float = LAYERNORM_EPS) -> nn.LayerNorm:
    """The LayerNorm of every family: two-pass variance (closest to PyTorch), float32.

    eps is 1e-6 for the timm-style families, 1e-5 for CLIP (torch's default) and DINOv3 (its
    `layernormbf16`).
    """
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=jnp.float32, name=name)


def rope_tables(grid: tuple[int, int], head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """DINOv3's axial 2-D rotary tables (`RopePositionEmbedding`, normalize_coords='separate').

    Patch centres are normalised per axis to [-1, 1] (`(i + 0.5) / n * 2 - 1`), so a grid of any
    size or aspect ratio spans the same range; the periods are `base ** (2 j / (hd / 2))` for
    j < hd / 4. The rotation angle of (row, col) is `2 pi [y / periods, x / periods]`, tiled twice
    (rotate-half layout). The training-time coordinate shift/jitter/rescale are off at evaluation,
    as in the official code (they run only under `self.training`).

    Args:
      grid: (h, w) patch grid.
      head_dim: per-head width (a multiple of 4).
      base: the period base (100 for every DINOv3 model).

    Returns:
      (sin, cos), each float32 [h * w, head_dim], row-major patches.
    """
    h, w = grid
    coords_h = (np.arange(h, dtype=np.float64) + 0.5) / h
    coords_w = (np.arange(w, dtype=np.float64) + 0.5) / w
    coords = np.stack(np.meshgrid(coords_h, coords_w, indexing="ij"), axis=-1).reshape(-1, 2)
    coords = 2.0 * coords - 1.0
    quarter = head_dim // 4
    periods = float(base) ** (2.0 * np.arange(quarter, dtype=np.float64) / (head_dim // 2))
    angles = 2.0 * np.pi * coords[:, :, None] / periods[None, None, :]  # [hw, 2, hd/4]
    angles = np.tile(angles.reshape(h * w, 2 * quarter), 2)
    return np.sin(angles).astype(np.float32), np.cos(angles).astype(np.float32)


def _rotate_half(x: jnp.ndarray) -> jnp.ndarray:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x: jnp.ndarray, rope: tuple[jnp.ndarray, jnp.ndarray]) -> jnp.ndarray:
    """Rotates the last `P` tokens of q or k (DINOv3: the cls/storage prefix is not rotated).

    Args:
      x: [B, N, H, hd].
      rope: (sin, cos), each float32 [1 or B, P, hd] with P <= N.

    Returns:
      [B, N, H, hd] in the dtype of `x` (the rotation itself runs in float32, as the official
      code casts q and k to the rope dtype).
    """
    sin, cos = rope
    prefix = x.shape[1] - sin.shape[1]
    patches = x[:, prefix:].astype(jnp.float32)
    sin, cos = sin[:, :, None, :], cos[:, :, None, :]
    rotated = (patches * cos + _rotate_half(patches) * sin).astype(x.dtype)
    return jnp.concatenate([x[:, :prefix], rotated], axis=1)


class PatchEmbed(nn.Module):
    """Non-overlapping P x P patches projected to D: a stride-P VALID conv, as one matmul.

    Attributes:
      width: output width D.
      patch_size: P.
      dtype: matmul dtype.
    """

    width: int
    patch_size: int
    dtype: Dtype = jnp.float32
    use_bias: bool = True

    @nn.compact
    def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
        """Embeds patches.

        Args:
          images: float [B, H, W, C], H and W multiples of P.

        Returns:
          float32 [B, H/P, W/P, D].
        """
        p = self.patch_size
        batch, height, width, channels = images.shape
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (p, p, channels, self.width))
        h, w = height // p, width // p
        # A HWIO kernel flattened to (P*P*C, D) matches patches flattened as (row, col, channel),
        # so the conv is exactly one matmul; cheaper on CPU than XLA's strided conv.
        patches = images.reshape(batch, h, p, w, p, channels).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(batch, h, w, p * p * channels).astype(self.dtype)
        flat_kernel = kernel.reshape(p * p * channels, self.width).astype(self.dtype)
        out = jnp.dot(patches, flat_kernel, preferred_element_type=jnp.float32)
        if not self.use_bias:  # CLIP's conv1 has no bias
            return out
        return out + self.param("bias", nn.initializers.zeros, (self.width,))


class LayerScale(nn.Module):
    """Per-channel scale `x * gamma` (DINOv2 `ls1/ls2`, SimMIM `gamma_1/gamma_2`)."""

    init_value: float = 1.0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        gamma = self.param(
            "gamma", nn.initializers.constant(self.init_value), (x.shape[-1],), jnp.float32
        )
        return x * gamma.astype(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (rows [q; k; v], heads contiguous).

    Attributes:
      num_heads: H.
      qkv_bias: 'full', 'qv' (SimMIM/BEiT: the k third of the bias is zero; it is kept in the
        tree as `cat(q_bias, 0, v_bias)` and has no effect on the softmax; DINOv3's masked k bias
        is stored the same way), or 'none' (DINOv3 7B: no qkv bias).
      dtype: matmul dtype.
    """

    num_heads: int
    qkv_bias: str = "full"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        bias: jnp.ndarray | None = None,
        rope: tuple[jnp.ndarray, jnp.ndarray] | None = None,
    ) -> jnp.ndarray:
        """Attends.

        Args:
          x: [B, N, D] in `dtype`.
          bias: optional float32 [H, N, N] added to the logits (SimMIM relative position bias).
          rope: optional (sin, cos) float32 [1 or B, P, hd] rotating q and k of the last P tokens.

        Returns:
          [B, N, D] in `dtype`.
        """
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        use_bias = self.qkv_bias != "none"
        qkv = nn.Dense(3 * dim, use_bias=use_bias, dtype=self.dtype, name="qkv")(
            x.reshape(batch * tokens, dim)
        )
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        q = q * jnp.asarray(head_dim**-0.5, q.dtype)
        # Heads-major [B, H, N, hd] operands make both products plain batched matmuls; on CPU
        # the token-major einsums ran about 3x slower (BUILD_NOTES, Performance).
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
        if bias is not None:
            logits = logits + bias
        # Softmax in float32 even under bfloat16 matmuls.
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bhkd->bhqd", weights, v)
        out = out.transpose(0, 2, 1, 3).reshape(batch * tokens, dim)
        return nn.Dense(dim, dtype=self.dtype, name="proj")(out).reshape(batch, tokens, dim)


class Mlp(nn.Module):
    """The block MLP.

    kind 'gelu': fc1 -> exact GELU -> fc2. 'gelu_tanh': the tanh approximation (big_vision's
    `nn.gelu` default, HF `gelu_pytorch_tanh`: SigLIP). 'quick_gelu': fc1 -> x * sigmoid(1.702 x)
    -> fc2 (OpenAI CLIP). 'swiglu': w12 [D, 2 * hidden] -> silu(first half) * second half -> w3
    (DINOv2's SwiGLUFFNFused; separate w1/w2 files, DINOv3's, are concatenated into w12 by the
    converter).
    """

    hidden_dim: int
    dtype: Dtype = jnp.float32
    kind: str = "gelu"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        shape = x.shape
        return self._mlp(x.reshape(-1, shape[-1])).reshape(shape)

    def _mlp(self, x: jnp.ndarray) -> jnp.ndarray:
        dim = x.shape[-1]
        if self.kind == "swiglu":
            x12 = nn.Dense(2 * self.hidden_dim, dtype=self.dtype, name="w12")(x)
            x1, x2 = x12[..., : self.hidden_dim], x12[..., self.hidden_dim :]
            return nn.Dense(dim, dtype=self.dtype, name="w3")(nn.silu(x1) * x2)
        x = nn.Dense(self.hidden_dim, dtype=self.dtype, name="fc1")(x)
        if self.kind == "quick_gelu":
            x = x * nn.sigmoid(jnp.asarray(1.702, x.dtype) * x)
        elif self.kind == "gelu":
            x = nn.gelu(x, approximate=False)
        elif self.kind == "gelu_tanh":
            x = nn.gelu(x, approximate=True)
        else:
            raise errors.ConfigError(f"mlp: expected one of {MLP_KINDS}, got {self.kind!r}")
        return nn.Dense(dim, dtype=self.dtype, name="fc2")(x)


class Block(nn.Module):
    """Pre-norm transformer block: x += ls1(attn(norm1(x))); x += ls2(mlp(norm2(x))).

    Attributes:
      num_heads: H.
      mlp_dim: hidden width of the MLP.
      layerscale_init: initial LayerScale value; 0 means no LayerScale.
      qkv_bias: 'full', 'qv' or 'none'.
      dtype: matmul dtype (the residual stream stays float32).
      mlp: MLP kind (`Mlp`).
      norm_eps: LayerNorm epsilon.
    """

    num_heads: int
    mlp_dim: int
    layerscale_init: float = 0.0
    qkv_bias: str = "full"
    dtype: Dtype = jnp.float32
    mlp: str = "gelu"
    norm_eps: float = LAYERNORM_EPS

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        bias: jnp.ndarray | None = None,
        rope: tuple[jnp.ndarray, jnp.ndarray] | None = None,
    ) -> jnp.ndarray:
        """Runs the block on float32 [B, N, D]; returns float32 [B, N, D]."""
        eps = self.norm_eps
        y = layer_norm("norm1", eps)(x).astype(self.dtype)
        y = Attention(self.num_heads, self.qkv_bias, self.dtype, name="attn")(y, bias, rope)
        if self.layerscale_init:
            y = LayerScale(self.layerscale_init, name="ls1")(y)
        x = x + y.astype(jnp.float32)
        y = layer_norm("norm2", eps)(x).astype(self.dtype)
        y = Mlp(self.mlp_dim, self.dtype, self.mlp, name="mlp")(y)
        if self.layerscale_init:
            y = LayerScale(self.layerscale_init, name="ls2")(y)
        return x + y.astype(jnp.float32)


class RelativePositionBias(nn.Module):
    """SimMIM's shared relative position bias: one table, indexed once, added in every block.

    At another patch grid the stored table is first resized (`posembed.resample_rel_pos_bias`,
    timm's BEiT scheme) and then indexed for that grid.

    Attributes:
      num_heads: H.
      grid: (gh, gw) patch grid the stored table belongs to.
      target_grid: (h, w) patch grid of the input; None = `grid`.
      pos_interp: `posembed.POS_INTERP_REL_BIAS_GEOMETRIC`, or `POS_INTERP_NATIVE_ONLY`.
    """

    num_heads: int
    grid: tuple[int, int]
    target_grid: tuple[int, int] | None = None
    pos_interp: str = posembed.POS_INTERP_REL_BIAS_GEOMETRIC

    @nn.compact
    def __call__(self) -> jnp.ndarray:
        """Returns float32 [H, 1 + h*w, 1 + h*w] for the target grid (h, w)."""
        grid = tuple(self.grid)
        target = grid if self.target_grid is None else tuple(self.target_grid)
        rows = posembed.relative_table_size(grid)
        table = self.param("table", _trunc_normal, (rows, self.num_heads), jnp.float32)
        table = posembed.resample_rel_pos_bias(table, grid, target, self.pos_interp)
        index = posembed.relative_position_index(target)
        return jnp.transpose(table[index], (2, 0, 1))


class MAPHead(nn.Module):
    """big_vision's multihead attention pooling (`MAPHead`), SigLIP's global representation.

    A learned probe attends over all tokens (one query, q from the probe, k and v from the
    tokens), then `x + mlp(norm(x))`; the result is the pooled vector. Same as HF
    `SiglipMultiheadAttentionPoolingHead` and timm's `AttentionPoolLatent`.

    Attributes:
      num_heads: H.
      mlp_dim: hidden width of the head's MLP.
      mlp: one of MLP_KINDS ('gelu_tanh' for SigLIP).
      norm_eps: epsilon of the head's LayerNorm.
      dtype: matmul dtype.
    """

    num_heads: int
    mlp_dim: int
    mlp: str = "gelu_tanh"
    norm_eps: float = LAYERNORM_EPS
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Pools float32 [B, N, D] tokens to float32 [B, D]."""
        batch, tokens, dim = x.shape
        heads = self.num_heads
        head_dim = dim // heads
        probe = self.param("probe", _trunc_normal, (1, 1, dim), jnp.float32)
        q = nn.Dense(dim, dtype=self.dtype, name="q")(probe.astype(self.dtype))
        q = q.reshape(1, 1, heads, head_dim) * jnp.asarray(head_dim**-0.5, q.dtype)
        kv = nn.Dense(2 * dim, dtype=self.dtype, name="kv")(x.astype(self.dtype))
        kv = kv.reshape(batch, tokens, 2, heads, head_dim)
        k, v = kv[:, :, 0], kv[:, :, 1]
        logits = jnp.einsum("qhd,bkhd->bhk", q[0], k, preferred_element_type=jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        pooled = jnp.einsum("bhk,bkhd->bhd", weights, v).reshape(batch, dim)
        pooled = nn.Dense(dim, dtype=self.dtype, name="proj")(pooled).astype(jnp.float32)
        y = layer_norm("norm", self.norm_eps)(pooled).astype(self.dtype)
        y = Mlp(self.mlp_dim, self.dtype, self.mlp, name="mlp")(y)
        return pooled + y.astype(jnp.float32)


def _project(x: jnp.ndarray, proj: jnp.ndarray) -> jnp.ndarray:
    """float32 [B, D] @ [D, E] -> [B, E] at the highest matmul precision."""
    return jnp.dot(x, proj, precision=jax.lax.Precision.HIGHEST)


def global_representation(spec: Any, params: Any, cls: np.ndarray) -> np.ndarray:
    """The family's global representation from its stored, final-normed `cls` output.

    Extraction stores the `cls` output (for SigLIP already the MAP head's pooled vector). Where a
    family's global vector is a projection of that token (CLIP: ln_post(CLS) @ proj), the
    projection is applied here, so experiments that need one vector per image use what the
    family itself calls its image embedding (`FamilyRecord.global_output` names it).

    Args:
      spec: the model's `ModelSpec`.
      params: its parameters (read for `proj` when `spec.global_pool == "cls_proj"`).
      cls: float [N, D], the final-normed `cls` output of one layer.

    Returns:
      float32 [N, D], or [N, E] for projecting families.
    """
    cls = np.asarray(cls, np.float32)
    if spec.global_pool != "cls_proj":
        return cls
    proj = np.asarray(params["proj"], np.float64)
    return (cls.astype(np.float64) @ proj).astype(np.float32)


def resolve_layers(layers: Sequence[int] | int, depth: int) -> tuple[int, ...]:
    """Maps block indices (negatives count from the end) to sorted unique indices in [0, depth).

    Raises:
      ConfigError: an index outside [-depth, depth).
    """
    if isinstance(layers, int):
        layers = (layers,)
    resolved = set()
    for layer in layers:
        if not -depth <= int(layer) < depth:
            raise errors.ConfigError(
                f"layers: block index {layer} is outside [-{depth}, {depth}) for depth {depth}"
            )
        resolved.add(int(layer) % depth)
    if not resolved:
        raise errors.ConfigError("layers: expected at least one block index, got none")
    return tuple(sorted(resolved))


class VisionTransformer(nn.Module):
    """ViT encoder of every family; returns the requested blocks' tokens from one forward pass.

    Attributes:
      patch_size: P.
      width: D.
      depth: number of blocks.
      num_heads: H.
      mlp_dim: MLP hidden width.
      num_registers: R register tokens (DINOv2-reg), inserted after cls without position encoding.
      pos_embed: 'learned' (stored table), 'sincos' (MAE: fixed sin-cos stored as a parameter),
        'gsd_sincos' (Scale-MAE: computed from the grid and `gsd_ratio`), 'none' (SimMIM).
      pos_interp: how a stored table reaches other grids (`posembed.POS_INTERP_*`). torchvision
        ('size_align_corners') is resampled like torchvision's own `interpolate_embeddings`
        (bicubic, `size=`, `align_corners=True`) rather than refused; SimMIM
        ('rel_bias_geometric') resizes its relative-position-bias table like timm's BEiT
        (`posembed.resample_rel_pos_bias`); 'native_only' raises a ConfigError at any grid other
        than `native_grid`.
      native_grid: (gh, gw) patch grid of the stored tables (224/P, or 37 for DINOv2's 518).
      layerscale_init: initial LayerScale value; 0 = no LayerScale (only dinov2*, simmim have it).
      rel_pos_bias: SimMIM's shared relative position bias.
      qkv_bias: 'full', 'qv' or 'none'.
      mlp: 'gelu', 'gelu_tanh', 'quick_gelu' or 'swiglu' (`Mlp`).
      pre_norm: LayerNorm `norm_pre` on [cls, patches] + positions before the blocks (CLIP).
      patch_bias: the patch embedding has a bias.
      proj_dim: E > 0 adds `proj` [D, E]; the global output is then the normed CLS @ proj.
      norm_eps: LayerNorm epsilon (1e-6; CLIP and DINOv3 1e-5).
      dtype: matmul dtype (float32 default; bfloat16 for speed). Outputs are float32.
      class_token: whether a class token leads the sequence (SigLIP has none).
      global_pool: what "cls" returns: 'cls' (the class token) or 'map' (big_vision's attention
        pooling head over all tokens, SigLIP's global representation).
      rope_base: period base of the axial RoPE (pos_embed='rope', DINOv3).
    """

    patch_size: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    num_registers: int = 0
    pos_embed: str = "learned"
    pos_interp: str = posembed.POS_INTERP_SCALE_OFFSET
    native_grid: tuple[int, int] = (14, 14)
    layerscale_init: float = 0.0
    rel_pos_bias: bool = False
    qkv_bias: str = "full"
    mlp: str = "gelu"
    pre_norm: bool = False
    patch_bias: bool = True
    proj_dim: int = 0
    norm_eps: float = LAYERNORM_EPS
    dtype: Dtype = jnp.float32
    class_token: bool = True
    global_pool: str = "cls"
    rope_base: float = ROPE_BASE

    def _check_images(self, images: jnp.ndarray) -> tuple[int, int]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise errors.ConfigError(
                f"images: expected float [B, H, W, 3], got shape {tuple(images.shape)}"
            )
        height, width = images.shape[1:3]
        p = self.patch_size
        if height % p or width % p or height == 0 or width == 0:
            raise errors.ConfigError(
                f"images: height and width must be positive multiples of the patch size {p}, "
                f"got {height}x{width}"
            )
        return height // p, width // p

    def _position_encoding(self, grid: tuple[int, int], gsd_ratio) -> jnp.ndarray | None:
        """[1 or B, 1 + h*w, D] float32 encoding added to `[cls, patches]`, or None.

        Without a class token the table and the encoding have no cls entry: [1, h*w, D].
        """
        dim = self.width
        gh, gw = self.native_grid
        if self.pos_embed in ("learned", "sincos"):
            if self.pos_embed == "sincos":
                init = lambda *_: jnp.asarray(posembed.sincos_pos_embed(dim, (gh, gw)))  # noqa: E731
            else:
                init = _trunc_normal
            if not self.class_token:
                table = self.param("pos_embed", init, (1, gh * gw, dim), jnp.float32)
                # A zero cls slot lets the one resampling routine serve both table shapes.
                padded = jnp.concatenate([jnp.zeros((1, 1, dim), table.dtype), table], axis=1)
                return posembed.resample_pos_embed(padded, (gh, gw), grid, self.pos_interp)[:, 1:]
            table = self.param("pos_embed", init, (1, 1 + gh * gw, dim), jnp.float32)
            return posembed.resample_pos_embed(table, (gh, gw), grid, self.pos_interp)
        if self.pos_embed == "gsd_sincos":
            ratio = 1.0 if gsd_ratio is None else gsd_ratio
            return posembed.gsd_sincos_pos_embed(dim, grid, ratio)
        if self.pos_embed in ("none", "rope"):
            return None
        raise errors.ConfigError(
            f"pos_embed: expected one of {POS_EMBED_KINDS}, got {self.pos_embed!r}"
        )

    @nn.compact
    def __call__(
        self,
        images: jnp.ndarray,
        *,
        layers: Sequence[int] | int = (-1,),
        norm: bool = True,
        gsd_ratio: float | jnp.ndarray | None = None,
        keep_indices: jnp.ndarray | None = None,
    ) -> dict[str, Any]:
        """Encodes images and returns the tokens of the requested blocks.

        Args:
          images: float32 [B, H, W, 3], preprocessed (`models.preprocess`); H, W multiples of P.
          layers: static block indices, 0-based, negatives from the end (-1 = last block). Blocks
            after the deepest requested one are not run.
          norm: pass each returned layer through the final LayerNorm (as DINO/DINOv2's
            `get_intermediate_layers` and the paper do).
          gsd_ratio: Scale-MAE's ground-sample-distance ratio r, a scalar or float [B]; None = 1.0.
            Ignored by the other families.
          keep_indices: optional int [B, K] patch indices (row-major) kept by MAE masking; then
            every block runs and only the final normed tokens are returned.

        Returns:
          Without `keep_indices`: {"patch": {i: [B, h, w, D]}, "cls": {i: [B, D]},
          "registers": {i: [B, R, D]} (empty dict when R = 0), "global": {i: [B, D or E]}}, i the
          resolved (>= 0) indices; "global" is the family's global representation (the normed CLS
          token, with `proj_dim` that token @ proj, or with global_pool='map' the MAP head's
          pooled vector, which is then also "cls").
          With `keep_indices`: {"tokens": [B, 1 + R + K, D]} ([cls, registers, kept patches];
          no cls entry without a class token).
          All float32.

        Raises:
          ConfigError: bad image shape, layer index, or a grid the family cannot run on.
        """
        grid = self._check_images(images)
        self._check_pooling()
        masked = keep_indices is not None
        # Parameters are created in a fixed order (patch embedding, cls, positions, pre-norm,
        # registers, relative bias, blocks, final norm, projection, MAP head): linen draws each
        # top-level parameter's initial value from a counter, so the order fixes random models.
        x, rope = self._embed(images, grid, gsd_ratio)
        num_cls = 1 if self.class_token else 0
        if masked:
            x, rope = self._keep(x, keep_indices, num_cls, rope)
        x = self._insert_registers(x, num_cls)
        attn_bias = self._attention_bias(grid, masked)
        final_norm = layer_norm("norm", self.norm_eps)
        if masked or self.is_initializing():
            wanted = (self.depth - 1,)
        else:
            wanted = resolve_layers(layers, self.depth)
        collected, x = self._run_blocks(x, wanted, attn_bias, rope, final_norm, norm or masked)
        if masked:
            return {"tokens": collected[self.depth - 1]}
        if self.is_initializing() and not norm:
            final_norm(x)  # create the final norm's parameters even when it is not applied
        return self._outputs(collected, grid, num_cls)

    def _check_pooling(self) -> None:
        if self.global_pool not in GLOBAL_POOLS:
            raise errors.ConfigError(
                f"global_pool: expected one of {GLOBAL_POOLS}, got {self.global_pool!r}"
            )
        if not self.class_token and self.global_pool == "cls":
            raise errors.ConfigError(
                "global_pool: 'cls' needs a class token; a model without one (class_token=False) "
                "pools with 'map'"
            )

    def _embed(self, images, grid, gsd_ratio):
        """Patch tokens with cls and positions, [B, cls + N, D], and the RoPE tables or None."""
        batch, dim = images.shape[0], self.width
        x = PatchEmbed(dim, self.patch_size, self.dtype, self.patch_bias, name="patch_embed")(
            images
        )
        x = x.reshape(batch, grid[0] * grid[1], dim)
        if self.class_token:
            cls = self.param("cls_token", _trunc_normal, (1, 1, dim), jnp.float32)
            x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, dim)), x], axis=1)
        pos = self._position_encoding(grid, gsd_ratio)
        if pos is not None:
            x = x + pos
        if self.pre_norm:
            x = layer_norm("norm_pre", self.norm_eps)(x)
        rope = None
        if self.pos_embed == "rope":
            sin, cos = rope_tables(grid, dim // self.num_heads, self.rope_base)
            rope = (jnp.asarray(sin)[None], jnp.asarray(cos)[None])
        return x, rope

    def _keep(self, x, keep_indices, num_cls, rope):
        """MAE masking: the cls token(s) and the kept patches; RoPE tables gathered to match."""
        keep = jnp.asarray(keep_indices, jnp.int32)
        if keep.ndim != 2 or keep.shape[0] != x.shape[0]:
            raise errors.ConfigError(
                f"keep_indices: expected int [B={x.shape[0]}, K], got shape {tuple(keep.shape)}"
            )
        kept = jnp.take_along_axis(x[:, num_cls:], keep[:, :, None], axis=1)
        x = jnp.concatenate([x[:, :num_cls], kept], axis=1)
        if rope is not None:
            rope = tuple(jnp.take(t[0], keep, axis=0) for t in rope)  # [B, K, hd]
        return x, rope

    def _insert_registers(self, x, num_cls):
        if not self.num_registers:
            return x
        batch, dim = x.shape[0], self.width
        registers = self.param(
            "register_tokens", _trunc_normal, (1, self.num_registers, dim), jnp.float32
        )
        registers = jnp.broadcast_to(registers, (batch, self.num_registers, dim))
        # DINOv2: position encoding is added first, registers go in after cls without one.
        return jnp.concatenate([x[:, :num_cls], registers, x[:, num_cls:]], axis=1)

    def _attention_bias(self, grid, masked):
        """SimMIM's shared relative position bias [heads, T, T], or None."""
        if not self.rel_pos_bias:
            return None
        if masked:
            raise errors.ConfigError(
                "keep_indices: the shared relative position bias (SimMIM) covers full patch "
                "grids only, not a masked subset of patches"
            )
        return RelativePositionBias(
            self.num_heads,
            tuple(self.native_grid),
            grid,
            self.pos_interp,
            name="rel_pos_bias",
        )()

    def _run_blocks(self, x, wanted, attn_bias, rope, final_norm, apply_norm):
        """Runs blocks 0..max(wanted); returns {i: tokens (final-normed if apply_norm)}, last x."""
        collected = {}
        for i in range(wanted[-1] + 1):
            x = Block(
                self.num_heads,
                self.mlp_dim,
                self.layerscale_init,
                self.qkv_bias,
                self.dtype,
                self.mlp,
                self.norm_eps,
                name=f"block_{i}",
            )(x, attn_bias, rope)
            if i in wanted:
                collected[i] = final_norm(x) if apply_norm else x
        return collected, x

    def _outputs(self, collected, grid, num_cls):
        """The patch grid, cls, registers and global representation of every collected layer."""
        dim = self.width
        proj = None
        if self.proj_dim:
            proj = self.param(
                "proj", nn.initializers.lecun_normal(), (dim, self.proj_dim), jnp.float32
            )
        first_patch = num_cls + self.num_registers
        head = None
        if self.global_pool == "map":
            head = MAPHead(
                self.num_heads,
                self.mlp_dim,
                self.mlp,
                self.norm_eps,
                self.dtype,
                name="map_head",
            )
        out = {"patch": {}, "cls": {}, "registers": {}, "global": {}}
        for i, tokens in collected.items():
            if head is None:
                out["cls"][i] = tokens[:, 0]
                # The family's global representation: the CLS token, or CLIP's projected one.
                out["global"][i] = tokens[:, 0] if proj is None else _project(tokens[:, 0], proj)
            else:
                # SigLIP (no class token): "cls" and "global" are the MAP head's pooled vector of
                # that layer's returned tokens (the official pooled output at the last block).
                out["cls"][i] = out["global"][i] = head(tokens)
            batch = tokens.shape[0]
            out["patch"][i] = tokens[:, first_patch:].reshape(batch, grid[0], grid[1], dim)
            if self.num_registers:
                out["registers"][i] = tokens[:, num_cls:first_patch]
        return out
