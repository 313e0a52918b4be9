"""Linear probes on frozen features: an optax softmax probe and closed-form ridge regression.

`train_softmax_probe` trains a softmax linear layer (optionally after the MAE-style non-affine
BatchNorm) with minibatches streamed from the host, so the features may be an `np.memmap` larger
than device memory. Every (learning rate, weight decay) pair of the sweep is trained at once (vmapped
over the sweep, sharing each minibatch), the best pair is chosen on a seeded held-out part of the
training rows, and by default the probe is then retrained with that pair on all training rows.
A feature mask drops dims inside the compiled step, so removal sweeps compile once per width D.

`feature_moments` / `feature_normalizer` / `normalize_features` are vitjax's one feature
standardisation (streamed float64 statistics, MAE's BatchNorm eps 1e-6), shared by the probe's
BatchNorm and the variance experiment.

`ridge_fit` solves ridge regression for many L2 strengths from one eigendecomposition, in float64 on
the host (small math stays off the accelerator).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from vitjax import errors, metrics

_CHUNK_ROWS = 65536
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")


# ----------------------------------------------------------------------------------------------
# Feature normalisation (the MAE probe's non-affine BatchNorm)
# ----------------------------------------------------------------------------------------------

# The eps of MAE's linear-probe BatchNorm (`BatchNorm1d(affine=False, eps=1e-6)`).
BATCHNORM_EPS = 1e-6
# Rows per chunk of the streamed statistics and normalisation: one float64 chunk is ~100 MB at
# D = 768, however many rows the feature store holds.
STATS_CHUNK_ROWS = 16_384


def _check_features(name: str, features: Any) -> tuple[int, int]:
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2:
        raise errors.ConfigError(f"probes: `{name}` must be a 2-D array [N, D], got {shape}")
    return int(shape[0]), int(shape[1])


def _read_rows(features: Any, rows: np.ndarray) -> np.ndarray:
    """float32 copy of features[rows]; reads a memmap in ascending row order."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), features.shape[1]), np.float32)
    out[order] = np.asarray(features[rows[order]], dtype=np.float32)
    return out


def _row_chunks(features: Any, rows: np.ndarray | None, chunk_rows: int) -> Iterator[np.ndarray]:
    """features (or features[rows], ascending) in chunks of `chunk_rows` rows, as stored."""
    chunk_rows = max(1, int(chunk_rows))
    if rows is None:
        for start in range(0, features.shape[0], chunk_rows):
            yield features[start : start + chunk_rows]
    else:
        for start in range(0, len(rows), chunk_rows):
            yield np.asarray(features[rows[start : start + chunk_rows]])


def feature_moments(
    features: Any, rows: Any = None, chunk_rows: int = STATS_CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and (population) variance over the rows, streamed in row chunks.

    Two passes with float64 accumulators: the mean first, then the squared deviations from it
    (with the sum of deviations as a rounding correction), so a large common offset does not
    cancel as in E[x^2] - E[x]^2. Only one chunk is ever converted to float64, so an np.memmap
    of the feature store is never loaded whole.

    Args:
      features: float [N, D] array-like (float16 / float32 / float64; np.memmap welcome).
      rows: optional int indices of the rows to use (default: all rows).
      chunk_rows: rows per chunk.

    Returns:
      (mean, var): float64 [D] each; var equals `np.var(features[rows].astype(np.float64), 0)`.

    Raises:
      errors.ConfigError: `features` is not 2-D, or there are no rows, or a row is out of range.
      errors.InputError: a used row holds NaN or inf (seen for free in the float64 sums).

    Examples:
      >>> mean, var = feature_moments(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]))
      >>> mean.tolist(), np.round(var, 6).tolist()
      ([2.0, 1.0], [2.666667, 0.0])
    """
    num_rows, dim = _check_features("features", features)
    if rows is not None:
        rows = np.sort(np.asarray(rows, dtype=np.int64).reshape(-1))
        if len(rows) and (rows[0] < 0 or rows[-1] >= num_rows):
            raise errors.ConfigError(
                f"probes.feature_moments: `rows` must index [0, {num_rows}), got "
                f"[{rows[0]}, {rows[-1]}]"
            )
    count = num_rows if rows is None else len(rows)
    if count == 0:
        raise errors.ConfigError(
            f"probes.feature_moments: no rows to compute statistics from (features {num_rows} x "
            f"{dim}, {'all rows' if rows is None else f'{len(rows)} rows selected'})"
        )
    total = np.zeros(dim, np.float64)
    for chunk in _row_chunks(features, rows, chunk_rows):
        # dtype=float64 accumulates without a float64 copy of the chunk.
        total += np.add.reduce(chunk, axis=0, dtype=np.float64)
    if not np.isfinite(total).all():
        metrics.check_finite("probes.feature_moments", "features", features, rows=rows)
    mean = total / count
    squares = np.zeros(dim, np.float64)
    deviations = np.zeros(dim, np.float64)
    for chunk in _row_chunks(features, rows, chunk_rows):
        dev = np.asarray(chunk, np.float64) - mean
        deviations += dev.sum(axis=0)
        squares += np.einsum("ij,ij->j", dev, dev)
    var = (squares - deviations**2 / count) / count
    return mean, np.maximum(var, 0.0)


def feature_normalizer(
    features: Any,
    rows: Any = None,
    eps: float = BATCHNORM_EPS,
    chunk_rows: int = STATS_CHUNK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of the non-affine BatchNorm of the MAE linear probe, from `feature_moments`.

    This is the one feature standardisation of vitjax: the probe's BatchNorm
    (`train_softmax_probe(batchnorm=True)`, on its labelled rows) and the variance experiment's
    "batchnorm" features both use it, and `normalize_features` applies it.

    Args:
      features: [N, D] array-like (np.memmap streamed in chunks).
      rows: optional int indices of the rows to use, e.g. the labelled ones (default: all).
      eps: added to the population variance (MAE's BatchNorm1d eps, 1e-6, by default).
      chunk_rows: rows per chunk.

    Returns:
      (mean float64 [D], std float64 [D]) with std = sqrt(var + eps); normalise as (x - mean) / std.

    Raises:
      errors.ConfigError: as `feature_moments`, or eps < 0.

    Examples:
      >>> mean, std = feature_normalizer(np.array([[0.0], [2.0]]))
      >>> mean.tolist(), np.round(std, 4).tolist()
      ([1.0], [1.0])
    """
    if eps < 0:
        raise errors.ConfigError(f"probes.feature_normalizer: eps must be >= 0, got {eps}")
    mean, var = feature_moments(features, rows=rows, chunk_rows=chunk_rows)
    return mean, np.sqrt(var + eps)


def _check_mask(feature_mask: Any, dim: int, where: str) -> np.ndarray | None:
    """bool [D] copy of a bool / 0-1 feature mask (None stays None)."""
    if feature_mask is None:
        return None
    mask = np.asarray(feature_mask)
    if mask.shape != (dim,):
        raise errors.ConfigError(
            f"{where}: `feature_mask` must have shape ({dim},) (one entry per feature dim), "
            f"got {mask.shape}"
        )
    if mask.dtype != bool:
        if not np.all((mask == 0) | (mask == 1)):
            raise errors.ConfigError(f"{where}: `feature_mask` must be bool or 0/1 values")
        mask = mask == 1
    return mask.copy()


def _split_mean(mean: np.ndarray | None, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean as float32 (high, low) with high + low ~= mean to ~2^-48 relative.

    Subtracting both parts in float32 keeps (x - mean) accurate where the mean is large against
    the spread (float32 rounding of a mean of 1e4 alone is an error of ~5e-4).
    """
    if mean is None:
        return np.zeros(dim, np.float32), np.zeros(dim, np.float32)
    high = np.asarray(mean, np.float32)
    return high, np.asarray(np.asarray(mean, np.float64) - high, np.float32)


def _normalize(xp, x, mean_hi, mean_lo, std, mask):
    """(x - mean) / std, masked dims set to 0; float32, with xp = numpy or jax.numpy.

    The host (`normalize_features`, `LinearProbe.predict`) and the compiled training step run this
    same float32 arithmetic, so a probe sees the same features in training and at prediction.
    """
    if std is not None:
        x = (x - mean_hi - mean_lo) / std
    if mask is not None:
        # where, not multiply: a masked dim holding inf or NaN must still contribute exactly 0.
        x = xp.where(mask, x, xp.zeros((), x.dtype))
    return x


def normalize_features(
    features: Any,
    mean: Any,
    std: Any,
    feature_mask: Any = None,
    chunk_rows: int = STATS_CHUNK_ROWS,
) -> np.ndarray:
    """Applies the BatchNorm of `feature_normalizer`: (x - mean) / std, read in row chunks.

    Args:
      features: float [N, D] array-like (np.memmap welcome; only the result is held whole).
      mean, std: float [D] from `feature_normalizer`.
      feature_mask: optional bool / 0-1 [D]; dims where it is False/0 come out as 0.
      chunk_rows: rows per chunk.

    Returns:
      float32 [N, D].

    Raises:
      errors.ConfigError: shapes disagree.
      errors.InputError: features (in the dims kept), mean or std hold NaN or inf.

    Examples:
      >>> normalize_features(np.array([[3.0, 5.0]]), np.array([1.0, 1.0]), np.array([2.0, 4.0]))
      array([[1., 1.]], dtype=float32)
    """
    num_rows, dim = _check_features("features", features)
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    if mean.shape != (dim,) or std.shape != (dim,):
        raise errors.ConfigError(
            f"probes.normalize_features: features have D={dim} but mean/std have shapes "
            f"{mean.shape} and {std.shape}"
        )
    mask = _check_mask(feature_mask, dim, "probes.normalize_features")
    metrics.check_finite("probes.normalize_features", "mean", mean[None])
    metrics.check_finite("probes.normalize_features", "std", std[None])
    mean_hi, mean_lo = _split_mean(mean, dim)
    std32 = std.astype(np.float32)
    out = np.empty((num_rows, dim), np.float32)
    chunk_rows = max(1, int(chunk_rows))
    for start in range(0, num_rows, chunk_rows):
        chunk = np.asarray(features[start : start + chunk_rows], np.float32)
        normalized = _normalize(np, chunk, mean_hi, mean_lo, std32, mask)
        if not np.isfinite(normalized).all():
            metrics.check_finite("probes.normalize_features", "features", features, columns=mask)
        out[start : start + len(chunk)] = normalized
    return out


# ----------------------------------------------------------------------------------------------
# Softmax probe
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Training settings of the softmax probe.

    Attributes:
      optimizer: "adamw" (decoupled weight decay) or "sgd" (momentum, L2 added to the gradient).
      learning_rates: peak learning rates of the sweep.
      weight_decays: weight decays of the sweep (on the weights, not the bias).
      epochs: passes over the training rows.
      batch_size: rows per step.
      warmup_epochs: linear warm-up from 0, in epochs.
      schedule: "cosine" (decay to 0 after warm-up) or "constant".
      momentum: SGD momentum.
      val_fraction: held-out share of the training rows used to pick the sweep's best pair.
      retrain_on_all: after selection, retrain the best pair on all rows (True) or keep the model
        trained on the rest of the rows (False).
      steps_per_call: steps per jit call (one host-to-device transfer of that many batches).
    """

    optimizer: str = "adamw"
    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-2)
    epochs: int = 10
    batch_size: int = 4096
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    momentum: float = 0.9
    val_fraction: float = 0.1
    retrain_on_all: bool = True
    steps_per_call: int = 16

    def validate(self) -> None:
        """Raises errors.ConfigError naming the first bad field."""
        if self.optimizer not in OPTIMIZERS:
            raise errors.ConfigError(
                f"ProbeConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise errors.ConfigError(
                f"ProbeConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}"
            )
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise errors.ConfigError(
                f"ProbeConfig.learning_rates must be non-empty and > 0, got {self.learning_rates}"
            )
        if not self.weight_decays or min(self.weight_decays) < 0:
            raise errors.ConfigError(
                f"ProbeConfig.weight_decays must be non-empty and >= 0, got {self.weight_decays}"
            )
        for name in ("epochs", "batch_size", "steps_per_call"):
            if getattr(self, name) < 1:
                raise errors.ConfigError(f"ProbeConfig.{name} must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise errors.ConfigError(
                f"ProbeConfig.val_fraction must be in [0, 1), got {self.val_fraction}"
            )
        if self.warmup_epochs < 0:
            raise errors.ConfigError("ProbeConfig.warmup_epochs must be >= 0")


@dataclasses.dataclass
class LinearProbe:
    """A trained softmax probe: logits = normalize(x) @ weights + bias.

    Attributes:
      weights: float32 [D, C]; rows of masked dims are exactly 0 (see `train_softmax_probe`).
      bias: float32 [C].
      mean, std: float64 [D] BatchNorm statistics (`feature_normalizer`) of the labelled training
        rows, or None without batchnorm.
      learning_rate, weight_decay: the chosen sweep pair.
      val_accuracy: accuracy of the chosen pair on the held-out rows (None without a held-out set).
      sweep: one dict per pair: learning_rate, weight_decay, val_accuracy.
      retrained_on_all: whether the weights come from a retraining on all rows.
      feature_mask: bool [D] dims the probe sees (False: ignored), or None for all dims.
    """

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray | None
    std: np.ndarray | None
    learning_rate: float
    weight_decay: float
    val_accuracy: float | None
    sweep: list[dict[str, float]]
    retrained_on_all: bool
    feature_mask: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return int(self.weights.shape[1])

    @property
    def hparams(self) -> dict[str, float]:
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay}

    def normalize(self, features: Any) -> np.ndarray:
        """(features - mean) / std with the training-set statistics, masked dims 0: float32 [N, D].

        Raises:
          errors.ConfigError: the probe was trained without batchnorm, or D differs.
        """
        if self.mean is None:
            raise errors.ConfigError(
                "LinearProbe.normalize: the probe was trained without batchnorm"
            )
        return normalize_features(features, self.mean, self.std, self.feature_mask)

    def _inputs(self, block: np.ndarray) -> np.ndarray:
        """The probe's input of a float32 block: normalised and masked as in training."""
        dim = self.weights.shape[0]
        mean_hi, mean_lo = _split_mean(self.mean, dim)
        std = None if self.std is None else np.asarray(self.std, np.float32)
        return _normalize(np, block, mean_hi, mean_lo, std, self.feature_mask)

    def predict(self, features: Any) -> np.ndarray:
        """Logits float32 [N, C] of features [N, D] (array-like; read in chunks).

        Raises:
          errors.ConfigError: D differs from the probe's.
          errors.InputError: features hold NaN or inf in a dim the probe uses.
        """
        num_rows, dim = _check_features("features", features)
        if dim != self.weights.shape[0]:
            raise errors.ConfigError(
                f"LinearProbe.predict: features have D={dim}, the probe expects "
                f"{self.weights.shape[0]}"
            )
        out = np.empty((num_rows, self.num_classes), np.float32)
        for start in range(0, num_rows, _CHUNK_ROWS):
            block = np.asarray(features[start : start + _CHUNK_ROWS], dtype=np.float32)
            logits = self._inputs(block) @ self.weights + self.bias
            # A NaN or inf input always reaches the logits; checking [N, C] rather than [N, D]
            # keeps the check off the prediction's cost.
            if not np.isfinite(logits).all():
                metrics.check_finite(
                    "LinearProbe.predict", "features", block, columns=self.feature_mask
                )
            out[start : start + len(block)] = logits
        return out

    def predict_labels(self, features: Any) -> np.ndarray:
        """Predicted classes int32 [N]."""
        return np.argmax(self.predict(features), axis=1).astype(np.int32)


def _lr_multiplier(schedule: str, step, warmup_steps, total_steps):
    """Learning-rate multiplier (peak 1) at `step`: linear warm-up, then cosine decay to 0 or flat.

    The step counts are traced values, so one compiled step serves every dataset size and epoch
    count.
    """
    step = jnp.asarray(step, jnp.float32)
    warmup = jnp.maximum(warmup_steps, 1.0)
    ramp = jnp.where(warmup_steps > 0, jnp.minimum(step / warmup, 1.0), 1.0)
    if schedule == "constant":
        return ramp
    decay_steps = jnp.maximum(total_steps - warmup_steps, 1.0)
    progress = jnp.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup_steps, ramp, cosine)


def _make_optimizer(optimizer: str, momentum: float, lr_fn, weight_decay):
    """optax transformation for one sweep member (lr and wd may be traced under vmap)."""
    decay_mask = {"w": True, "b": False}
    if optimizer == "adamw":
        return optax.adamw(lr_fn, weight_decay=weight_decay, mask=decay_mask)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        optax.sgd(lr_fn, momentum=momentum),
    )


@functools.lru_cache(maxsize=16)
def _train_fns(optimizer: str, schedule: str, momentum: float, batchnorm: bool):
    """(init, run) jitted; `run` applies a block of minibatch steps to every sweep member."""

    def make_tx(lr, wd, warmup_steps, total_steps):
        def lr_fn(step):
            return lr * _lr_multiplier(schedule, step, warmup_steps, total_steps)

        return _make_optimizer(optimizer, momentum, lr_fn, wd)

    def init(params, learning_rates, weight_decays):
        def one(p, lr, wd):
            return make_tx(lr, wd, 0.0, 1.0).init(p)

        return jax.vmap(one)(params, learning_rates, weight_decays)

    def run(
        params,
        opt_state,
        learning_rates,
        weight_decays,
        warmup_steps,
        total_steps,
        batches,
        mean_hi,
        mean_lo,
        std,
        mask,
    ):
        def member_step(p, state, lr, wd, x, y, w, is_valid):
            def loss_fn(p):
                logits = x @ p["w"] + p["b"]
                losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
                return jnp.sum(losses * w) / jnp.maximum(jnp.sum(w), 1.0)

            loss, grads = jax.value_and_grad(loss_fn)(p)
            tx = make_tx(lr, wd, warmup_steps, total_steps)
            updates, new_state = tx.update(grads, state, p)
            new_p = optax.apply_updates(p, updates)
            # Padding steps past the end of training must not move weights or optimiser counts.
            keep = lambda new, old: jnp.where(is_valid, new, old)  # noqa: E731
            return (
                jax.tree.map(keep, new_p, p),
                jax.tree.map(keep, new_state, state),
                loss,
            )

        def step(carry, batch):
            p, state = carry
            x, y, w, is_valid = batch
            # A masked dim enters as an exact 0: its weight gets a zero gradient and, starting at
            # zero, stays 0, so the probe equals one trained without that column, while the width
            # (and the compiled step) stays D for every mask.
            x = _normalize(jnp, x, mean_hi, mean_lo, std if batchnorm else None, mask)
            # Rows holding NaN or inf in a used dim, counted in the same compiled step (padding
            # rows are zeros); the host reads the counts when it waits for the call anyway.
            bad_rows = jnp.sum(jnp.any(~jnp.isfinite(x), axis=1), dtype=jnp.int32)
            p, state, loss = jax.vmap(member_step, in_axes=(0, 0, 0, 0, None, None, None, None))(
                p, state, learning_rates, weight_decays, x, y, w, is_valid
            )
            return (p, state), (loss, bad_rows)

        (params, opt_state), (losses, bad_rows) = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses, jnp.sum(bad_rows)

    return jax.jit(init), jax.jit(run)


def _step_rows(rows: np.ndarray, epochs: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of every step: a fresh seeded permutation per epoch, last batch short."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(rows)
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


def _train(
    features: Any,
    labels: np.ndarray,
    rows: np.ndarray,
    num_classes: int,
    learning_rates: np.ndarray,
    weight_decays: np.ndarray,
    config: ProbeConfig,
    mean: np.ndarray | None,
    std: np.ndarray | None,
    mask: np.ndarray,
    seed: int,
) -> dict[str, np.ndarray]:
    """Trains one probe per (lr, wd) member on `rows`; returns {"w": [H, D, C], "b": [H, C]}."""
    dim = features.shape[1]
    members = len(learning_rates)
    batch = config.batch_size
    steps_per_epoch = -(-len(rows) // batch)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(int(round(config.warmup_epochs * steps_per_epoch)), total_steps - 1)
    init, run = _train_fns(config.optimizer, config.schedule, config.momentum, mean is not None)
    params = {
        "w": jnp.zeros((members, dim, num_classes), jnp.float32),
        "b": jnp.zeros((members, num_classes), jnp.float32),
    }
    lrs = jnp.asarray(learning_rates, jnp.float32)
    wds = jnp.asarray(weight_decays, jnp.float32)
    opt_state = init(params, lrs, wds)
    mean_hi, mean_lo = (jnp.asarray(part) for part in _split_mean(mean, dim))
    std_dev = jnp.asarray(std if std is not None else np.ones(dim), jnp.float32)
    mask_dev = jnp.asarray(mask, bool)

    per_call = min(config.steps_per_call, total_steps)
    steps = _step_rows(rows, config.epochs, batch, seed)
    done, start_time, in_flight = 0, time.perf_counter(), None
    while done < total_steps:
        xs = np.zeros((per_call, batch, dim), np.float32)
        ys = np.zeros((per_call, batch), np.int32)
        ws = np.zeros((per_call, batch), np.float32)
        valid = np.zeros(per_call, bool)
        for i in range(min(per_call, total_steps - done)):
            step_rows = next(steps)
            xs[i, : len(step_rows)] = _read_rows(features, step_rows)
            ys[i, : len(step_rows)] = labels[step_rows]
            ws[i, : len(step_rows)] = 1.0
            valid[i] = True
        params, opt_state, losses, bad_rows = run(
            params,
            opt_state,
            lrs,
            wds,
            np.float32(warmup_steps),
            np.float32(total_steps),
            (xs, ys, ws, valid),
            mean_hi,
            mean_lo,
            std_dev,
            mask_dev,
        )
        # The next batches are gathered on the host while this call runs; waiting for the
        # previous call keeps at most two blocks of batches alive.
        if in_flight is not None:
            finished, last_losses, last_bad = in_flight
            if int(last_bad):
                _raise_nonfinite(features, rows, mask)
            last_losses = np.asarray(last_losses)
            elapsed = time.perf_counter() - start_time
            logging.log_every_n_seconds(
                logging.INFO,
                "probe training: step %d/%d, %.1f steps/s, ETA %.0fs, last losses %s",
                10,
                finished,
                total_steps,
                finished / elapsed,
                (total_steps - finished) * elapsed / finished,
                np.round(last_losses, 4).tolist(),
            )
        done += int(valid.sum())
        in_flight = (done, losses[int(valid.sum()) - 1], bad_rows)
    if int(in_flight[2]):
        _raise_nonfinite(features, rows, mask)
    return {key: np.asarray(value) for key, value in params.items()}


def _raise_nonfinite(features: Any, rows: np.ndarray, mask: np.ndarray) -> None:
    """Raises the `errors.InputError` naming the non-finite training rows the step counted."""
    metrics.check_finite("probes.train_softmax_probe", "features", features, mask, rows)
    raise errors.InputError("probes.train_softmax_probe: `features` changed during training")


def _accuracies(
    features: Any,
    labels: np.ndarray,
    rows: np.ndarray,
    params: dict[str, np.ndarray],
    mean: np.ndarray | None,
    std: np.ndarray | None,
    mask: np.ndarray,
) -> np.ndarray:
    """Accuracy float64 [H] of every member on features[rows]."""
    correct = np.zeros(params["w"].shape[0], np.int64)
    dim = features.shape[1]
    mean_hi, mean_lo = _split_mean(mean, dim)
    std32 = None if std is None else np.asarray(std, np.float32)
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        x = _normalize(np, _read_rows(features, chunk), mean_hi, mean_lo, std32, mask)
        logits = np.matmul(x[None], params["w"]) + params["b"][:, None, :]
        # Non-finite logits come from a non-finite input or from a diverged member; only the
        # first is an error (a diverged member just scores low).
        if not np.isfinite(logits).all() and not np.isfinite(x).all():
            metrics.check_finite("probes.train_softmax_probe", "features", features, mask, chunk)
        correct += (np.argmax(logits, axis=2) == labels[chunk][None, :]).sum(axis=1)
    return correct / len(rows)


def train_softmax_probe(
    features: Any,
    labels: Any,
    num_classes: int,
    ignore_label: int = 255,
    batchnorm: bool = False,
    seed: int = 0,
    config: ProbeConfig = ProbeConfig(),
    feature_mask: Any = None,
) -> LinearProbe:
    """Trains a softmax linear probe, picking (lr, wd) on a held-out part of the rows.

    Rows labelled `ignore_label` take no part. The held-out rows (`config.val_fraction`, a seeded
    random subset) select the sweep's best pair (ties: the earlier pair in learning-rate-major
    order); with `config.retrain_on_all` the probe is then retrained with that pair on all rows,
    otherwise the model trained without the held-out rows is kept. With `batchnorm`, features are
    first normalised by the non-affine BatchNorm of the MAE linear probe, with the mean and variance
    of all labelled training rows (fixed, rather than per batch; see `feature_normalizer`).

    `feature_mask` removes dims without changing the width: masked dims are set to 0 on the device
    (after the BatchNorm), so every mask of the same D shares one compiled training step and a
    memmap is still streamed rather than copied column by column. Guarantee: the weights of masked
    dims start at 0, get an exactly-zero gradient and an exactly-zero decay (0 * wd), so they are
    exactly 0 for both optimisers, and the unmasked weights follow the same trajectory as a probe
    trained on the column-deleted features with the same seed (equal up to float32 summation order
    in the D-wide matrix products). Prediction masks the same dims.

    Args:
      features: [N, D] float array-like (np.memmap is read in minibatches, never whole).
      labels: int [N] in [0, num_classes) or `ignore_label`.
      num_classes: C.
      ignore_label: label of rows to leave out.
      batchnorm: put the non-affine BatchNorm (eps 1e-6) before the linear layer.
      seed: seeds the held-out split and the minibatch order (weights start at zero).
      config: a `ProbeConfig`.
      feature_mask: optional bool / 0-1 [D]: dims where it is False/0 take no part.

    Returns:
      A `LinearProbe`.

    Raises:
      errors.ConfigError: on bad shapes, labels outside [0, C) other than the ignore label, a bad
        config, or a sweep of several pairs without held-out rows.
      errors.InputError: float labels, or NaN / inf in a used dim of a labelled row (counted on
        the device in the training step).
    """
    config.validate()
    num_rows, dim = _check_features("features", features)
    mask = _check_mask(feature_mask, dim, "probes.train_softmax_probe")
    train_mask = np.ones(dim, bool) if mask is None else mask
    labels = metrics.check_labels("probes.train_softmax_probe", "labels", labels)
    if labels.shape != (num_rows,):
        raise errors.ConfigError(
            f"probes.train_softmax_probe: `labels` must have shape ({num_rows},), got {labels.shape}"
        )
    labelled = labels != ignore_label
    bad = labelled & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise errors.ConfigError(
            f"probes.train_softmax_probe: `labels` must be in [0, {num_classes}) or "
            f"{ignore_label}, found {np.unique(labels[bad])[:10].tolist()}"
        )
    labels = np.where(labelled, labels, 0).astype(np.int32)
    rows = np.flatnonzero(labelled)
    if len(rows) == 0:
        raise errors.ConfigError("probes.train_softmax_probe: no labelled rows to train on")

    mean = std = None
    if batchnorm:
        mean, std = feature_normalizer(features, rows=rows)

    grid = [(lr, wd) for lr in config.learning_rates for wd in config.weight_decays]
    num_val = int(round(config.val_fraction * len(rows)))
    if num_val == 0 or num_val == len(rows):
        if len(grid) > 1:
            raise errors.ConfigError(
                "probes.train_softmax_probe: a sweep of several (lr, wd) pairs needs held-out rows; "
                f"val_fraction={config.val_fraction} of {len(rows)} labelled rows gives {num_val}"
            )
        params = _train(
            features,
            labels,
            rows,
            num_classes,
            np.array([grid[0][0]]),
            np.array([grid[0][1]]),
            config,
            mean,
            std,
            train_mask,
            seed,
        )
        return LinearProbe(
            params["w"][0],
            params["b"][0],
            mean,
            std,
            grid[0][0],
            grid[0][1],
            None,
            [
                {
                    "learning_rate": grid[0][0],
                    "weight_decay": grid[0][1],
                    "val_accuracy": float("nan"),
                }
            ],
            retrained_on_all=True,
            feature_mask=mask,
        )

    shuffled = np.random.default_rng(seed).permutation(rows)
    val_rows, train_rows = np.sort(shuffled[:num_val]), np.sort(shuffled[num_val:])
    lrs = np.array([lr for lr, _ in grid])
    wds = np.array([wd for _, wd in grid])
    params = _train(
        features, labels, train_rows, num_classes, lrs, wds, config, mean, std, train_mask, seed
    )
    accuracies = _accuracies(features, labels, val_rows, params, mean, std, train_mask)
    best = int(np.argmax(accuracies))  # first maximum: earlier pair wins ties
    sweep = [
        {"learning_rate": float(lr), "weight_decay": float(wd), "val_accuracy": float(acc)}
        for (lr, wd), acc in zip(grid, accuracies)
    ]
    logging.info("probe sweep (val accuracy): %s", sweep)
    weights, bias = params["w"][best], params["b"][best]
    if config.retrain_on_all:
        params = _train(
            features,
            labels,
            rows,
            num_classes,
            lrs[best : best + 1],
            wds[best : best + 1],
            config,
            mean,
            std,
            train_mask,
            seed,
        )
        weights, bias = params["w"][0], params["b"][0]
    return LinearProbe(
        weights,
        bias,
        mean,
        std,
        float(lrs[best]),
        float(wds[best]),
        float(accuracies[best]),
        sweep,
        retrained_on_all=config.retrain_on_all,
        feature_mask=mask,
    )


# ----------------------------------------------------------------------------------------------
# Closed-form ridge regression
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RidgeModel:
    """Ridge regression for any L2 strength from one eigendecomposition (all float64).

    Minimises ||Y - X W - b||^2 + l2 ||W||^2 with an unpenalised intercept b (so l2 equals
    sklearn's `Ridge(alpha=l2)`). With l2 = 0 the minimum-norm least-squares solution is returned.

    Attributes:
      x_mean: [D]; y_mean: [T]; eigvals: [R] eigenvalues of the Gram matrix;
      basis: [D, R] maps spectral coordinates to weights; proj: [R, T] spectral targets;
      l2s: the strengths given to `ridge_fit`; squeeze: Y was 1-D.
    """

    x_mean: np.ndarray
    y_mean: np.ndarray
    eigvals: np.ndarray
    basis: np.ndarray
    proj: np.ndarray
    l2s: tuple[float, ...]
    squeeze: bool = False

    def weights(self, l2: float) -> tuple[np.ndarray, np.ndarray]:
        """(W float64 [D, T], b float64 [T]) for strength `l2` >= 0."""
        if l2 < 0:
            raise errors.ConfigError(f"RidgeModel: l2 must be >= 0, got {l2}")
        denom = self.eigvals + l2
        # Directions with (numerically) zero denominator carry no signal: pseudo-inverse.
        tol = max(float(self.eigvals.max(initial=0.0)), 1e-300) * 1e-12
        inv = np.where(denom > tol, 1.0 / np.where(denom > tol, denom, 1.0), 0.0)
        w = self.basis @ (self.proj * inv[:, None])
        return w, self.y_mean - self.x_mean @ w

    def predict(self, X: Any, l2: float) -> np.ndarray:
        """Predictions float64 [N, T] (or [N] if Y was 1-D) of X [N, D].

        Raises:
          errors.InputError: X holds NaN or inf.
        """
        w, b = self.weights(l2)
        X = np.asarray(X, dtype=np.float64)
        out = X @ w + b
        if not np.isfinite(out).all():
            metrics.check_finite("RidgeModel.predict", "X", X)
        return out[:, 0] if self.squeeze else out


def ridge_fit(
    X: Any, Y: Any, l2s: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
) -> RidgeModel:
    """Fits ridge regression once for all L2 strengths.

    X and Y are centred (intercept). One `eigh` of X^T X [D, D] or of X X^T [N, N], whichever is
    smaller, then each strength costs one [D, R] x [R, T] product.

    Args:
      X: [N, D] float features.
      Y: [N, T] (or [N]) float targets.
      l2s: the strengths of interest (kept on the model; `predict` accepts any).

    Returns:
      A `RidgeModel`.

    Raises:
      errors.ConfigError: shapes disagree or X has no rows.
      errors.InputError: X or Y hold NaN or inf.

    Examples:
      >>> model = ridge_fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]), l2s=(0.0,))
      >>> np.round(model.predict(np.array([[3.0]]), 0.0), 6).tolist()
      [7.0]
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    squeeze = Y.ndim == 1
    if squeeze:
        Y = Y[:, None]
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise errors.ConfigError(
            f"probes.ridge_fit: need X [N, D] and Y [N, T] with equal N, got {X.shape}, {Y.shape}"
        )
    if len(X) == 0:
        raise errors.ConfigError("probes.ridge_fit: X has no rows")
    metrics.check_finite("probes.ridge_fit", "X", X)
    metrics.check_finite("probes.ridge_fit", "Y", Y)
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - x_mean, Y - y_mean
    num_rows, dim = Xc.shape
    if dim <= num_rows:
        eigvals, vecs = np.linalg.eigh(Xc.T @ Xc)
        basis, proj = vecs, vecs.T @ (Xc.T @ Yc)
    else:
        eigvals, vecs = np.linalg.eigh(Xc @ Xc.T)
        basis, proj = Xc.T @ vecs, vecs.T @ Yc
    return RidgeModel(
        x_mean, y_mean, np.maximum(eigvals, 0.0), basis, proj, tuple(float(v) for v in l2s), squeeze
    )


def one_hot(labels: Any, num_classes: int, ignore_label: int = 255) -> np.ndarray:
    """float64 [N, C] one-hot targets; rows with `ignore_label` are all zero (drop them to fit).

    Raises:
      errors.ConfigError: on labels outside [0, C) other than the ignore label.
      errors.InputError: float labels (not truncated).
    """
    labels = metrics.check_labels("probes.one_hot", "labels", labels).astype(np.int64)
    labelled = labels != ignore_label
    bad = labelled & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        raise errors.ConfigError(
            f"probes.one_hot: labels must be in [0, {num_classes}) or {ignore_label}, "
            f"found {np.unique(labels[bad])[:10].tolist()}"
        )
    out = np.zeros((len(labels), num_classes), np.float64)
    out[np.flatnonzero(labelled), labels[labelled]] = 1.0
    return out


@dataclasses.dataclass
class RidgeSelection:
    """Result of `ridge_select`: chosen l2, held-out score per l2, and the model fitted on all rows."""

    l2: float
    val_scores: dict[float, float]
    model: RidgeModel


def ridge_select(
    X: Any,
    Y: Any,
    l2s: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0),
    val_fraction: float = 0.2,
    seed: int = 0,
    score: str = "r2",
) -> RidgeSelection:
    """Picks the L2 strength on a seeded held-out split, then refits on all rows.

    Args:
      X: [N, D] features; Y: [N, T] targets (one-hot rows for classification, see `one_hot`).
      l2s: candidate strengths; ties go to the earlier one.
      val_fraction: held-out share of the rows.
      seed: seeds the split.
      score: "r2" (uniform-average R²) or "accuracy" (argmax of predictions vs argmax of Y).

    Returns:
      A `RidgeSelection`.
    """
    if score not in ("r2", "accuracy"):
        raise errors.ConfigError(
            f"probes.ridge_select: score must be 'r2' or 'accuracy', got {score!r}"
        )
    if not l2s:
        raise errors.ConfigError("probes.ridge_select: `l2s` is empty")
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    metrics.check_finite("probes.ridge_select", "X", X)
    metrics.check_finite("probes.ridge_select", "Y", Y)
    num_val = int(round(val_fraction * len(X)))
    if not 0 < num_val < len(X):
        raise errors.ConfigError(
            f"probes.ridge_select: val_fraction={val_fraction} of {len(X)} rows leaves an empty split"
        )
    if score == "r2" and num_val < 2:
        raise errors.ConfigError(
            f"probes.ridge_select: R² needs >= 2 held-out rows; val_fraction={val_fraction} of "
            f"{len(X)} rows gives {num_val}"
        )
    order = np.random.default_rng(seed).permutation(len(X))
    val, train = np.sort(order[:num_val]), np.sort(order[num_val:])
    model = ridge_fit(X[train], Y[train], l2s)
    val_scores = {}
    for l2 in l2s:
        pred = model.predict(X[val], l2)
        if score == "r2":
            val_scores[float(l2)] = metrics.r2_score(Y[val], pred)
        else:
            truth = Y[val] if Y.ndim == 2 else Y[val][:, None]
            pred = pred if pred.ndim == 2 else pred[:, None]
            val_scores[float(l2)] = float(np.mean(pred.argmax(axis=1) == truth.argmax(axis=1)))
    best = max(val_scores, key=lambda l2: (val_scores[l2], -list(val_scores).index(l2)))
    return RidgeSelection(best, val_scores, ridge_fit(X, Y, l2s))
