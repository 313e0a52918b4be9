"""Linear probes on frozen features: an optax softmax probe and closed-form ridge regression.

`train_softmax_probe` trains a softmax linear layer (optionally after the MAE-style non-affine
BatchNorm) with minibatches streamed from the host, so the features may be an `np.memmap` larger
than device memory. Every (learning rate, weight decay) pair of the sweep is trained at once (vmapped
over the sweep, sharing each minibatch), the best pair is chosen on a seeded held-out part of the
training rows, and by default the probe is then retrained with that pair on all training rows.

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

from vitjax import errors

_CHUNK_ROWS = 65536
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")


# ----------------------------------------------------------------------------------------------
# Feature normalisation (the MAE probe's non-affine BatchNorm)
# ----------------------------------------------------------------------------------------------


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


def feature_normalizer(
    features: Any, eps: float = 1e-6, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and BatchNorm scale of a feature set, streamed in float64.

    Args:
      features: [N, D] array-like (e.g. `np.memmap`).
      eps: added to the (biased) variance, as `BatchNorm1d(affine=False, eps=1e-6)` does.
      rows: optional int indices of the rows to use (default: all).

    Returns:
      (mean float32 [D], std float32 [D]) with std = sqrt(var + eps); normalise as (x - mean) / std.

    Examples:
      >>> mean, std = feature_normalizer(np.array([[0.0], [2.0]]))
      >>> mean.tolist(), np.round(std, 4).tolist()
      ([1.0], [1.0])
    """
    num_rows, dim = _check_features("features", features)
    if rows is None:
        rows = np.arange(num_rows)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise errors.ConfigError("probes.feature_normalizer: no rows to compute statistics from")
    count, mean, m2 = 0, np.zeros(dim), np.zeros(dim)
    for start in range(0, len(rows), _CHUNK_ROWS):
        block = _read_rows(features, rows[start : start + _CHUNK_ROWS]).astype(np.float64)
        block_mean = block.mean(axis=0)
        block_m2 = ((block - block_mean) ** 2).sum(axis=0)
        # Chan et al. pairwise merge: stable where sum / sum-of-squares would cancel.
        total = count + len(block)
        delta = block_mean - mean
        mean = mean + delta * (len(block) / total)
        m2 = m2 + block_m2 + delta**2 * (count * len(block) / total)
        count = total
    return mean.astype(np.float32), np.sqrt(m2 / count + eps).astype(np.float32)


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
    batch_size: int = 1024
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
      weights: float32 [D, C].
      bias: float32 [C].
      mean, std: float32 [D] BatchNorm statistics of the training rows, or None without batchnorm.
      learning_rate, weight_decay: the chosen sweep pair.
      val_accuracy: accuracy of the chosen pair on the held-out rows (None without a held-out set).
      sweep: one dict per pair: learning_rate, weight_decay, val_accuracy.
      retrained_on_all: whether the weights come from a retraining on all rows.
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

    @property
    def num_classes(self) -> int:
        return int(self.weights.shape[1])

    @property
    def hparams(self) -> dict[str, float]:
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay}

    def normalize(self, features: Any) -> np.ndarray:
        """(features - mean) / std with the training-set statistics: float32 [N, D]."""
        if self.mean is None:
            raise errors.ConfigError(
                "LinearProbe.normalize: the probe was trained without batchnorm"
            )
        return (np.asarray(features, dtype=np.float32) - self.mean) / self.std

    def predict(self, features: Any) -> np.ndarray:
        """Logits float32 [N, C] of features [N, D] (array-like; read in chunks)."""
        num_rows, dim = _check_features("features", features)
        if dim != self.weights.shape[0]:
            raise errors.ConfigError(
                f"LinearProbe.predict: features have D={dim}, the probe expects "
                f"{self.weights.shape[0]}"
            )
        out = np.empty((num_rows, self.num_classes), np.float32)
        for start in range(0, num_rows, _CHUNK_ROWS):
            block = np.asarray(features[start : start + _CHUNK_ROWS], dtype=np.float32)
            if self.mean is not None:
                block = (block - self.mean) / self.std
            out[start : start + len(block)] = block @ self.weights + self.bias
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
        mean,
        std,
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
            if batchnorm:
                x = (x - mean) / std
            p, state, loss = jax.vmap(member_step, in_axes=(0, 0, 0, 0, None, None, None, None))(
                p, state, learning_rates, weight_decays, x, y, w, is_valid
            )
            return (p, state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses

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
    mean_dev = jnp.asarray(mean if mean is not None else np.zeros(dim, np.float32))
    std_dev = jnp.asarray(std if std is not None else np.ones(dim, np.float32))

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
        params, opt_state, losses = run(
            params,
            opt_state,
            lrs,
            wds,
            np.float32(warmup_steps),
            np.float32(total_steps),
            (xs, ys, ws, valid),
            mean_dev,
            std_dev,
        )
        # The next batches are gathered on the host while this call runs; waiting for the
        # previous call keeps at most two blocks of batches alive.
        if in_flight is not None:
            finished, last_losses = in_flight
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
        in_flight = (done, losses[int(valid.sum()) - 1])
    return {key: np.asarray(value) for key, value in params.items()}


def _accuracies(
    features: Any,
    labels: np.ndarray,
    rows: np.ndarray,
    params: dict[str, np.ndarray],
    mean: np.ndarray | None,
    std: np.ndarray | None,
) -> np.ndarray:
    """Accuracy float64 [H] of every member on features[rows]."""
    correct = np.zeros(params["w"].shape[0], np.int64)
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        x = _read_rows(features, chunk)
        if mean is not None:
            x = (x - mean) / std
        logits = np.matmul(x[None], params["w"]) + params["b"][:, None, :]
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
) -> LinearProbe:
    """Trains a softmax linear probe, picking (lr, wd) on a held-out part of the rows.

    Rows labelled `ignore_label` take no part. The held-out rows (`config.val_fraction`, a seeded
    random subset) select the sweep's best pair (ties: the earlier pair in learning-rate-major
    order); with `config.retrain_on_all` the probe is then retrained with that pair on all rows,
    otherwise the model trained without the held-out rows is kept. With `batchnorm`, features are
    first normalised by the non-affine BatchNorm of the MAE linear probe, with the mean and variance
    of all labelled training rows (fixed, rather than per batch).

    Args:
      features: [N, D] float array-like (np.memmap is read in minibatches, never whole).
      labels: int [N] in [0, num_classes) or `ignore_label`.
      num_classes: C.
      ignore_label: label of rows to leave out.
      batchnorm: put the non-affine BatchNorm (eps 1e-6) before the linear layer.
      seed: seeds the held-out split and the minibatch order (weights start at zero).
      config: a `ProbeConfig`.

    Returns:
      A `LinearProbe`.

    Raises:
      errors.ConfigError: on bad shapes, labels outside [0, C) other than the ignore label, a bad
        config, or a sweep of several pairs without held-out rows.
    """
    config.validate()
    num_rows, _ = _check_features("features", features)
    labels = np.asarray(labels)
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
        )

    shuffled = np.random.default_rng(seed).permutation(rows)
    val_rows, train_rows = np.sort(shuffled[:num_val]), np.sort(shuffled[num_val:])
    lrs = np.array([lr for lr, _ in grid])
    wds = np.array([wd for _, wd in grid])
    params = _train(features, labels, train_rows, num_classes, lrs, wds, config, mean, std, seed)
    accuracies = _accuracies(features, labels, val_rows, params, mean, std)
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
        """Predictions float64 [N, T] (or [N] if Y was 1-D) of X [N, D]."""
        w, b = self.weights(l2)
        out = np.asarray(X, dtype=np.float64) @ w + b
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


def r2_score(y: Any, y_pred: Any) -> float:
    """Coefficient of determination averaged uniformly over targets (sklearn's default).

    A target with zero variance scores 1 if predicted exactly, else 0.

    Args:
      y, y_pred: [N] or [N, T] floats.
    """
    y = np.asarray(y, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y.shape != y_pred.shape:
        raise errors.ConfigError(f"probes.r2_score: shapes differ, {y.shape} vs {y_pred.shape}")
    if y.ndim == 1:
        y, y_pred = y[:, None], y_pred[:, None]
    residual = ((y - y_pred) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    safe_total = np.where(total > 0, total, 1.0)
    scores = np.where(total > 0, 1.0 - residual / safe_total, np.where(residual == 0, 1.0, 0.0))
    return float(scores.mean())


def one_hot(labels: Any, num_classes: int, ignore_label: int = 255) -> np.ndarray:
    """float64 [N, C] one-hot targets; rows with `ignore_label` are all zero (drop them to fit).

    Raises:
      errors.ConfigError: on labels outside [0, C) other than the ignore label.
    """
    labels = np.asarray(labels).astype(np.int64)
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
    num_val = int(round(val_fraction * len(X)))
    if not 0 < num_val < len(X):
        raise errors.ConfigError(
            f"probes.ridge_select: val_fraction={val_fraction} of {len(X)} rows leaves an empty split"
        )
    order = np.random.default_rng(seed).permutation(len(X))
    val, train = np.sort(order[:num_val]), np.sort(order[num_val:])
    model = ridge_fit(X[train], Y[train], l2s)
    val_scores = {}
    for l2 in l2s:
        pred = model.predict(X[val], l2)
        if score == "r2":
            val_scores[float(l2)] = r2_score(Y[val], pred)
        else:
            truth = Y[val] if Y.ndim == 2 else Y[val][:, None]
            pred = pred if pred.ndim == 2 else pred[:, None]
            val_scores[float(l2)] = float(np.mean(pred.argmax(axis=1) == truth.argmax(axis=1)))
    best = max(val_scores, key=lambda l2: (val_scores[l2], -list(val_scores).index(l2)))
    return RidgeSelection(best, val_scores, ridge_fit(X, Y, l2s))
