"""The pretraining optimiser: AdamW as the official MAE and DINO code runs it with torch.

`make_optimizer` chains gradient clipping (global norm, or DINO's per-parameter `clip_gradients`),
Adam, decoupled weight decay (constant, or DINO's cosine schedule) on matrices only, and the
warm-up + cosine learning rate; fixed tables (MAE's sin-cos position embeddings) get no update.
DINO's last-layer freeze (`cancel_gradients_last_layer`) leaves that layer's gradient `None` in
torch, so torch's Adam neither moves it nor counts the step: its moments and bias correction start
when the freeze ends. `scale_by_adam_held` does the same here (optax's Adam shares one step count
between all parameters).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from optax._src import numerics

from vitjax import models
from vitjax.pretrain import losses

CLIP_MODES = ("global", "per_parameter")
# Fixed tables that the official code does not train (MAE's sin-cos position embeddings).
FROZEN = ("decoder_pos_embed",)
# Not weight-decayed (as the official param groups): biases, norms, tokens, position tables.
NO_DECAY = ("cls_token", "pos_embed", "mask_token", "register_tokens", "decoder_pos_embed")
ADAM_EPS = 1e-8


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def _leaf_mask(params: dict, keep) -> dict:
    """Bool tree shaped like `params`: keep("block_0/attn/qkv/kernel", leaf) per leaf."""
    return jax.tree_util.tree_map_with_path(lambda path, v: keep(_path_name(path), v), params)


def frozen_mask(params: dict, spec: models.ModelSpec) -> dict:
    """Bool tree: True for the fixed tables that never train."""
    frozen = set(FROZEN) | ({"pos_embed"} if spec.pos_embed in ("sincos", "gsd_sincos") else set())
    return _leaf_mask(params, lambda name, _: name.rsplit("/", 1)[-1] in frozen)


def decay_mask(params: dict) -> dict:
    """Bool tree: True for the weight-decayed leaves (matrices, not tokens or position tables)."""
    return _leaf_mask(
        params, lambda name, v: np.ndim(v) >= 2 and name.rsplit("/", 1)[-1] not in NO_DECAY
    )


def is_last_layer(name: str) -> bool:
    """True for the DINO head's last layer ("head/last_layer"), which DINO freezes first."""
    return name == "head/last_layer" or name.startswith("head/last_layer/")


def clip_per_parameter(max_norm: float) -> optax.GradientTransformation:
    """DINO's `clip_gradients`: each tensor's gradient g becomes g * max_norm / (|g|_2 + 1e-6)
    where that factor is below 1, independently of every other tensor."""

    def update(updates, state, params=None):
        del params

        def one(g):
            coef = max_norm / (jnp.sqrt(jnp.sum(jnp.square(g))) + 1e-6)
            return jnp.where(coef < 1, g * coef, g)

        return jax.tree.map(one, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class HeldAdamState(NamedTuple):
    step: jax.Array  # int32 [], calls so far
    count: Any  # per leaf int32 []: the steps that leaf took (its bias-correction count)
    mu: Any
    nu: Any


def scale_by_adam_held(
    b1: float, b2: float, eps: float, is_held, held_steps: int
) -> optax.GradientTransformation:
    """Adam (as `optax.scale_by_adam`) whose leaves with `is_held(path)` ("head/last_layer")
    take no step during the first `held_steps` calls: update zero, moments and bias-correction
    count unchanged, as torch's Adam does for a parameter whose gradient is None. Leaves not held
    compute exactly what `optax.scale_by_adam(b1, b2, eps)` does.
    """

    def init(params):
        return HeldAdamState(
            step=jnp.zeros([], jnp.int32),
            count=jax.tree.map(lambda _: jnp.zeros([], jnp.int32), params),
            mu=optax.tree.zeros_like(params),
            nu=optax.tree.zeros_like(params),
        )

    def update(updates, state, params=None):
        del params
        holding = state.step < held_steps
        held = lambda path: held_steps > 0 and is_held(_path_name(path))  # noqa: E731
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)

        def keep_if_held(path, old, new):
            return jnp.where(holding, old, new) if held(path) else new

        count = jax.tree_util.tree_map_with_path(
            lambda path, c: keep_if_held(path, c, numerics.safe_increment(c)), state.count
        )
        mu_hat = jax.tree.map(lambda m, c: optax.tree.bias_correction(m, b1, c), mu, count)
        nu_hat = jax.tree.map(lambda v, c: optax.tree.bias_correction(v, b2, c), nu, count)
        steps = jax.tree_util.tree_map_with_path(
            lambda path, m, v: keep_if_held(path, jnp.zeros_like(m), m / (jnp.sqrt(v + 0.0) + eps)),
            mu_hat,
            nu_hat,
        )
        mu = jax.tree_util.tree_map_with_path(keep_if_held, state.mu, mu)
        nu = jax.tree_util.tree_map_with_path(keep_if_held, state.nu, nu)
        return steps, HeldAdamState(numerics.safe_increment(state.step), count, mu, nu)

    return optax.GradientTransformation(init, update)


def make_optimizer(config: ml_collections.ConfigDict, params: dict, spec: models.ModelSpec):
    """The optax transformation of `config.train` for `params` ({"encoder", "head" | "decoder"}).

    clip (train.grad_clip > 0, train.grad_clip_mode) -> Adam (b1, b2; DINO's last layer held for
    dino.freeze_last_layer_steps) -> weight decay (train.weight_decay, or a cosine to
    train.weight_decay_end over train.steps) on matrices -> warm-up + cosine learning rate;
    fixed tables get zero updates.
    """
    t = config.train
    steps = int(t.steps)
    lr = lambda step: losses.warmup_cosine(  # noqa: E731
        step, float(t.lr), float(t.min_lr), steps, int(t.warmup_steps)
    )
    weight_decay: Any = float(t.weight_decay)
    if t.weight_decay_end is not None:
        start, end = float(t.weight_decay), float(t.weight_decay_end)
        weight_decay = lambda step: losses.warmup_cosine(step, start, end, steps, 0)  # noqa: E731
    chain = []
    if float(t.grad_clip) > 0:
        clip = optax.clip_by_global_norm if t.grad_clip_mode == "global" else clip_per_parameter
        chain.append(clip(float(t.grad_clip)))
    held_steps = int(config.dino.freeze_last_layer_steps) if config.objective == "dino" else 0
    b1, b2 = float(t.b1), float(t.b2)
    chain += [
        # optax's own Adam where nothing is held: the same arithmetic, but XLA fuses the held
        # version differently (last-bit differences), and the shipped models were made with this.
        scale_by_adam_held(b1, b2, ADAM_EPS, is_last_layer, held_steps)
        if held_steps
        else optax.scale_by_adam(b1, b2, ADAM_EPS),
        optax.add_decayed_weights(weight_decay, mask=decay_mask(params)),
        optax.scale_by_learning_rate(lr),
    ]
    labels = jax.tree.map(lambda f: "frozen" if f else "train", frozen_mask(params, spec))
    return optax.multi_transform(
        {"train": optax.chain(*chain), "frozen": optax.set_to_zero()}, labels
    )


def freeze_last_layer(tree: dict, frozen) -> dict:
    """`tree` (gradients or updates of {"encoder", "head"}) with the head's last layer zeroed where
    `frozen` (a traced bool): the official `cancel_gradients_last_layer`, so neither the gradient
    nor AdamW's weight decay moves it (and `scale_by_adam_held` keeps its Adam state still).
    """
    head = dict(tree["head"])
    head["last_layer"] = jnp.where(frozen, 0.0, head["last_layer"])
    return dict(tree, head=head)


def apply_gradients(optimizer, params: dict, opt_state: Any, grads: dict, frozen=None):
    """One optimiser step: (new params, new optimiser state). `frozen` (DINO only, a traced bool):
    the head's last layer is frozen this step."""
    if frozen is not None:
        grads = freeze_last_layer(grads, frozen)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    if frozen is not None:
        updates = freeze_last_layer(updates, frozen)
    return optax.apply_updates(params, updates), opt_state
