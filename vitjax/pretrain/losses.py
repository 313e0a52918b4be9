"""Losses, EMA, centering and schedules of the MAE and DINO objectives (official formulas).

MAE (He et al. 2022, `models_mae.forward_loss`): the mean over masked patches of the per-patch mean
squared error between predicted and true pixels; with `norm_pix_loss` each target patch is first
normalised by its own mean and (unbiased) variance, eps 1e-6.

DINO (Caron et al. 2021, `DINOLoss`): the teacher's outputs of the two global views are centred and
sharpened (softmax at `teacher_temp`), the student's outputs of every view go through a softmax at
`student_temp`; the loss is the mean over (teacher view, student view) pairs of different views of
the batch-mean cross-entropy. The centre is an EMA of the teacher's batch-mean output; the teacher
is an EMA of the student.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vitjax import errors

NORM_PIX_EPS = 1e-6


def mae_loss(
    pred: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray, norm_pix_loss: bool
) -> jnp.ndarray:
    """MAE reconstruction loss.

    Args:
      pred: float [B, N, P*P*C] decoder output.
      target: float [B, N, P*P*C] `patchify` of the (normalised) input images.
      mask: float [B, N], 1 where the patch was masked.
      norm_pix_loss: normalise each target patch by its mean and unbiased variance first.

    Returns:
      float32 scalar.
    """
    target = target.astype(jnp.float32)
    if norm_pix_loss:
        mean = target.mean(-1, keepdims=True)
        var = target.var(-1, keepdims=True, ddof=1)  # torch.var is unbiased by default
        target = (target - mean) / jnp.sqrt(var + NORM_PIX_EPS)
    per_patch = jnp.mean((pred.astype(jnp.float32) - target) ** 2, axis=-1)
    return jnp.sum(per_patch * mask) / jnp.sum(mask)


def dino_loss(
    student: jnp.ndarray,
    teacher: jnp.ndarray,
    center: jnp.ndarray,
    student_temp: float,
    teacher_temp: float,
) -> jnp.ndarray:
    """DINO's multi-crop cross-entropy.

    Args:
      student: float [V, B, K] student head outputs of V views; views 0 and 1 are the global
        crops the teacher sees, in the same order.
      teacher: float [2, B, K] teacher head outputs of the two global views.
      center: float [K] (or [1, K]) the current centre.
      student_temp: student softmax temperature (0.1).
      teacher_temp: teacher softmax temperature (0.04-0.07).

    Returns:
      float32 scalar: mean over pairs (t, s), s != t, of mean over b of
      -sum_k softmax((teacher[t] - center) / teacher_temp) * log_softmax(student[s] / student_temp).
    """
    num_views = student.shape[0]
    if teacher.shape[0] != 2 or num_views < 2:
        raise errors.ConfigError(
            f"dino_loss: expected 2 teacher views and >= 2 student views, got teacher "
            f"{tuple(teacher.shape)}, student {tuple(student.shape)}"
        )
    log_p = jax.nn.log_softmax(student.astype(jnp.float32) / student_temp, axis=-1)
    q = jax.nn.softmax((teacher.astype(jnp.float32) - center.reshape(-1)) / teacher_temp, axis=-1)
    q = jax.lax.stop_gradient(q)
    # cross[t, s] = batch mean of -sum_k q[t] log_p[s].
    cross = -jnp.einsum("tbk,sbk->ts", q, log_p) / student.shape[1]
    same_view = jnp.eye(2, num_views, dtype=bool)
    return jnp.sum(jnp.where(same_view, 0.0, cross)) / (2 * num_views - 2)


def teacher_stats(teacher: jnp.ndarray, center: jnp.ndarray, teacher_temp) -> jnp.ndarray:
    """How much the sharpened teacher says about its input: the collapse diagnostics of DINO.

    Args:
      teacher: float [2, B, K] teacher head outputs; center: float [K]; teacher_temp: scalar.

    Returns:
      float32 [2]: (mean over rows of the entropy of each row's teacher distribution q,
      entropy of the mean of q over the rows minus that mean entropy), in nats. The second is
      the mutual information between the row and the prototype: it is 0 when every image gets
      the same distribution, whether uniform (entropy ln K) or one-hot (entropy 0), i.e. when
      the teacher has collapsed; at most ln K.
    """
    logits = teacher.reshape(-1, teacher.shape[-1]).astype(jnp.float32) - center.reshape(-1)
    log_q = jax.nn.log_softmax(logits / teacher_temp, axis=-1)
    q = jnp.exp(log_q)
    entropy = -jnp.sum(q * log_q, axis=-1).mean()
    mean_q = q.mean(0)
    mean_entropy = -jnp.sum(jax.scipy.special.xlogy(mean_q, mean_q))
    return jnp.stack([entropy, mean_entropy - entropy])


def teacher_temperature(step, warmup_temp: float, final_temp: float, warmup_steps: int):
    """DINO's teacher temperature: the official `np.linspace(warmup_temp, final_temp, W)` over the
    first W = `warmup_steps` steps (so `final_temp` is reached at step W - 1), then `final_temp`.
    """
    step = jnp.asarray(step, jnp.float32)
    if warmup_steps <= 1:
        return jnp.full_like(step, final_temp)
    frac = jnp.clip(step / (warmup_steps - 1), 0.0, 1.0)
    return warmup_temp + (final_temp - warmup_temp) * frac


def update_center(center: jnp.ndarray, teacher: jnp.ndarray, momentum: float) -> jnp.ndarray:
    """`center * m + mean(teacher outputs over every view and image) * (1 - m)`; center [K]."""
    batch_center = teacher.reshape(-1, teacher.shape[-1]).astype(jnp.float32).mean(0)
    return center * momentum + batch_center * (1.0 - momentum)


def ema(teacher: dict, student: dict, momentum) -> dict:
    """Teacher update `m * teacher + (1 - m) * student`, leaf by leaf."""
    return jax.tree.map(lambda t, s: t * momentum + s * (1.0 - momentum), teacher, student)


def warmup_cosine(step, base: float, final: float, total_steps: int, warmup_steps: int = 0):
    """Linear warm-up from 0 to `base` over `warmup_steps`, then half a cosine to `final`.

    The per-iteration schedule of the MAE/DINO code: value at step s < W is base * s / W; after it
    final + (base - final) * (1 + cos(pi * (s - W) / (T - W))) / 2. Works on ints and traced arrays.
    """
    if total_steps <= warmup_steps:
        raise errors.ConfigError(
            f"schedule: total steps {total_steps} must exceed warm-up steps {warmup_steps}"
        )
    step = jnp.asarray(step, jnp.float32)
    warm = base * step / max(warmup_steps, 1)
    progress = jnp.clip((step - warmup_steps) / (total_steps - warmup_steps), 0.0, 1.0)
    cosine = final + (base - final) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
    return jnp.where(step < warmup_steps, warm, cosine)


def teacher_momentum(step, base: float, total_steps: int):
    """DINO's teacher EMA momentum: cosine from `base` (0.996) at step 0 to 1 at the end."""
    return warmup_cosine(step, base, 1.0, total_steps, 0)
