"""Tracking association on BDD100K MOT and MOT17 (Fig. 7, 9, 12): box features from patch grids.

Per video and frame geometry: every frame is resized (and optionally cut into tiles whose patch
grids are stitched back into one map), its patch features are extracted through the FeatureStore,
and every annotated box, scaled to the resized frame and clipped to it, is RoIAligned on the map
(7 x 7 bins, stride = patch size, torchvision semantics) and mean-pooled into one vector. For a
frame gap g, every instance of frame t that is also present in frame t + g is associated with the
most similar instance of frame t + g (cosine similarity by default); instance accuracy is the share
associated with the same track, category accuracy the share associated with a box of the same
category (`metrics.association_accuracy`).

Ignore rules: boxes flagged `ignore` by the readers are neither queries nor candidates, as if they
were not annotated. BDD100K: the distractor classes (other person, trailer, other vehicle) and
crowd boxes. MOT17: only pedestrians (class 1) with consider flag 1 count; the distractor classes
(2, 7, 8, 12) are ignored, everything else is left out by the reader; pedestrians below
`min_visibility` are ignored. On MOT17 every candidate is a pedestrian, so category accuracy is 1.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from vitjax import errors, experiments, metrics, plotting, roi_align
from vitjax.data import registry, tiling
from vitjax.data.bdd100k import FrameTracks, as_frame_tracks
from vitjax.data.types import Video
from vitjax.experiments import common

POOLS = ("mean", "flatten")
METRICS = ("cosine", "dot", "l2")
_GEOMETRY = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*(?:/\s*(\d+))?\s*$")
_FRAME_CACHE = 8  # decoded frames kept per source (tiles of one frame are read together)


def parse_geometry(text: str) -> tiling.Geometry:
    """'HxW/T' -> resize to HxW, cut into TxT tiles; 'HxW' -> the whole frame resized to HxW.

    Examples:
      >>> parse_geometry("672x1120/224").tile_size
      (224, 224)
    """
    match = _GEOMETRY.match(str(text))
    if match is None:
        raise errors.ConfigError(
            f"config.tracking.geometries entry {text!r}: expected 'HxW' (whole frame resized) or "
            "'HxW/T' (resized, then TxT tiles), e.g. '672x1120/224'"
        )
    h, w, t = int(match[1]), int(match[2]), match[3]
    if t is not None and (h % int(t) or w % int(t)):
        raise errors.ConfigError(
            f"config.tracking.geometries entry {text!r}: {h}x{w} is not a whole number of "
            f"{t}-pixel tiles"
        )
    tile = None if t is None else (int(t), int(t))
    return tiling.Geometry(text.replace(" ", ""), resize_to=(h, w), tile_size=tile)


def geometries(cfg: ml_collections.ConfigDict) -> list[tiling.Geometry]:
    """The frame geometries of `config.tracking.geometries` (e.g. ('672x1120/224', '672x672')), in order.

    Raises:
      ConfigError: an empty list or a malformed entry (see `parse_geometry`).
    """
    items = list(cfg.geometries)
    if not items:
        raise errors.ConfigError("config.tracking.geometries is empty; e.g. ('672x1120/224',)")
    return [parse_geometry(g) for g in items]


def input_hw(geo: tiling.Geometry) -> tuple[int, int]:
    """(H, W) of one model input of a geometry (a tile, or the whole resized frame)."""
    return tuple(geo.tile_size) if geo.tile_size else tuple(geo.resize_to)


# ---------------------------------------------------------------------------------------------
# Association on arrays.


@dataclasses.dataclass(frozen=True)
class FramePair:
    """Queries of frame a (rows of its FrameTracks) and candidates of frame b = a + gap."""

    video: int
    gap: int
    frame_a: int
    frame_b: int
    queries: np.ndarray  # int64 [Q] rows of frame a (non-ignored, track present in frame b)
    candidates: np.ndarray  # int64 [C] rows of frame b (non-ignored)


def association_pairs(tracks: Sequence[FrameTracks | tuple], gaps: Sequence[int], video: int = 0):
    """Every (t, t + gap) pair with at least one query, for one video.

    Queries: non-ignored instances of frame t whose track is a non-ignored instance of frame
    t + gap. Candidates: all non-ignored instances of frame t + gap.

    Returns:
      list of FramePair ordered by gap (as given), then frame.
    """
    frames = [as_frame_tracks(f) for f in tracks]
    out = []
    for gap in gaps:
        gap = int(gap)
        if gap < 1:
            raise errors.ConfigError(f"config.tracking.gaps: {gap}; expected positive frame gaps")
        for t in range(len(frames) - gap):
            a, b = frames[t], frames[t + gap]
            candidates = np.flatnonzero(~b.ignore)
            if candidates.size == 0:
                continue
            present = np.isin(a.track_ids, b.track_ids[candidates])
            queries = np.flatnonzero(~a.ignore & present)
            if queries.size:
                out.append(FramePair(video, gap, t, t + gap, queries, candidates))
    return out


def similarity(queries: np.ndarray, candidates: np.ndarray, metric: str) -> np.ndarray:
    """float64 [Q, C] similarity (higher = closer): cosine, dot, or minus squared L2 distance."""
    q = np.asarray(queries, np.float64)
    c = np.asarray(candidates, np.float64)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        return q @ c.T
    if metric == "dot":
        return q @ c.T
    if metric == "l2":
        return -(np.sum(q * q, 1)[:, None] - 2 * q @ c.T + np.sum(c * c, 1)[None, :])
    raise errors.ConfigError(f"config.tracking.metric={metric!r}: expected one of {METRICS}")


def match(
    pairs: Sequence[FramePair],
    tracks: Sequence[Sequence[FrameTracks]],
    box_features: Callable[[int, int], np.ndarray],
    metric: str = "cosine",
) -> dict[int, tuple[np.ndarray, ...]]:
    """Associates every query of every pair with its most similar candidate.

    Args:
      pairs: FramePairs (any videos).
      tracks: per video, per frame, FrameTracks.
      box_features: (video, frame) -> float [K, D] features of all K boxes of that frame.
      metric: similarity of `similarity`.

    Returns:
      {gap: (pred_ids, true_ids, pred_cats, true_cats)}, int arrays [Q_gap] in pair order.
    """
    by_gap: dict[int, list[list[np.ndarray]]] = {}
    for pair in pairs:
        a = tracks[pair.video][pair.frame_a]
        b = tracks[pair.video][pair.frame_b]
        sims = similarity(
            box_features(pair.video, pair.frame_a)[pair.queries],
            box_features(pair.video, pair.frame_b)[pair.candidates],
            metric,
        )
        # argmax keeps the first maximum: ties go to the lower candidate row.
        chosen = pair.candidates[np.argmax(sims, axis=1)]
        parts = by_gap.setdefault(pair.gap, [[], [], [], []])
        parts[0].append(b.track_ids[chosen])
        parts[1].append(a.track_ids[pair.queries])
        parts[2].append(b.category_ids[chosen])
        parts[3].append(a.category_ids[pair.queries])
    return {gap: tuple(np.concatenate(p) for p in parts) for gap, parts in by_gap.items()}


def merge_matches(
    results: Sequence[dict[int, tuple[np.ndarray, ...]]],
) -> dict[int, tuple[np.ndarray, ...]]:
    """Concatenates `match` outputs (e.g. of several videos) gap by gap."""
    merged: dict[int, list[list[np.ndarray]]] = {}
    for result in results:
        for gap, arrays in result.items():
            parts = merged.setdefault(gap, [[], [], [], []])
            for part, array in zip(parts, arrays):
                part.append(array)
    return {gap: tuple(np.concatenate(p) for p in parts) for gap, parts in merged.items()}


def associate(
    pairs: Sequence[FramePair],
    tracks: Sequence[Sequence[FrameTracks]],
    box_features: Callable[[int, int], np.ndarray],
    metric: str = "cosine",
) -> dict[int, dict[str, Any]]:
    """Association accuracy per gap (`match`, then `metrics.association_accuracy`).

    Returns:
      {gap: {'instance': float, 'category': float, 'count': int}}.
    """
    matches = match(pairs, tracks, box_features, metric)
    return {gap: metrics.association_accuracy(*arrays) for gap, arrays in matches.items()}


def pool_boxes(
    feature_map: np.ndarray,
    boxes: np.ndarray,
    patch_size: int,
    output: int = 7,
    pool: str = "mean",
    sampling_ratio: int = -1,
    aligned: bool = True,
) -> np.ndarray:
    """RoIAlign of boxes (pixels of the model input) on one patch-feature map.

    Args:
      feature_map: float [h, w, D] (stitched) patch features, stride `patch_size` pixels.
      boxes: float [K, 4] x1, y1, x2, y2 in pixels of the (resized) frame.
      patch_size: P (spatial scale 1/P).
      output: RoIAlign output side.
      pool: 'mean' over the output bins -> [K, D], or 'flatten' -> [K, output * output * D].
      sampling_ratio, aligned: as `roi_align.roi_align`.

    Returns:
      float32 [K, D] or [K, output^2 * D].
    """
    if pool not in POOLS:
        raise errors.ConfigError(f"config.tracking.roi_pool={pool!r}: expected one of {POOLS}")
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    k = boxes.shape[0]
    dim = feature_map.shape[-1]
    if k == 0:
        return np.zeros((0, dim if pool == "mean" else output * output * dim), np.float32)
    # Box counts are padded to a power of two so that frames share compilations.
    padded = 1 << max(k - 1, 0).bit_length()
    boxes_p = np.concatenate([boxes, np.tile([[0.0, 0.0, 1.0, 1.0]], (padded - k, 1))])
    pooled = roi_align.roi_align(
        np.asarray(feature_map, np.float32)[None],
        boxes_p.astype(np.float32),
        np.zeros(padded, np.int32),
        output_size=(output, output),
        spatial_scale=1.0 / patch_size,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    pooled = np.asarray(pooled)[:k]
    if pool == "mean":
        return pooled.mean(axis=(1, 2))
    return pooled.reshape(k, -1)


def scale_boxes(
    boxes: np.ndarray, frame_hw: Sequence[int], resized_hw: Sequence[int], clip: bool = True
) -> np.ndarray:
    """Boxes of a frame in pixels of the frame resized from frame_hw to resized_hw (clipped)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if clip:
        boxes = np.stack(
            [
                np.clip(boxes[:, 0], 0, frame_hw[1]),
                np.clip(boxes[:, 1], 0, frame_hw[0]),
                np.clip(boxes[:, 2], 0, frame_hw[1]),
                np.clip(boxes[:, 3], 0, frame_hw[0]),
            ],
            axis=1,
        )
    sy = resized_hw[0] / frame_hw[0]
    sx = resized_hw[1] / frame_hw[1]
    return (boxes * np.array([sx, sy, sx, sy])).astype(np.float32)


def stitch_tiles(tile_features: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[rows * cols, gh, gw, D] row-major tile features -> [rows * gh, cols * gw, D]."""
    _, gh, gw, dim = tile_features.shape
    grid = np.asarray(tile_features).reshape(rows, cols, gh, gw, dim)
    return grid.transpose(0, 2, 1, 3, 4).reshape(rows * gh, cols * gw, dim)


# ---------------------------------------------------------------------------------------------
# Data.


class FrameTiles:
    """ImageSource of the model inputs of some frames: frame f, tile t at index i * T + t.

    Decoded and resized frames are cached (thread-safe, the last `_FRAME_CACHE` frames): each frame
    is decoded exactly once while cached, even when the extraction's prefetch threads ask for all
    of its tiles at the same time.
    """

    def __init__(self, video: Video, frames: Sequence[int], geo: tiling.Geometry):
        self.video = video
        self.frames = [int(f) for f in frames]
        self.geo = geo
        h, w = geo.resize_to
        th, tw = geo.tile_size or (h, w)
        self.tiles_per_frame = (h // th) * (w // tw)
        self.image_shape = (th, tw, 3)
        self._lock = threading.Lock()
        self._cache: dict[int, concurrent.futures.Future] = {}  # frame -> tiles [T, th, tw, 3]

    def __len__(self) -> int:
        return len(self.frames) * self.tiles_per_frame

    def _tiles(self, frame: int) -> np.ndarray:
        # The frame's Future goes into the cache under the lock before decoding, so threads asking
        # for other tiles of the same frame wait on it instead of decoding the frame again.
        with self._lock:
            pending = self._cache.get(frame)
            owner = pending is None
            if owner:
                if len(self._cache) >= _FRAME_CACHE:
                    self._cache.pop(next(iter(self._cache)))
                pending = self._cache[frame] = concurrent.futures.Future()
        if not owner:
            return pending.result()
        try:
            tiles, _ = tiling.apply_geometry(self.video.load_frame(frame), self.geo)
        except BaseException as error:
            # Waiters see the error; a later read tries the frame again.
            with self._lock:
                if self._cache.get(frame) is pending:
                    del self._cache[frame]
            pending.set_exception(error)
            raise
        pending.set_result(tiles)
        return tiles

    def __getitem__(self, index: int) -> np.ndarray:
        frame, tile = divmod(int(index), self.tiles_per_frame)
        return self._tiles(self.frames[frame])[tile]


def load_videos(cfg: ml_collections.ConfigDict, seed: int) -> list[Video]:
    """The annotated videos of `cfg.dataset` (a "tracking" dataset of `vitjax.data.registry`).

    The first `num_videos` videos (all if <= 0), the first `max_frames` frames of each.
    """
    return _spec(cfg).load(cfg, seed)


def _spec(cfg: ml_collections.ConfigDict) -> registry.DatasetSpec:
    return registry.get_dataset(cfg.dataset, registry.TRACKING, "config.tracking.dataset")


# ---------------------------------------------------------------------------------------------
# The experiment.


def frames_key(
    cfg: ml_collections.ConfigDict,
    seed: int,
    video: str,
    frames: Sequence[int],
    geo: tiling.Geometry,
) -> dict[str, Any]:
    """Feature-store key of the model inputs of `frames` of one video (a `FrameTiles` source).

    An ImageSource has no content digest, so the key holds every field that defines its pixels:
    the dataset, split, video and frames, the geometry, and where the frames come from: the
    dataset's `identity` (`vitjax.data.registry`): the resolved root for BDD100K / MOT17 (plus
    the detector copy for MOT17), the seed and every `synthetic_*` field for synthetic videos.

    Returns:
      JSON-able dict.
    """
    key: dict[str, Any] = {
        "dataset": f"tracking/{cfg.dataset}",
        "split": cfg.split,
        "video": str(video),
        "frames": hashlib.sha256(repr([int(f) for f in frames]).encode()).hexdigest()[:16],
        "num_frames": len(frames),
        "geometry": geo.name,
    }
    identity = _spec(cfg).identity
    if identity is not None:
        key.update(identity(cfg, seed))
    return key


def frame_box_features(
    ctx: experiments.Context,
    model: experiments.ModelHandle,
    video: Video,
    frames: Sequence[int],
    geo: tiling.Geometry,
    cfg: ml_collections.ConfigDict,
    key: dict[str, Any],
) -> dict[int, np.ndarray]:
    """Pooled features of every box of each of `frames`: {frame: float32 [K, D']}."""
    source = FrameTiles(video, frames, geo)
    feats = ctx.features(model, source, key=key, layers=(cfg.layer,))
    index = ctx.layer_index(model, cfg.layer)
    patch = feats.patch[index]  # [F * T, gh, gw, D]
    h, w = geo.resize_to
    th, tw = geo.tile_size or (h, w)
    rows, cols = h // th, w // tw
    out = {}
    for i, frame in enumerate(frames):
        tiles = np.asarray(patch[i * rows * cols : (i + 1) * rows * cols], np.float32)
        fmap = stitch_tiles(tiles, rows, cols)
        boxes = scale_boxes(video.tracks[frame].boxes, video.frame_hw, (h, w), cfg.clip_boxes)
        out[frame] = pool_boxes(
            fmap,
            boxes,
            int(model.spec.patch_size),
            cfg.roi_output,
            cfg.roi_pool,
            cfg.sampling_ratio,
            cfg.aligned,
        )
    return out


def _check(cfg: ml_collections.ConfigDict) -> None:
    common.require_fields(
        cfg, "tracking", defaults().keys(), "vitjax.experiments.tracking.defaults()"
    )
    if cfg.metric not in METRICS:
        raise errors.ConfigError(f"config.tracking.metric={cfg.metric!r}: expected {METRICS}")
    if cfg.roi_pool not in POOLS:
        raise errors.ConfigError(f"config.tracking.roi_pool={cfg.roi_pool!r}: expected {POOLS}")


@experiments.register("tracking")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    _check(cfg)
    gaps = list(cfg.gaps)
    videos = load_videos(cfg, ctx.seed)
    if not videos:
        raise errors.DatasetError(f"config.tracking: no video found in {cfg.dataset} {cfg.root}")
    pairs = [p for v, video in enumerate(videos) for p in association_pairs(video.tracks, gaps, v)]
    ctx.log(f"{len(videos)} videos, {len(pairs)} frame pairs over gaps {gaps}")
    _check_pairs(ctx, cfg, videos, pairs, gaps)
    needed = {
        v: sorted({f for p in pairs if p.video == v for f in (p.frame_a, p.frame_b)})
        for v in range(len(videos))
    }
    tracks = [video.tracks for video in videos]
    rows, skipped = [], []
    for geo in geometries(cfg):
        for model in ctx.models:
            if not common.runs_at(model, input_hw(geo)):
                skipped.append(f"{model.name} at {geo.name}")
                ctx.log(f"skipping {model.name}: cannot run on {input_hw(geo)} inputs")
                continue
            matches = []
            for v in ctx.progress(range(len(videos)), len(videos), "videos"):
                if not needed[v]:
                    continue
                key = frames_key(cfg, ctx.seed, videos[v].name, needed[v], geo)
                per_frame = frame_box_features(ctx, model, videos[v], needed[v], geo, cfg, key)
                video_pairs = [p for p in pairs if p.video == v]
                # Features of one video at a time: flattened 7x7 pools of long videos are large.
                matches.append(
                    match(
                        video_pairs,
                        tracks,
                        lambda _, f, per_frame=per_frame: per_frame[f],
                        cfg.metric,
                    )
                )
            scores = {
                gap: metrics.association_accuracy(*arrays)
                for gap, arrays in merge_matches(matches).items()
            }
            for gap in [g for g in gaps if any(p.gap == g for p in pairs)]:
                s = scores.get(
                    gap, {"instance": float("nan"), "category": float("nan"), "count": 0}
                )
                # Mean over videos: MOT17-05 runs at 14 fps, the other sequences at 30 (or 25).
                seconds = float(np.mean([gap / v.frame_rate for v in videos]))
                rows.append(
                    {
                        **common.model_row(model),
                        "geometry": geo.name,
                        "gap": gap,
                        "gap_seconds": seconds,
                        "instance_acc": s["instance"],
                        "category_acc": s["category"],
                        "queries": s["count"],
                    }
                )
    if not rows:
        raise errors.ConfigError(
            f"config.tracking: no model of config.models can take the frame geometries "
            f"{cfg.geometries!r}; skipped {skipped}"
        )
    return _result(ctx, cfg, videos, rows, skipped)


def _labelled_frames(video: Video) -> list[int]:
    """Frames of `video` (as read, after max_frames) with at least one non-ignored box."""
    return [f for f, t in enumerate(video.tracks) if np.any(~as_frame_tracks(t).ignore)]


def _check_pairs(ctx, cfg, videos: list[Video], pairs: list[FramePair], gaps: list[int]) -> None:
    """Raises when no frame pair has a query; warns for each gap without one.

    A gap without pairs would report an accuracy over zero queries (a quiet NaN or 0).
    """
    if not pairs:
        window = (
            f"the first {cfg.max_frames} frames (config.tracking.max_frames)"
            if cfg.max_frames > 0
            else "all frames"
        )
        found = "; ".join(
            f"{v.name}: {len(v.tracks)} frames read, labelled frames {_labelled_frames(v)[:8]}"
            for v in videos[:5]
        )
        if cfg.max_frames > 0:
            # Read once more without the window (error path only) to say where labels start.
            whole = ml_collections.ConfigDict(cfg.to_dict())
            whole.max_frames = 0
            firsts = [(v.name, _labelled_frames(v)[:1]) for v in load_videos(whole, ctx.seed)[:5]]
            found += "; without the window, labelled frames start at " + ", ".join(
                f"{name}: {first[0] if first else 'none'}" for name, first in firsts
            )
        raise errors.DatasetError(
            f"config.tracking: no query: in {window} of {len(videos)} {cfg.dataset} video(s) no "
            f"non-ignored box of frame t is seen again at frame t + gap for any gap {gaps} "
            f"({found}). Labels may start late in the video (raise or zero max_frames) or the "
            "gaps may exceed the labelled span."
        )
    for gap in gaps:
        if not any(p.gap == gap for p in pairs):
            ctx.warn(f"gap {gap}: no frame pair has a query (too few labelled frames); no row")


def _result(ctx, cfg, videos, rows, skipped) -> experiments.Result:
    panels: dict[str, dict] = {"instance accuracy": {}, "category accuracy": {}}
    multi = len({r["geometry"] for r in rows}) > 1
    families = {m.name: m.spec.family for m in ctx.models}
    keys = {}
    for r in rows:
        label = f"{r['model']} {r['geometry']}" if multi else r["model"]
        keys[label] = (families.get(r["model"], r["model"]), r["model"], r["geometry"])
        for panel, column in (
            ("instance accuracy", "instance_acc"),
            ("category accuracy", "category_acc"),
        ):
            xs, ys = panels[panel].setdefault(label, ([], []))
            xs.append(r["gap"])
            ys.append(r[column])
    path = ctx.figure_path("accuracy_vs_gap")
    plotting.line_plot(
        path,
        panels,
        xlabel="frame gap (frames)",
        ylabel="accuracy (0-1)",
        logx=True,
        keys=keys,
        integer_x=True,
        mark=plotting.random_weights_mark(ctx.models),
    )
    note = f" Skipped (input size the model cannot take): {', '.join(skipped)}." if skipped else ""
    return experiments.Result(
        tables={"association": rows},
        figures={"accuracy_vs_gap": path},
        text={
            "summary": f"Box association across frame gaps on {cfg.dataset} ({len(videos)} "
            f"videos): RoIAlign ({cfg.roi_output}x{cfg.roi_output}, {cfg.roi_pool}) on the "
            f"stitched patch features; nearest instance by {cfg.metric} similarity.{note}",
            "association": "Per model, frame geometry ('HxW/T' = resized and tiled, 'HxW' = "
            "whole frame resized) and gap: share of instances of frame t matched to the same "
            "track (instance_acc) or a box of the same category (category_acc) in frame t+gap; "
            "ignored boxes (distractors, crowd, MOT17 non-considered) are left out.",
            "accuracy_vs_gap": plotting.caption(
                "Fig. 7/9/12: measured association accuracy against the frame gap (log axis); "
                "line style = frame geometry.",
                None,
                ctx.models,
            ),
        },
        scalars={"videos": [v.name for v in videos], "datasets": [cfg.dataset]},
    )


def defaults() -> ml_collections.ConfigDict:
    """The `tracking` section with the paper's protocol numbers (BDD100K)."""
    s = ml_collections.ConfigDict()
    s.dataset = "bdd100k"  # bdd100k | mot17 | synthetic
    s.root = "data/bdd100k"
    s.split = "val"
    s.num_videos = 5  # first N videos/sequences in sorted order; 0 = all
    s.max_frames = 0  # > 0: only the first N frames of each video
    # Frame geometries: 'HxW/T' = resize to HxW and cut into TxT tiles whose patch
    # grids are stitched; 'HxW' = the whole frame resized to HxW as one input.
    s.geometries = ("672x1120/224",)
    s.gaps = (1, 2, 5, 10, 25)  # frame gaps; BDD100K is 5 fps -> 0.2 s to 5 s
    s.roi_output = 7  # RoIAlign output side
    s.roi_pool = "mean"  # mean over the 7x7 RoIAlign output | flatten (concatenate the bins)
    s.sampling_ratio = -1  # torchvision's adaptive sampling
    s.aligned = True
    s.clip_boxes = True  # boxes clipped to the frame before pooling
    s.metric = "cosine"  # similarity of pooled box features: cosine | dot | l2
    s.layer = -1
    s.detector = "FRCNN"  # MOT17 only: which of the three identical copies to read
    s.min_visibility = 0.0  # MOT17 only: pedestrians below this visibility are ignored
    s.frame_rate = 5.0  # BDD100K (5 Hz) and synthetic; MOT17 reads seqinfo.ini
    # Synthetic stand-in (dataset = synthetic): synthetic.videos.
    s.synthetic_videos = 2
    s.synthetic_frames = 12
    s.synthetic_hw = (224, 448)
    return s
