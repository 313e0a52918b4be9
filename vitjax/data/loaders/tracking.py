"""Tracking datasets (kind "tracking"): synthetic videos, BDD100K MOT, MOT17.

Each loader returns the annotated videos of `cfg` (`config.tracking`): the first `num_videos`
(all if <= 0), each cut to its first `max_frames` frames (all if <= 0).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import ml_collections

from vitjax import errors
from vitjax.data import bdd100k, images, mot17, registry, synthetic
from vitjax.data.bdd100k import FrameTracks, as_frame_tracks
from vitjax.data.registry import TRACKING, register_dataset
from vitjax.data.types import Video

ROOT_FIELD = "config.tracking.root"
# Fields of `config.tracking` that shape the frames of a synthetic video.
SYNTHETIC_FIELDS = ("synthetic_videos", "synthetic_frames", "synthetic_hw")
BDD100K_LAYOUT = (
    "<root>/images/track/<split>/<video>/<video>-<frame>.jpg and "
    "<root>/labels/box_track_20/<split>/<video>.json (or labels-20/)"
)
MOT17_LAYOUT = (
    "<root>/{train,test}/MOT17-<NN>-<DET>/{seqinfo.ini,img1/,gt/gt.txt} (root = MOT17 or its "
    "parent)"
)


def _truncate(tracks: list[FrameTracks], max_frames: int) -> list[FrameTracks]:
    return tracks[:max_frames] if max_frames > 0 else tracks


def _synthetic_identity(cfg: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
    # The seed and every `synthetic_*` field define the generated frames.
    key: dict[str, Any] = {"seed": int(seed)}
    for field in SYNTHETIC_FIELDS:
        value = cfg[field]
        key[field] = list(value) if isinstance(value, tuple | list) else value
    return key


def _root_identity(cfg: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
    del seed  # the frames come from the files
    return {"root": os.path.realpath(str(cfg.root))}


def _mot17_identity(cfg: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
    # Each detector's copy of a sequence is its own folder.
    return dict(_root_identity(cfg, seed), detector=str(cfg.detector))


@register_dataset(
    "synthetic", kind=TRACKING, display="synthetic videos", identity=_synthetic_identity
)
def load_synthetic(cfg: ml_collections.ConfigDict, seed: int) -> list[Video]:
    """Synthetic videos of moving boxes (`synthetic.videos`)."""
    n, max_frames = int(cfg.num_videos), int(cfg.max_frames)
    hw = tuple(int(v) for v in cfg.synthetic_hw)
    vids = synthetic.videos(int(cfg.synthetic_videos), int(cfg.synthetic_frames), hw, seed)
    out = []
    for v, frames in enumerate(vids.tracks):
        tracks = _truncate([as_frame_tracks(f) for f in frames], max_frames)
        out.append(
            Video(
                f"synthetic_{v}",
                float(cfg.frame_rate),
                hw,
                tracks,
                functools.partial(lambda v, f: vids.frames[v, f], v),
            )
        )
    return out[:n] if n > 0 else out


@register_dataset(
    "bdd100k", kind=TRACKING, display="bdd100k", layout=BDD100K_LAYOUT, identity=_root_identity
)
def load_bdd100k(cfg: ml_collections.ConfigDict, seed: int) -> list[Video]:
    """BDD100K MOT videos of `cfg.split`, frames read from the JPEGs on demand."""
    del seed  # the videos are taken in listing order
    n, max_frames = int(cfg.num_videos), int(cfg.max_frames)
    root = registry.get_dataset("bdd100k", TRACKING).check_root(cfg.root, ROOT_FIELD)
    reader = bdd100k.BDD100KReader(root)
    samples = reader.samples(cfg.split)
    out = []
    for video in samples[:n] if n > 0 else samples:
        tracks, _ = reader.load_tracks(video)
        tracks = _truncate(tracks, max_frames)
        paths = {fr.frame_index: fr.image_path for fr in reader.load_frames(video)}
        missing = [f for f in range(len(tracks)) if f not in paths and len(tracks[f].boxes)]
        if missing:
            raise errors.DatasetError(
                f"{video.label_path}: frames {missing[:5]} have boxes but no frame entry"
            )
        first = paths[min(paths)]
        out.append(
            Video(
                video.name,
                float(cfg.frame_rate),
                images.image_size(first),
                tracks,
                lambda f, paths=paths: images.read_image(paths[f]),
            )
        )
    return out


@register_dataset(
    "mot17", kind=TRACKING, display="mot17", layout=MOT17_LAYOUT, identity=_mot17_identity
)
def load_mot17(cfg: ml_collections.ConfigDict, seed: int) -> list[Video]:
    """MOT17 sequences of `cfg.split` (one detector's copy), pedestrians above min_visibility."""
    del seed  # the sequences are taken in listing order
    n, max_frames = int(cfg.num_videos), int(cfg.max_frames)
    root = registry.get_dataset("mot17", TRACKING).check_root(cfg.root, ROOT_FIELD)
    reader = mot17.MOT17Reader(root, detector=str(cfg.detector) or None)
    sequences = reader.samples(cfg.split)
    out = []
    for seq in sequences[:n] if n > 0 else sequences:
        tracks = reader.load_tracks(seq, min_visibility=float(cfg.min_visibility))
        out.append(
            Video(
                seq.name,
                seq.frame_rate,
                (seq.height, seq.width),
                _truncate(tracks, max_frames),
                lambda f, seq=seq: reader.load_image(seq, f),
            )
        )
    return out
