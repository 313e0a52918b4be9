"""MAE's per-image random masking (the official `random_masking`), in JAX.

Each image draws uniform noise per patch; patches are shuffled by sorting the noise, the first
`round_down(N * (1 - mask_ratio))` of the shuffle are kept and the rest masked, so every image has
its own random subset of exactly the same size.

Examples:
  >>> keep, mask, restore = random_masking(jax.random.key(0), batch=2, num_patches=196)
  >>> keep.shape, mask.shape, mask.sum(1)                  # (2, 49), (2, 196), [147, 147]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vitjax import errors


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """Patches kept per image: `int(N * (1 - mask_ratio))`, as the official code; at least 1."""
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise errors.ConfigError(
            f"mask_ratio: expected a fraction in [0, 1), got {mask_ratio!r} (MAE uses 0.75)"
        )
    return max(1, int(num_patches * (1.0 - float(mask_ratio))))


def masking_from_noise(
    noise: jnp.ndarray, mask_ratio: float
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The masking that a given per-patch noise selects.

    Args:
      noise: float [B, N]; lower values are kept.
      mask_ratio: fraction of patches masked.

    Returns:
      keep: int32 [B, K] kept patch indices in shuffle order (ascending noise).
      mask: float32 [B, N], 1 = masked (the loss is taken there), 0 = kept.
      ids_restore: int32 [B, N], the inverse permutation of the shuffle.
    """
    batch, num_patches = noise.shape
    k = num_kept(num_patches, mask_ratio)
    ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
    ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
    keep = ids_shuffle[:, :k]
    shuffled = jnp.concatenate(
        [jnp.zeros((batch, k), jnp.float32), jnp.ones((batch, num_patches - k), jnp.float32)], 1
    )
    mask = jnp.take_along_axis(shuffled, ids_restore, axis=1)
    return keep, mask, ids_restore


def random_masking(
    key: jax.Array, batch: int, num_patches: int, mask_ratio: float = 0.75
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Random per-image masking; see `masking_from_noise` for the outputs ([B, K], [B, N], [B, N])."""
    noise = jax.random.uniform(key, (batch, num_patches), jnp.float32)
    return masking_from_noise(noise, mask_ratio)
