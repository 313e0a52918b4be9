"""DINO's projection head: a 3-layer MLP, L2 normalisation, and a weight-normalised last layer.

As the official `DINOHead` with `norm_last_layer=True`: Linear -> GELU -> Linear -> GELU -> Linear
to a bottleneck, `F.normalize`, then a bias-free linear layer whose weight vector per output unit
is normalised to length 1 (weight norm with the gain fixed to 1).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

_trunc_normal = nn.initializers.truncated_normal(0.02)
NORMALIZE_EPS = 1e-12  # F.normalize's eps


class DINOHead(nn.Module):
    """[..., D] features -> [..., out_dim] logits.

    Attributes:
      out_dim: K, the number of prototypes.
      hidden_dim: MLP width (2048 in DINO).
      bottleneck_dim: width before the last layer (256 in DINO).
    """

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        dense = lambda n, name: nn.Dense(n, kernel_init=_trunc_normal, name=name)  # noqa: E731
        x = nn.gelu(dense(self.hidden_dim, "mlp_0")(x), approximate=False)
        x = nn.gelu(dense(self.hidden_dim, "mlp_1")(x), approximate=False)
        x = dense(self.bottleneck_dim, "mlp_2")(x)
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), NORMALIZE_EPS)
        v = self.param("last_layer", _trunc_normal, (self.bottleneck_dim, self.out_dim))
        w = v / jnp.linalg.norm(v, axis=0, keepdims=True)
        return x @ w
