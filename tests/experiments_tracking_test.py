"""Tracking association: frame pairs, ignore rules, box pooling, accuracy on known tracks, runs."""

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent import futures  # noqa: E402
from unittest import mock  # noqa: E402

import numpy as np  # noqa: E402
from absl.testing import absltest, parameterized  # noqa: E402
from PIL import Image  # noqa: E402

from configs import bdd100k as bdd100k_config  # noqa: E402
from configs import mot17 as mot17_config  # noqa: E402
from tests import test_util  # noqa: F401
from vitjax import errors, run  # noqa: E402
from vitjax.data import tiling  # noqa: E402
from vitjax.data.bdd100k import FrameTracks  # noqa: E402
from vitjax.experiments import tracking  # noqa: E402

torch = test_util.optional_import("torch")
torchvision = test_util.optional_import("torchvision")


def tempdir(test) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_tracking_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def frame(ids, cats=None, ignore=None):
    ids = np.asarray(ids, np.int64)
    boxes = np.stack([ids * 10.0, ids * 5.0, ids * 10.0 + 8, ids * 5.0 + 8], 1).reshape(-1, 4)
    cats = np.ones(len(ids), np.int32) if cats is None else np.asarray(cats, np.int32)
    ignore = np.zeros(len(ids), bool) if ignore is None else np.asarray(ignore, bool)
    return FrameTracks(boxes.astype(np.float32), ids, cats, ignore)


class PairsTest(absltest.TestCase):
    def test_ignored_boxes_are_neither_queries_nor_candidates(self):
        tracks = [
            frame([1, 2, 3, 4], ignore=[0, 0, 1, 0]),
            frame([1, 3, 4], ignore=[0, 0, 1]),
            frame([], None, None),
            frame([2, 4]),
        ]
        pairs = tracking.association_pairs(tracks, [1, 2, 3])
        got = [
            (p.gap, p.frame_a, p.frame_b, p.queries.tolist(), p.candidates.tolist()) for p in pairs
        ]
        self.assertEqual(
            got,
            [
                # gap 1: 3 is ignored in frame 0, 4 is ignored in frame 1 -> only track 1.
                (1, 0, 1, [0], [0, 1]),
                # gap 2: frame 0 -> 2 has no pair (frame 2 empty); frame 1 -> 3: track 4 is
                # ignored in frame 1, so no query.
                # gap 3: frame 0 -> 3: tracks 2 and 4.
                (3, 0, 3, [1, 3], [0, 1]),
            ],
        )

    def test_bad_gap(self):
        with self.assertRaisesRegex(errors.ConfigError, "gaps"):
            tracking.association_pairs([frame([1])], [0])


class AssociationTest(parameterized.TestCase):
    def test_identity_features_give_perfect_association(self):
        rng = np.random.default_rng(0)
        codes = rng.standard_normal((10, 32))  # one appearance per track
        tracks = [
            [frame(ids, cats=np.array(ids) % 3) for ids in ([1, 2, 3], [1, 2, 3, 4], [2, 3, 4])]
        ]

        def features(video, f):
            ids = tracks[video][f].track_ids
            return codes[ids] + 0.01 * rng.standard_normal((len(ids), 32))

        scores = tracking.associate(tracking.association_pairs(tracks[0], [1, 2]), tracks, features)
        self.assertEqual(scores[1], {"instance": 1.0, "category": 1.0, "count": 6})
        self.assertEqual(scores[2], {"instance": 1.0, "category": 1.0, "count": 2})

    @parameterized.parameters("cosine", "dot", "l2")
    def test_swapped_appearances_give_known_accuracy(self, metric):
        # Frame 1 swaps the appearances of tracks 1 and 2 (same category 0) and keeps track 3
        # (category 1): queries 1 and 2 pick the wrong track but the right category.
        codes = np.eye(4) * 5.0
        appearance = [{1: 1, 2: 2, 3: 3}, {1: 2, 2: 1, 3: 3}]
        tracks = [[frame([1, 2, 3], cats=[0, 0, 1]), frame([1, 2, 3], cats=[0, 0, 1])]]

        def features(video, f):
            return codes[[appearance[f][int(i)] for i in tracks[video][f].track_ids]]

        scores = tracking.associate(
            tracking.association_pairs(tracks[0], [1]), tracks, features, metric
        )
        self.assertAlmostEqual(scores[1]["instance"], 1 / 3)
        self.assertEqual(scores[1]["category"], 1.0)
        self.assertEqual(scores[1]["count"], 3)

    def test_similarity_oracle(self):
        rng = np.random.default_rng(1)
        q, c = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
        cos = tracking.similarity(q, c, "cosine")
        expected = (q / np.linalg.norm(q, axis=1)[:, None]) @ (
            c / np.linalg.norm(c, axis=1)[:, None]
        ).T
        np.testing.assert_allclose(cos, expected, rtol=1e-12)
        l2 = tracking.similarity(q, c, "l2")
        np.testing.assert_allclose(l2, -((q[:, None] - c[None]) ** 2).sum(-1), rtol=1e-10)


class PoolingTest(parameterized.TestCase):
    @parameterized.parameters(("mean", 16), ("flatten", 14))
    @test_util.requires("torch", "torchvision")
    def test_pooled_boxes_match_torchvision(self, pool, patch):
        rng = np.random.default_rng(2)
        fmap = rng.standard_normal((6, 10, 8)).astype(np.float32)
        boxes = np.array(
            [[3.0, 5.0, 70.0, 40.0], [0.0, 0.0, 160.0, 96.0], [20, 30, 21, 31]], np.float32
        )
        pooled = tracking.pool_boxes(fmap, boxes, patch, output=7, pool=pool)
        ref = torchvision.ops.roi_align(
            torch.from_numpy(fmap).permute(2, 0, 1)[None],
            [torch.from_numpy(boxes)],
            output_size=(7, 7),
            spatial_scale=1.0 / patch,
            sampling_ratio=-1,
            aligned=True,
        ).numpy()  # [K, D, 7, 7]
        expected = (
            ref.mean(axis=(2, 3)) if pool == "mean" else ref.transpose(0, 2, 3, 1).reshape(3, -1)
        )
        np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-5)

    def test_no_boxes(self):
        self.assertEqual(
            tracking.pool_boxes(np.zeros((4, 4, 3)), np.zeros((0, 4)), 16).shape, (0, 3)
        )

    def test_stitch_matches_tiling(self):
        image = np.arange(64 * 96 * 3, dtype=np.int64).reshape(64, 96, 3)
        tiles, infos = tiling.tile_image(image, (32, 32))
        np.testing.assert_array_equal(
            tracking.stitch_tiles(tiles, 2, 3), tiling.stitch(tiles, infos)
        )

    def test_boxes_are_scaled_and_clipped(self):
        boxes = np.array([[-10.0, 5.0, 50.0, 200.0]])
        out = tracking.scale_boxes(boxes, (100, 50), (200, 200))
        np.testing.assert_allclose(out, [[0.0, 10.0, 200.0, 200.0]])

    @parameterized.parameters(
        ("672x1120/224", (672, 1120), (224, 224)), ("448x448", (448, 448), None)
    )
    def test_parse_geometry(self, text, resize, tile):
        geo = tracking.parse_geometry(text)
        self.assertEqual(geo.resize_to, resize)
        self.assertEqual(geo.tile_size, tile)

    @parameterized.parameters("672x1000/224", "big", "")
    def test_bad_geometry(self, text):
        with self.assertRaises(errors.ConfigError):
            tracking.parse_geometry(text)


def write_mot17(root: str) -> None:
    """MOT17/train/MOT17-02-FRCNN: 4 frames of 48 x 64; rows covering the ignore rules."""
    seq = os.path.join(root, "MOT17", "train", "MOT17-02-FRCNN")
    os.makedirs(os.path.join(seq, "img1"))
    os.makedirs(os.path.join(seq, "gt"))
    with open(os.path.join(seq, "seqinfo.ini"), "w") as f:
        f.write(
            "[Sequence]\nname=MOT17-02-FRCNN\nimDir=img1\nframeRate=30\nseqLength=4\n"
            "imWidth=64\nimHeight=48\nimExt=.jpg\n"
        )
    rng = np.random.default_rng(3)
    for i in range(1, 5):
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(seq, "img1", f"{i:06d}.jpg"))
    lines = []
    for f in range(1, 5):
        lines.append(f"{f},1,2,3,10,20,1,1,1.0")  # scored pedestrian
        lines.append(f"{f},2,30,10,12,25,1,1,0.6")  # scored pedestrian
        lines.append(f"{f},3,45,5,8,30,1,7,1.0")  # static person: distractor, ignored
        lines.append(f"{f},5,20,30,30,15,0,3,1.0")  # car: left out
    lines += ["1,4,10,10,10,10,0,1,1.0", "2,4,10,10,10,10,0,1,1.0"]  # consider 0: left out
    with open(os.path.join(seq, "gt", "gt.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def write_bdd(root: str) -> None:
    folder = os.path.join(root, "images", "track", "val", "v0")
    os.makedirs(folder)
    os.makedirs(os.path.join(root, "labels", "box_track_20", "val"))
    for i in range(1, 4):
        Image.fromarray(np.zeros((36, 64, 3), np.uint8)).save(
            os.path.join(folder, f"v0-{i:07d}.jpg")
        )

    def label(track, category, crowd=False):
        box = {"x1": 2.0, "y1": 3.0, "x2": 20.0, "y2": 30.0}
        return {"id": track, "category": category, "attributes": {"crowd": crowd}, "box2d": box}

    frames = [
        {
            "name": f"v0-{i + 1:07d}.jpg",
            "videoName": "v0",
            "frameIndex": i,
            "labels": [
                label("a", "car"),
                label("b", "pedestrian", crowd=True),
                label("c", "other vehicle"),
                label("d", "bus"),
            ],
        }
        for i in range(3)
    ]
    with open(os.path.join(root, "labels", "box_track_20", "val", "v0.json"), "w") as f:
        json.dump(frames, f)


class DataTest(absltest.TestCase):
    def test_bdd_crowd_and_distractors_are_ignored(self):
        root = tempdir(self)
        write_bdd(root)
        cfg = bdd100k_config.tracking_defaults()
        cfg.root = root
        videos = tracking.load_videos(cfg, seed=0)
        self.assertLen(videos, 1)
        self.assertEqual(videos[0].frame_hw, (36, 64))
        self.assertEqual(videos[0].tracks[0].ignore.tolist(), [False, True, True, False])
        pairs = tracking.association_pairs(videos[0].tracks, [1, 2])
        self.assertEqual([p.queries.tolist() for p in pairs], [[0, 3], [0, 3], [0, 3]])
        self.assertEqual(videos[0].load_frame(2).shape, (36, 64, 3))


class FrameTilesTest(absltest.TestCase):
    """`FrameTiles` decodes each frame once even when all its tiles are read concurrently."""

    def counting_video(self, fail_first=()):
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (4, 48, 80, 3), dtype=np.uint8)
        calls = {}
        lock = threading.Lock()
        failures = set(fail_first)

        def load_frame(f):
            with lock:
                calls[f] = calls.get(f, 0) + 1
                fail = f in failures
                failures.discard(f)
            time.sleep(0.05)  # long enough for every thread to ask while the frame decodes
            if fail:
                raise OSError(f"frame {f} unreadable")
            return pixels[f]

        video = tracking.Video("v", 10.0, (48, 80), [frame([])] * 4, load_frame)
        return video, calls

    def test_concurrent_tiles_decode_each_frame_once(self):
        geo = tracking.parse_geometry("64x96/32")
        frames = [0, 2, 3]
        reference_video, _ = self.counting_video()
        reference = tracking.FrameTiles(reference_video, frames, geo)
        expected = [reference[i] for i in range(len(reference))]
        self.assertEqual(reference.tiles_per_frame, 6)
        self.assertEqual(expected[0].shape, (32, 32, 3))

        video, calls = self.counting_video()
        source = tracking.FrameTiles(video, frames, geo)
        n = source.tiles_per_frame
        with futures.ThreadPoolExecutor(8) as pool:
            for f in range(len(frames)):
                # 8 readers for the 6 tiles of one frame, all released at the same moment.
                indices = [f * n + t % n for t in range(8)]
                start = threading.Barrier(len(indices))

                def read(i, start=start):
                    start.wait()
                    return i, source[i]

                for i, tile in pool.map(read, indices):
                    np.testing.assert_array_equal(tile, expected[i])
        self.assertEqual(calls, {0: 1, 2: 1, 3: 1})

    def test_failed_decode_reaches_every_reader_and_is_retried(self):
        video, calls = self.counting_video(fail_first=[1])
        # 3 x 5 tiles of 16 x 16: tile 6 is row 1, column 1.
        source = tracking.FrameTiles(video, [1], tracking.parse_geometry("48x80/16"))
        start = threading.Barrier(4)

        def read(i):
            start.wait()
            try:
                return source[i]
            except OSError as error:
                return error

        with futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(read, range(4)))
        self.assertTrue(all(isinstance(r, OSError) for r in results), results)
        self.assertEqual(calls, {1: 1})
        np.testing.assert_array_equal(source[6], video.load_frame(1)[16:32, 16:32])
        self.assertEqual(calls, {1: 3})  # the retry, then the direct read above


class FramesKeyTest(absltest.TestCase):
    """The store key of a `FrameTiles` source holds every field that defines its pixels."""

    def _key(self, cfg, seed=0):
        return tracking.frames_key(cfg, seed, "v0", [0, 2, 3], tracking.parse_geometry("64x64"))

    def test_synthetic_fields_and_seed_change_the_key(self):
        cfg = bdd100k_config.tracking_defaults()
        cfg.dataset = "synthetic"
        base = self._key(cfg)
        again = bdd100k_config.tracking_defaults()
        again.dataset = "synthetic"
        self.assertEqual(self._key(again), base)
        changes = {
            "synthetic_hw": (112, 224),
            "synthetic_videos": cfg.synthetic_videos + 1,
            "synthetic_frames": cfg.synthetic_frames + 1,
        }
        for field, value in changes.items():
            changed = bdd100k_config.tracking_defaults()
            changed.dataset = "synthetic"
            changed[field] = value
            self.assertNotEqual(self._key(changed), base, field)
        self.assertNotEqual(self._key(cfg, seed=1), base)
        # Settings that do not touch the pixels share the features.
        same = bdd100k_config.tracking_defaults()
        same.dataset = "synthetic"
        same.gaps, same.metric, same.root = (1,), "dot", "/elsewhere"
        self.assertEqual(self._key(same), base)
        other_frames = tracking.frames_key(cfg, 0, "v0", [0, 2], tracking.parse_geometry("64x64"))
        self.assertNotEqual(other_frames, base)

    def test_real_datasets_key_on_the_root(self):
        cfg = bdd100k_config.tracking_defaults()
        cfg.root = tempdir(self)
        base = self._key(cfg)
        self.assertEqual(base["root"], os.path.realpath(cfg.root))
        self.assertEqual(self._key(cfg, seed=5), base)  # real frames do not depend on the seed
        cfg.root = tempdir(self)
        self.assertNotEqual(self._key(cfg), base)
        mot = mot17_config.get_config().tracking
        key = self._key(mot)
        mot.detector = "SDP"
        self.assertNotEqual(self._key(mot), key)

    def test_missing_root_names_the_field(self):
        for dataset, layout in (("bdd100k", "box_track_20"), ("mot17", "seqinfo.ini")):
            cfg = bdd100k_config.tracking_defaults()
            cfg.dataset = dataset
            for root in ("", os.path.join(tempdir(self), "missing")):
                cfg.root = root
                with self.assertRaisesRegex(
                    errors.ConfigError,
                    rf"config\.tracking\.root=.*--config\.tracking\.root.*{layout}",
                ):
                    tracking.load_videos(cfg, seed=0)

    def test_incomplete_section_names_the_defaults(self):
        cfg = bdd100k_config.tracking_defaults()
        del cfg["synthetic_hw"]
        with self.assertRaisesRegex(errors.ConfigError, r"config\.tracking lacks.*synthetic_hw"):
            tracking._check(cfg)

    def test_geometries(self):
        cfg = bdd100k_config.tracking_defaults()
        cfg.geometries = ("64x128/64", "32x32")
        self.assertEqual([g.name for g in tracking.geometries(cfg)], ["64x128/64", "32x32"])
        cfg.geometries = ()
        with self.assertRaisesRegex(errors.ConfigError, "geometries"):
            tracking.geometries(cfg)


class EndToEndTest(absltest.TestCase):
    def test_synthetic_videos(self):
        c = bdd100k_config.get_config("synthetic")
        c.model_depth = 1
        bdd100k_config.add_demo(c, tiny=True)
        workdir = tempdir(self)
        with mock.patch.object(
            tracking, "frame_box_features", wraps=tracking.frame_box_features
        ) as spy:
            results = run.run(c, workdir)
        # The run names its frame sources with `frames_key` (synthetic fields and seed included).
        keys = [call.args[-1] for call in spy.call_args_list]
        self.assertNotEmpty(keys)
        for key in keys:
            self.assertEqual(key["synthetic_hw"], [112, 224])
            self.assertEqual(key["seed"], c.seed)
        rows = results["experiments"]["tracking"]["tables"]["association"]
        self.assertLen(rows, 2 * 2)  # models x gaps
        for r in rows:
            self.assertGreater(r["queries"], 0)
            self.assertTrue(0 <= r["instance_acc"] <= r["category_acc"] <= 1)
        self.assertTrue(
            os.path.exists(os.path.join(workdir, "figures", "tracking_accuracy_vs_gap.png"))
        )

    def test_mot17_ignore_rules(self):
        root = tempdir(self)
        write_mot17(root)
        c = mot17_config.get_config()
        c.models = ("dino:ti:16:none",)
        c.model_depth = 1
        s = c.tracking
        s.root, s.geometries, s.gaps = root, ("64x64", "64x128/64"), (1, 2)
        results = run.run(c, tempdir(self))
        rows = results["experiments"]["tracking"]["tables"]["association"]
        self.assertLen(rows, 2 * 2)  # geometries x gaps
        by_gap = {(r["geometry"], r["gap"]): r for r in rows}
        # Only the two scored pedestrians are queries: 3 pairs at gap 1, 2 pairs at gap 2.
        self.assertEqual(by_gap[("64x64", 1)]["queries"], 6)
        self.assertEqual(by_gap[("64x64", 2)]["queries"], 4)
        self.assertAlmostEqual(by_gap[("64x64", 1)]["gap_seconds"], 1 / 30)
        for r in rows:
            self.assertEqual(r["category_acc"], 1.0)  # every candidate is a pedestrian


if __name__ == "__main__":
    absltest.main()
