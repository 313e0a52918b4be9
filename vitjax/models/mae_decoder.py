"""MAE's pixel decoder and the patch <-> pixel layout it predicts in.

Parameter tree (names fixed for the converter): `decoder_embed/{kernel,bias}`, `mask_token [1,1,Dd]`,
`decoder_pos_embed [1,1+N,Dd]` (fixed sin-cos, stored), `decoder_block_{i}/...` (the encoder's
block layout), `decoder_norm/{scale,bias}`, `decoder_pred/{kernel [Dd, P*P*3], bias}`.

Examples:
  >>> patches = patchify(images, 16)             # [B, 224, 224, 3] -> [B, 196, 768]
  >>> images = unpatchify(patches, 16, (14, 14))  # and back
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vitjax import errors
from vitjax.models import posembed
from vitjax.models.vit import Block, layer_norm

Dtype = Any


def patchify(images: jnp.ndarray, patch_size: int) -> jnp.ndarray:
    """Cuts images into flattened patches in MAE's order.

    Args:
      images: [B, H, W, C], H and W multiples of `patch_size`.
      patch_size: P.

    Returns:
      [B, (H/P)*(W/P), P*P*C]; patches row-major, each flattened as (row-in-patch, col-in-patch,
      channel) like MAE's `einsum('nchpwq->nhwpqc')`.
    """
    batch, height, width, channels = images.shape
    p = patch_size
    if height % p or width % p:
        raise errors.ConfigError(
            f"images: height and width must be multiples of the patch size {p}, "
            f"got {height}x{width}"
        )
    h, w = height // p, width // p
    x = images.reshape(batch, h, p, w, p, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, h * w, p * p * channels)


def unpatchify(
    patches: jnp.ndarray, patch_size: int, grid: tuple[int, int], channels: int = 3
) -> jnp.ndarray:
    """Inverse of `patchify`.

    Args:
      patches: [B, h*w, P*P*C].
      patch_size: P.
      grid: (h, w) patch grid.
      channels: C.

    Returns:
      [B, h*P, w*P, C].
    """
    batch, num, length = patches.shape
    h, w = grid
    p = patch_size
    if num != h * w or length != p * p * channels:
        raise errors.ConfigError(
            f"patches: expected [B, {h * w}, {p * p * channels}] for grid {grid}, patch {p}, "
            f"{channels} channels, got {tuple(patches.shape)}"
        )
    x = patches.reshape(batch, h, w, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, h * p, w * p, channels)


def place_tokens(
    tokens: jnp.ndarray, keep_indices: jnp.ndarray, mask_token: jnp.ndarray, num_patches: int
) -> jnp.ndarray:
    """Puts the kept tokens at their patch positions and the mask token everywhere else.

    Args:
      tokens: [B, K, C] tokens of the kept patches, in `keep_indices` order.
      keep_indices: int [B, K] distinct patch indices.
      mask_token: [1, 1, C].
      num_patches: N.

    Returns:
      [B, N, C].
    """
    batch, _, channels = tokens.shape
    full = jnp.broadcast_to(mask_token.astype(tokens.dtype), (batch, num_patches, channels))
    rows = jnp.arange(batch)[:, None]
    return full.at[rows, keep_indices].set(tokens)


def decoder_inputs(tokens: jnp.ndarray, class_token: bool, num_registers: int) -> jnp.ndarray:
    """The masked encoder's output as the MAE decoder takes it: [cls, kept patches].

    Register / storage tokens are not decoded. A family without a class token (SigLIP) gives the
    mean of its kept tokens in the class token's slot: the decoder drops its output there, so the
    token only takes part in the decoder's attention.

    Args:
      tokens: [B, C + R + K, D] from the encoder with `keep_indices` (C = 1 with a class token).
      class_token: whether the encoder has a class token.
      num_registers: R.

    Returns:
      [B, 1 + K, D].
    """
    patches = tokens[:, (1 if class_token else 0) + num_registers :]
    cls = tokens[:, :1] if class_token else patches.mean(axis=1, keepdims=True)
    return jnp.concatenate([cls, patches], axis=1)


class MAEDecoder(nn.Module):
    """MAE decoder: kept encoder tokens (+ mask tokens) -> per-patch pixel predictions.

    Attributes:
      patch_size: P of the encoder.
      width: decoder width Dd (512 for the official models).
      depth: decoder blocks (8).
      num_heads: decoder heads (16).
      mlp_dim: decoder MLP width (2048).
      native_grid: (gh, gw) grid of `decoder_pos_embed`; other grids resample it like MAE's
        `interpolate_pos_embed` (bicubic, `size=`, no antialias).
      channels: image channels predicted per pixel (3).
      dtype: matmul dtype; outputs float32.
    """

    patch_size: int = 16
    width: int = 512
    depth: int = 8
    num_heads: int = 16
    mlp_dim: int = 2048
    native_grid: tuple[int, int] = (14, 14)
    channels: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        tokens: jnp.ndarray,
        keep_indices: jnp.ndarray | None = None,
        grid: tuple[int, int] | None = None,
    ) -> jnp.ndarray:
        """Predicts the pixels of every patch.

        Args:
          tokens: float [B, 1 + K, D] encoder output (normed final layer, cls first), e.g.
            `encoder.apply(..., keep_indices=keep)["tokens"]`.
          keep_indices: int [B, K] patch positions of the tokens; None = all N patches in order.
          grid: (h, w) patch grid of the image; None = `native_grid`.

        Returns:
          float32 [B, h*w, P*P*C] in `patchify` order (see `unpatchify`).
        """
        grid = tuple(self.native_grid if grid is None else grid)
        num_patches = grid[0] * grid[1]
        batch, length, _ = tokens.shape
        if keep_indices is None and length != 1 + num_patches:
            raise errors.ConfigError(
                f"tokens: without keep_indices expected [B, {1 + num_patches}, D] for grid "
                f"{grid}, got {tuple(tokens.shape)}"
            )
        if keep_indices is not None and keep_indices.shape != (batch, length - 1):
            raise errors.ConfigError(
                f"keep_indices: expected int [{batch}, {length - 1}] matching tokens "
                f"{tuple(tokens.shape)}, got {tuple(keep_indices.shape)}"
            )
        dim = self.width
        x = nn.Dense(dim, dtype=self.dtype, name="decoder_embed")(tokens).astype(jnp.float32)
        mask_token = self.param(
            "mask_token", nn.initializers.normal(0.02), (1, 1, dim), jnp.float32
        )
        gh, gw = self.native_grid
        pos_init = lambda *_: jnp.asarray(posembed.sincos_pos_embed(dim, (gh, gw)))  # noqa: E731
        pos = self.param("decoder_pos_embed", pos_init, (1, 1 + gh * gw, dim), jnp.float32)
        pos = posembed.resample_pos_embed(pos, (gh, gw), grid, posembed.POS_INTERP_SIZE)

        body = x[:, 1:]
        if keep_indices is not None:
            body = place_tokens(body, jnp.asarray(keep_indices, jnp.int32), mask_token, num_patches)
        x = jnp.concatenate([x[:, :1], body], axis=1) + pos
        for i in range(self.depth):
            x = Block(self.num_heads, self.mlp_dim, dtype=self.dtype, name=f"decoder_block_{i}")(x)
        x = layer_norm("decoder_norm")(x).astype(self.dtype)
        out_dim = self.patch_size * self.patch_size * self.channels
        pred = nn.Dense(out_dim, dtype=self.dtype, name="decoder_pred")(x)
        return pred[:, 1:].astype(jnp.float32)
