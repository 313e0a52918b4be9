"""Evaluation metrics on host arrays: segmentation, retrieval outcomes, tracking, reconstruction.

Everything here is numpy (float64 / int64), takes plain arrays (JAX arrays are converted) and knows
nothing of datasets or models.

Confusion matrices have shape ``[C, C + 1]``: row = ground-truth class, column = predicted class,
and the extra last column counts evaluated units whose prediction lies outside ``[0, C)`` (e.g. a
kNN neighbour labelled 255, or a Cityscapes labelId that is not evaluated). Those predictions are
errors, as in the Cityscapes evaluation: they add to the ground-truth class's false negatives and
to the accuracy denominator, and are nobody's false positive. Units whose ground truth is
`ignore_label` (or outside ``[0, C)``) are counted nowhere. The ``[:, :C]`` block is the usual
square matrix (``sklearn.metrics.confusion_matrix`` on the evaluated units with ``labels=range(C)``).
Every function below also accepts a square ``[C, C]`` matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitjax import errors

CONVENTIONS = ("present", "all")
RETRIEVAL_OUTCOMES = ("same_patch", "same_fine", "same_super", "other_object", "background")


# ----------------------------------------------------------------------------------------------------
# Input checks shared by the engines (knn, probes, roi_align and the metrics below).

# Rows per chunk when an array (possibly an np.memmap) is scanned for non-finite values.
_SCAN_ROWS = 8192


def nonfinite_error(
    where: str, name: str, array: Any, columns: Any = None, rows: Any = None
) -> errors.InputError | None:
    """The error describing the non-finite values of `array`, or None when it is all finite.

    The array is scanned in row chunks (an np.memmap is never loaded whole); engines call this
    after a cheaper fused check found something, to name the count and the first bad row.

    Args:
      where: the function to name in the message, e.g. "knn.search".
      name: the argument's name, e.g. "database".
      array: float [N, ...] array-like.
      columns: optional bool [D] over the last axis; only those entries are checked (e.g. the
        dims a feature mask keeps).
      rows: optional int indices of the rows to check (reported by their index in `array`).

    Returns:
      An `errors.InputError` naming the array, the number of non-finite values, the rows holding
      them and the first one (with its index and value), or None.
    """
    shape = np.shape(array)
    if len(shape) == 0:
        value = np.asarray(array, np.float64)
        if np.isfinite(value):
            return None
        return errors.InputError(f"{where}: `{name}` is {value}; it must be finite")
    count = bad_rows = 0
    first = None
    row_ids = None if rows is None else np.unique(np.asarray(rows, np.int64).reshape(-1))
    num_rows = shape[0] if row_ids is None else len(row_ids)
    for start in range(0, num_rows, _SCAN_ROWS):
        if row_ids is None:
            chunk = np.asarray(array[start : start + _SCAN_ROWS], np.float64)
        else:
            chunk = np.asarray(array[row_ids[start : start + _SCAN_ROWS]], np.float64)
        bad = ~np.isfinite(chunk)
        if columns is not None:
            bad &= np.asarray(columns, bool)
        if not bad.any():
            continue
        count += int(bad.sum())
        per_row = bad.reshape(len(chunk), -1).any(axis=1)
        bad_rows += int(per_row.sum())
        if first is None:
            position = np.unravel_index(int(np.argmax(bad)), bad.shape)
            row = start + int(position[0])
            row = row if row_ids is None else int(row_ids[row])
            first = ((row,) + tuple(int(i) for i in position[1:]), chunk[position])
    if first is None:
        return None
    index, value = first
    return errors.InputError(
        f"{where}: `{name}` (shape {tuple(shape)}) holds {count} non-finite value(s) (NaN or inf) "
        f"in {bad_rows} row(s); the first bad row is {index[0]} (entry {index} = {value}). "
        "Inputs must be finite: fix or drop those rows (e.g. features that overflowed float16)."
    )


def check_finite(where: str, name: str, array: Any, columns: Any = None, rows: Any = None) -> None:
    """Raises `errors.InputError` (see `nonfinite_error`) if `array` holds NaN or inf.

    Args:
      where, name, array, columns, rows: as `nonfinite_error`.
    """
    error = nonfinite_error(where, name, array, columns, rows)
    if error is not None:
        raise error


def check_labels(where: str, name: str, labels: Any) -> np.ndarray:
    """`labels` as an integer array; float labels are refused rather than truncated.

    Args:
      where: the function to name in the message.
      name: the argument's name.
      labels: int or bool array-like of any shape (an empty list is accepted).

    Returns:
      The labels as a numpy array, dtype unchanged.

    Raises:
      errors.InputError: the dtype is not integer or bool.
    """
    array = np.asarray(labels)
    if array.dtype.kind not in "iub" and array.size:
        raise errors.InputError(
            f"{where}: `{name}` must hold integer labels, got dtype {array.dtype} (e.g. "
            f"{array.reshape(-1)[:3].tolist()}); float labels are not truncated silently: convert "
            "them with .astype(int) once you have checked that they are whole numbers"
        )
    return array


# ----------------------------------------------------------------------------------------------------
# Confusion matrices and segmentation scores.


def confusion_matrix(gt: Any, pred: Any, num_classes: int, ignore_label: int = 255) -> np.ndarray:
    """Counts (ground truth, prediction) pairs over all units (pixels or patches).

    Args:
      gt: int array of any shape: ground-truth class ids; `ignore_label` (or any id outside
        ``[0, num_classes)``) marks units that are not evaluated.
      pred: int array of the same shape: predicted ids; ids outside ``[0, num_classes)`` go to the
        last column (errors, see module docstring).
      num_classes: C.
      ignore_label: the ground-truth id that is not evaluated.

    Returns:
      int64 [C, C + 1]. Matrices of separate batches add up (streaming via ``+=``).

    Raises:
      errors.InputError: gt or pred are not integers (float labels are not truncated).

    Examples:
      >>> confusion_matrix([0, 1, 1, 255], [0, 1, 255, 0], 2).tolist()
      [[1, 0, 0], [0, 1, 1]]
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise errors.VitjaxError(
            f"confusion_matrix: gt shape {gt.shape} and pred shape {pred.shape} differ"
        )
    check_labels("confusion_matrix", "gt", gt)
    check_labels("confusion_matrix", "pred", pred)
    if num_classes < 1:
        raise errors.ConfigError(f"confusion_matrix: num_classes must be >= 1, got {num_classes}")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    evaluated = (gt != ignore_label) & (gt >= 0) & (gt < num_classes)
    gt = gt[evaluated]
    pred = pred[evaluated]
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    counts = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1).astype(np.int64)


class ConfusionMatrix:
    """Streaming confusion matrix: ``update`` batch by batch, then ``result``.

    Examples:
      >>> cm = ConfusionMatrix(num_classes=3)
      >>> cm.update([0, 1, 2], [0, 2, 2])
      >>> float(accuracy(cm.result()))
      0.6666666666666666
    """

    def __init__(self, num_classes: int, ignore_label: int = 255):
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self._counts = np.zeros((self.num_classes, self.num_classes + 1), np.int64)

    def update(self, gt: Any, pred: Any) -> None:
        """Adds the units of one batch (see `confusion_matrix`)."""
        self._counts += confusion_matrix(gt, pred, self.num_classes, self.ignore_label)

    def result(self) -> np.ndarray:
        """int64 [C, C + 1] copy of the counts so far."""
        return self._counts.copy()

    def reset(self) -> None:
        """Forgets everything counted so far."""
        self._counts[:] = 0


def _split(cm: Any) -> tuple[np.ndarray, np.ndarray]:
    """(square [C, C] block, per-class count of out-of-range predictions [C]) from a matrix."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[1] not in (cm.shape[0], cm.shape[0] + 1):
        raise errors.VitjaxError(
            f"confusion matrix must be [C, C] or [C, C + 1] (rows = ground truth), got {cm.shape}"
        )
    num_classes = cm.shape[0]
    square = cm[:, :num_classes].astype(np.int64)
    void = cm[:, num_classes] if cm.shape[1] > num_classes else np.zeros(num_classes, np.int64)
    return square, void.astype(np.int64)


def _iou_terms(cm: Any) -> tuple[np.ndarray, np.ndarray]:
    square, void = _split(cm)
    true_pos = np.diag(square)
    false_neg = square.sum(axis=1) + void - true_pos
    false_pos = square.sum(axis=0) - true_pos
    return true_pos.astype(np.float64), (true_pos + false_pos + false_neg).astype(np.float64)


def iou_per_class(cm: Any) -> np.ndarray:
    """Intersection over union per class: TP / (TP + FP + FN), NaN where TP + FP + FN = 0.

    Args:
      cm: int [C, C + 1] (or [C, C]) confusion matrix, rows = ground truth.

    Returns:
      float64 [C].
    """
    true_pos, union = _iou_terms(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_pos / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(cm: Any, convention: str = "present") -> float:
    """Mean IoU over classes.

    Args:
      cm: int [C, C + 1] (or [C, C]) confusion matrix.
      convention: 'present' (Cityscapes: mean over classes with TP + FP + FN > 0, i.e. nanmean of
        `iou_per_class`) or 'all' (ADE20K sceneparsing: ``TP / (union + eps)`` for every class,
        eps = np.spacing(1), so classes absent from both ground truth and predictions count as 0).

    Returns:
      float mIoU in [0, 1] (NaN for 'present' when no class occurs).
    """
    if convention == "present":
        per_class = iou_per_class(cm)
        return float(np.nanmean(per_class)) if np.any(~np.isnan(per_class)) else float("nan")
    if convention == "all":
        true_pos, union = _iou_terms(cm)
        return float(np.mean(true_pos / (union + np.spacing(1))))
    raise errors.ConfigError(f"mean_iou: convention={convention!r} is not one of {CONVENTIONS}")


def accuracy(cm: Any) -> float:
    """Fraction of evaluated units predicted correctly (pixel or patch accuracy).

    Out-of-range predictions (last column) are errors; ignored ground truth is not in `cm` at all.

    Returns:
      float in [0, 1]; NaN for an empty matrix.
    """
    square, void = _split(cm)
    total = square.sum() + void.sum()
    return float(np.trace(square) / total) if total > 0 else float("nan")


def class_accuracy(cm: Any) -> np.ndarray:
    """Per-class recall TP / (row total), NaN for classes without ground-truth units: float64 [C]."""
    square, void = _split(cm)
    totals = square.sum(axis=1) + void
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(square) / np.maximum(totals, 1), np.nan)


# ----------------------------------------------------------------------------------------------------
# Patch retrieval outcomes (FAIR1M instance identification, paper Fig. 5/6).


def retrieval_outcomes(
    query_fine: Any,
    query_super: Any,
    query_instance: Any,
    query_patch_target: Any,
    nn_fine: Any,
    nn_super: Any,
    nn_instance: Any,
    nn_patch: Any,
    *,
    query_tile: Any = None,
    nn_tile: Any = None,
    background: int = 0,
) -> dict[str, int]:
    """Classifies each query patch's nearest neighbour into a hierarchy of exclusive outcomes.

    For query q and its retrieved neighbour, the first that holds of:

    1. ``same_patch``: the neighbour is the query's correspondence target (``nn_patch ==
       query_patch_target >= 0``, and ``nn_tile == query_tile`` when tiles are given);
    2. ``same_fine``: the neighbour is an object patch of the query's fine-grained class;
    3. ``same_super``: an object patch of the query's supercategory;
    4. ``other_object``: any other object patch;
    5. ``background``: a background patch.

    Also returned: ``queries`` (Q, = the sum of the five), ``upper_bound`` (queries with a
    correspondence target, the most ``same_patch`` can reach), ``same_instance`` (not exclusive:
    neighbour inside the query's own object instance, instance != background; same tile required
    when tiles are given, otherwise instance ids must be unique across tiles), and the cumulative
    ``at_least_fine`` (1 + 2), ``at_least_super`` (1 + 2 + 3), ``any_object`` (1 + 2 + 3 + 4).
    The paper scores only non-background query patches: pass those. "With" and "without the
    query's own image" differ only in the neighbours the caller retrieved (exclude own-tile
    neighbours with ``knn.search(..., query_groups=, db_groups=)``).

    Args:
      query_fine, query_super, query_instance: int [Q] labels of the query patches
        (`background` = no object).
      query_patch_target: int [Q] patch index the query corresponds to (see
        `corruptions.correspondence_map`), -1 if none. Without tiles, use database-wide indices.
      nn_fine, nn_super, nn_instance: int [Q] labels of each query's neighbour.
      nn_patch: int [Q] patch index of the neighbour (same indexing as `query_patch_target`).
      query_tile, nn_tile: optional int [Q] tile/image index of query and neighbour.
      background: the id meaning "no object" in the fine, super and instance labels.

    Returns:
      dict of int counts.

    Raises:
      errors.InputError: an array is not integer (float labels are not truncated).
    """
    arrays = {
        "query_fine": query_fine,
        "query_super": query_super,
        "query_instance": query_instance,
        "query_patch_target": query_patch_target,
        "nn_fine": nn_fine,
        "nn_super": nn_super,
        "nn_instance": nn_instance,
        "nn_patch": nn_patch,
    }
    if (query_tile is None) != (nn_tile is None):
        raise errors.VitjaxError("retrieval_outcomes: pass both query_tile and nn_tile, or neither")
    if query_tile is not None:
        arrays.update(query_tile=query_tile, nn_tile=nn_tile)
    arrays = {
        name: check_labels("retrieval_outcomes", name, value).reshape(-1)
        for name, value in arrays.items()
    }
    sizes = {name: value.shape[0] for name, value in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise errors.VitjaxError(f"retrieval_outcomes: arrays must all be [Q], got lengths {sizes}")
    a = arrays
    same_tile = a["query_tile"] == a["nn_tile"] if query_tile is not None else True
    has_target = a["query_patch_target"] >= 0
    nn_object = a["nn_fine"] != background

    same_patch = has_target & (a["nn_patch"] == a["query_patch_target"]) & same_tile
    same_fine = ~same_patch & nn_object & (a["nn_fine"] == a["query_fine"])
    same_super = ~same_patch & ~same_fine & nn_object & (a["nn_super"] == a["query_super"])
    other_object = ~same_patch & ~same_fine & ~same_super & nn_object
    nn_background = ~same_patch & ~nn_object
    same_instance = (
        (a["query_instance"] != background) & (a["nn_instance"] == a["query_instance"]) & same_tile
    )
    counts = {
        "queries": a["nn_fine"].shape[0],
        "upper_bound": has_target.sum(),
        "same_patch": same_patch.sum(),
        "same_fine": same_fine.sum(),
        "same_super": same_super.sum(),
        "other_object": other_object.sum(),
        "background": nn_background.sum(),
        "same_instance": same_instance.sum(),
    }
    counts["at_least_fine"] = counts["same_patch"] + counts["same_fine"]
    counts["at_least_super"] = counts["at_least_fine"] + counts["same_super"]
    counts["any_object"] = counts["at_least_super"] + counts["other_object"]
    return {name: int(value) for name, value in counts.items()}


def association_accuracy(
    pred_ids: Any, true_ids: Any, pred_cats: Any, true_cats: Any, valid: Any = None
) -> dict[str, float]:
    """Accuracy of box association across frames (tracking, paper Sec. on BDD100K / MOT17).

    Each query box of a later frame is associated with a box of an earlier frame (its nearest
    neighbour); instance accuracy is the fraction associated with a box of the same track,
    category accuracy the fraction associated with a box of the same category.

    Args:
      pred_ids: int [N] track id of the box each query was associated with.
      true_ids: int [N] track id of each query box.
      pred_cats: int [N] category of the associated box.
      true_cats: int [N] category of each query box.
      valid: optional bool [N]; only these queries count (e.g. tracks present in both frames).

    Returns:
      {'instance': float, 'category': float, 'count': int}; accuracies are NaN when count is 0.

    Raises:
      errors.InputError: ids or categories are not integers (float labels are not truncated).
    """
    names = ("pred_ids", "true_ids", "pred_cats", "true_cats")
    arrays = [
        check_labels("association_accuracy", name, x).reshape(-1)
        for name, x in zip(names, (pred_ids, true_ids, pred_cats, true_cats))
    ]
    if len({x.shape[0] for x in arrays}) != 1:
        raise errors.VitjaxError(
            "association_accuracy: pred_ids, true_ids, pred_cats, true_cats must all be [N], got "
            f"lengths {[x.shape[0] for x in arrays]}"
        )
    keep = np.ones(arrays[0].shape[0], bool) if valid is None else np.asarray(valid, bool)
    if keep.shape != arrays[0].shape:
        raise errors.VitjaxError(
            f"association_accuracy: valid must be [{arrays[0].shape[0]}], got {keep.shape}"
        )
    pred_ids, true_ids, pred_cats, true_cats = (x[keep] for x in arrays)
    count = int(keep.sum())
    if count == 0:
        return {"instance": float("nan"), "category": float("nan"), "count": 0}
    return {
        "instance": float(np.mean(pred_ids == true_ids)),
        "category": float(np.mean(pred_cats == true_cats)),
        "count": count,
    }


# ----------------------------------------------------------------------------------------------------
# Reconstruction quality and regression.


def _pair(
    a: Any, b: Any, where: str, names: tuple[str, str] = ("a", "b")
) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of two same-shape arrays; NaN or inf in either is an `errors.InputError`."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise errors.VitjaxError(f"{where}: shapes {a.shape} and {b.shape} differ")
    for name, value in zip(names, (a, b)):
        if not np.isfinite(value).all():
            check_finite(where, name, value if value.ndim else value[None])
    return a, b


def mse(a: Any, b: Any, axis: Any = None) -> Any:
    """Mean squared error ``mean((a - b)^2)`` in float64, over `axis` (None = everything).

    Raises:
      errors.InputError: `a` or `b` holds NaN or inf (also for `psnr`, `ssim`, `r2_score`).
    """
    a, b = _pair(a, b, "mse")
    return np.mean((a - b) ** 2, axis=axis)


def psnr(a: Any, b: Any, data_range: float, axis: Any = None) -> Any:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / mse)`` in dB.

    Matches ``skimage.metrics.peak_signal_noise_ratio(a, b, data_range=data_range)`` for
    ``axis=None``; with `axis` (e.g. (1, 2, 3) for a batch) one value per remaining index.
    Identical inputs give +inf.
    """
    error = mse(a, b, axis=axis)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(float(data_range) ** 2 / error)


def _window_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over every fully-inside size x size window of the first two axes ('valid')."""
    cumulative = np.cumsum(np.cumsum(x, axis=0), axis=1)
    cumulative = np.pad(cumulative, [(1, 0), (1, 0)] + [(0, 0)] * (x.ndim - 2))
    total = (
        cumulative[size:, size:]
        - cumulative[:-size, size:]
        - cumulative[size:, :-size]
        + cumulative[:-size, :-size]
    )
    return total / (size * size)


def ssim(
    a: Any,
    b: Any,
    data_range: float,
    channel_axis: int | None = -1,
    *,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean structural similarity of two images, as ``skimage.metrics.structural_similarity``.

    skimage's defaults: a uniform ``win_size x win_size`` window, K1 = 0.01, K2 = 0.03, sample
    (N - 1) covariance, and the mean of the SSIM map without the ``(win_size - 1) / 2`` border (i.e.
    over windows fully inside the image, so the padding skimage uses never matters). With a
    channel axis the result is the mean over channels.

    Args:
      a, b: [H, W] or [H, W, C] (channel position given by `channel_axis`) images, same shape.
      data_range: value range of the images (255 for 0-255 images).
      channel_axis: axis of the channels, or None for a single-channel 2-D image.
      win_size: odd window side.
      k1, k2: stabilising constants.

    Returns:
      float SSIM in [-1, 1].
    """
    a, b = _pair(a, b, "ssim")
    if channel_axis is not None:
        a = np.moveaxis(a, channel_axis, -1)
        b = np.moveaxis(b, channel_axis, -1)
    else:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise errors.VitjaxError(f"ssim: expected a 2-D image (plus channels), got shape {a.shape}")
    if win_size % 2 == 0 or win_size > min(a.shape[:2]):
        raise errors.ConfigError(
            f"ssim: win_size must be odd and <= the image sides {a.shape[:2]}, got {win_size}"
        )
    num = win_size * win_size
    cov_norm = num / (num - 1.0)
    mean_a, mean_b = _window_mean(a, win_size), _window_mean(b, win_size)
    var_a = cov_norm * (_window_mean(a * a, win_size) - mean_a * mean_a)
    var_b = cov_norm * (_window_mean(b * b, win_size) - mean_b * mean_b)
    cov_ab = cov_norm * (_window_mean(a * b, win_size) - mean_a * mean_b)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    numerator = (2 * mean_a * mean_b + c1) * (2 * cov_ab + c2)
    denominator = (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    per_channel = (numerator / denominator).mean(axis=(0, 1))
    return float(per_channel.mean())


def r2_score(y: Any, yhat: Any) -> float:
    """Coefficient of determination, averaged uniformly over outputs (sklearn's defaults).

    Per output: ``1 - sum((y - yhat)^2) / sum((y - mean(y))^2)``; an output with constant y scores
    1.0 if predicted exactly, else 0.0 (sklearn's ``force_finite=True``).

    Args:
      y: float [N] or [N, T] targets.
      yhat: predictions of the same shape.

    Returns:
      float R^2 (can be negative).
    """
    y, yhat = _pair(y, yhat, "r2_score", ("y", "yhat"))
    if y.ndim == 1:
        y, yhat = y[:, None], yhat[:, None]
    if y.ndim != 2 or y.shape[0] < 2:
        raise errors.VitjaxError(f"r2_score: expected [N >= 2] or [N >= 2, T], got {y.shape}")
    residual = np.sum((y - yhat) ** 2, axis=0)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    scores = np.ones(y.shape[1])
    constant = total == 0
    scores[~constant] = 1.0 - residual[~constant] / total[~constant]
    scores[constant & (residual != 0)] = 0.0
    return float(np.mean(scores))


__all__ = [
    "CONVENTIONS",
    "RETRIEVAL_OUTCOMES",
    "ConfusionMatrix",
    "accuracy",
    "association_accuracy",
    "check_finite",
    "check_labels",
    "class_accuracy",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "mse",
    "nonfinite_error",
    "psnr",
    "r2_score",
    "retrieval_outcomes",
    "ssim",
]
