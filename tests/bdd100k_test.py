"""Tests of the BDD100K MOT reader and frame-gap pair enumeration."""

from tests import test_util  # noqa: F401  # isort: skip

import json
import os
import tempfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from vitjax.data import bdd100k
from vitjax.errors import DatasetError


def _label(track, category, box, **attributes):
    x1, y1, x2, y2 = box
    return {
        "id": track,
        "category": category,
        "attributes": {"occluded": False, "truncated": False, "crowd": False, **attributes},
        "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
    }


CAR = [(1, 2, 10, 12), (2, 3, 11, 13), None, (4, 5, 13, 15)]  # track "1", absent in frame 2


def current_format():
    """4 frames: car "1" in 0, 1, 3; crowd pedestrian "2" in 0, 1; other vehicle "3" in 0, 3;
    occluded bus "4" in 1; frame 2 has no `labels` key."""
    frames = [
        [
            _label("1", "car", CAR[0]),
            _label("2", "pedestrian", (20, 20, 30, 40), crowd=True),
            _label("3", "other vehicle", (0, 0, 5, 5)),
        ],
        [
            _label("4", "bus", (40, 0, 60, 20), occluded=True),
            _label("1", "car", CAR[1]),
            _label("2", "pedestrian", (21, 20, 31, 40), crowd=True),
        ],
        None,
        [_label("1", "car", CAR[3]), _label("3", "other vehicle", (1, 0, 6, 5))],
    ]
    out = []
    for t, labels in enumerate(frames):
        frame = {"name": f"v0-{t + 1:07d}.jpg", "videoName": "v0", "frameIndex": t}
        if labels is not None:
            frame["labels"] = labels
        out.append(frame)
    return out


def legacy_format():
    """2020 spelling: `index`, capitalised attributes, one label without attributes."""
    return [
        {
            "name": "v1-0000001.jpg",
            "videoName": "v1",
            "index": 0,
            "labels": [
                {
                    "id": "7",
                    "category": "rider",
                    "attributes": {"Crowd": False, "Occluded": True, "Truncated": True},
                    "box2d": {"x1": 0, "y1": 0, "x2": 4, "y2": 8},
                },
                {"id": "8", "category": "motor", "box2d": {"x1": 1, "y1": 1, "x2": 2, "y2": 2}},
            ],
        },
        {"name": "v1-0000002.jpg", "videoName": "v1", "index": 1, "labels": []},
    ]


def write_json(root, label_dir, split, video, frames):
    folder = os.path.join(root, label_dir, split)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{video}.json")
    with open(path, "w") as f:
        json.dump(frames, f)
    return path


def brute_force_pairs(tracks, gaps):
    """Independent enumeration by Python sets, for comparison."""
    out = []
    for v, frames in enumerate(tracks):
        for gap in gaps:
            for t in range(len(frames) - gap):
                ids_a = [int(i) for i in frames[t].track_ids]
                common = [i for i in ids_a if i in set(frames[t + gap].track_ids.tolist())]
                if common:
                    out.append((v, gap, t, t + gap, common))
    return out


class BDD100KTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.enterContext(tempfile.TemporaryDirectory())
        image_dir = os.path.join(self.root, "images", "track", "val", "v0")
        os.makedirs(image_dir)
        for t in range(4):
            Image.fromarray(np.full((12, 16, 3), 10 * t, np.uint8)).save(
                os.path.join(image_dir, f"v0-{t + 1:07d}.jpg")
            )
        self.label_path = write_json(
            self.root, "labels/box_track_20", "val", "v0", current_format()
        )
        self.reader = bdd100k.BDD100KReader(self.root)

    def test_frames_and_flags(self):
        (video,) = self.reader.samples("val")
        self.assertEqual((video.name, video.split), ("v0", "val"))
        frames = self.reader.load_frames(video)
        self.assertEqual([f.frame_index for f in frames], [0, 1, 2, 3])
        self.assertEqual(frames[2].labels, ())
        first = {lab.track_id: lab for lab in frames[0].labels}
        self.assertEqual(
            (first["1"].category, first["1"].category_id, first["1"].ignore), ("car", 3, False)
        )
        self.assertTrue(first["2"].crowd and first["2"].ignore and not first["2"].distractor)
        self.assertEqual(first["2"].category_id, 1)
        # Distractor: flagged, carrying the id of the class it maps to (other vehicle -> car).
        self.assertTrue(first["3"].distractor and first["3"].ignore)
        self.assertEqual(first["3"].category_id, 3)
        bus = frames[1].labels[0]
        self.assertEqual((bus.category_id, bus.occluded, bus.ignore), (5, True, False))
        self.assertEqual(first["1"].box, (1.0, 2.0, 10.0, 12.0))

    def test_image_paths(self):
        frames = self.reader.load_frames(self.reader.samples("val")[0])
        self.assertEqual(
            frames[3].image_path,
            os.path.join(self.root, "images", "track", "val", "v0", "v0-0000004.jpg"),
        )
        self.assertEqual(self.reader.load_image(frames[3]).shape, (12, 16, 3))
        # Without `name` the path is built as <video>-<frameIndex + 1:07d>.jpg.
        data = current_format()
        del data[2]["name"]
        path = write_json(self.root, "labels/box_track_20", "val", "v0", data)
        frames = bdd100k.parse_video_json(path, "/x/v0")
        self.assertEqual(frames[2].image_path, "/x/v0/v0-0000003.jpg")

    def test_tracks_and_pairs(self):
        tracks, names = self.reader.load_tracks(self.reader.samples("val")[0])
        self.assertEqual(names, ["1", "2", "3", "4"])
        self.assertLen(tracks, 4)
        self.assertLen(tracks[2].track_ids, 0)
        np.testing.assert_array_equal(tracks[1].track_ids, [3, 0, 1])
        np.testing.assert_array_equal(tracks[0].ignore, [False, True, True])
        pairs = bdd100k.tracking_pairs([tracks], gaps=[1, 2, 3])
        got = [(p.video, p.gap, p.frame_a, p.frame_b, p.track_ids.tolist()) for p in pairs]
        self.assertEqual(got, [(0, 1, 0, 1, [0, 1]), (0, 2, 1, 3, [0]), (0, 3, 0, 3, [0, 2])])
        self.assertEqual(got, brute_force_pairs([tracks], [1, 2, 3]))
        gap3 = pairs[-1]
        np.testing.assert_array_equal(gap3.boxes_a[0], CAR[0])
        np.testing.assert_array_equal(gap3.boxes_b[0], CAR[3])
        np.testing.assert_array_equal(gap3.ignore_a, [False, True])
        np.testing.assert_array_equal(gap3.ignore_b, [False, True])
        np.testing.assert_array_equal(gap3.category_ids, [3, 3])
        everything = bdd100k.tracking_pairs([tracks], gaps=[1], keep_empty=True)
        self.assertEqual(
            [(p.frame_a, len(p.track_ids)) for p in everything], [(0, 2), (1, 0), (2, 0)]
        )

    def test_pairs_on_random_tuples_match_brute_force(self):
        rng = np.random.default_rng(0)
        videos = []
        for _ in range(3):
            frames = []
            for _ in range(6):
                ids = rng.choice(10, size=rng.integers(0, 6), replace=False)
                frames.append((rng.uniform(0, 50, (len(ids), 4)), ids, np.ones(len(ids), int)))
            videos.append(frames)
        pairs = bdd100k.tracking_pairs(videos, gaps=[1, 3])
        as_tracks = [[bdd100k.as_frame_tracks(f) for f in v] for v in videos]
        got = [(p.video, p.gap, p.frame_a, p.frame_b, p.track_ids.tolist()) for p in pairs]
        self.assertEqual(got, brute_force_pairs(as_tracks, [1, 3]))
        for p in pairs:
            a, b = as_tracks[p.video][p.frame_a], as_tracks[p.video][p.frame_b]
            for k, track in enumerate(p.track_ids):
                np.testing.assert_array_equal(p.boxes_a[k], a.boxes[a.track_ids == track][0])
                np.testing.assert_array_equal(p.boxes_b[k], b.boxes[b.track_ids == track][0])
        with self.assertRaisesRegex(DatasetError, "video 0, frame 0: track ids"):
            bdd100k.tracking_pairs([[(np.zeros((2, 4)), [5, 5], [1, 1])]], [1])
        with self.assertRaisesRegex(ValueError, "positive"):
            bdd100k.tracking_pairs([], [0])

    def test_legacy_format(self):
        legacy = self.enterContext(tempfile.TemporaryDirectory())
        write_json(legacy, "labels-20/box-track", "val", "v1", legacy_format())
        reader = bdd100k.BDD100KReader(legacy)
        (video,) = reader.samples("val")
        frames = reader.load_frames(video)
        self.assertEqual([f.frame_index for f in frames], [0, 1])
        rider, motor = frames[0].labels
        self.assertEqual(
            (rider.category_id, rider.occluded, rider.truncated, rider.crowd),
            (2, True, True, False),
        )
        self.assertEqual(
            (motor.category, motor.category_id, motor.occluded), ("motorcycle", 7, False)
        )
        self.assertTrue(frames[0].image_path.endswith("images/track/val/v1/v1-0000001.jpg"))

    def test_unknown_category_reported(self):
        data = current_format()
        data[0]["labels"].append(_label("9", "traffic light", (0, 0, 1, 1)))
        write_json(self.root, "labels/box_track_20", "val", "v0", data)
        with self.assertLogs(level="WARNING"):
            tracks, names = self.reader.load_tracks(self.reader.samples("val")[0])
        self.assertEqual(self.reader.unknown_categories, [(self.label_path, "traffic light")])
        self.assertNotIn("9", names)

    def test_malformed_input(self):
        with self.assertRaisesRegex(DatasetError, "labels/box_track_20/train/<video>.json or"):
            self.reader.samples("train")
        cases = []
        data = current_format()
        del data[1]["frameIndex"], data[1]["name"]
        cases.append((data, "frame 1 has no valid 'frameIndex'"))
        data = current_format()
        data[0]["labels"][0]["box2d"] = {"x1": 1}
        cases.append((data, "frame 0 label 0: label '1' has box2d"))
        data = current_format()
        data[0]["labels"][0]["box2d"]["x2"] = -5
        cases.append((data, "x2 < x1"))
        data = current_format()
        data[3]["frameIndex"] = 0
        cases.append((data, "duplicate frame indices"))
        data = current_format()
        data[0]["videoName"] = "v9"
        cases.append((data, "videoName 'v9'; expected 'v0'"))
        cases.append(({"a": 1}, "expected a list of frames"))
        for data, message in cases:
            write_json(self.root, "labels/box_track_20", "val", "v0", data)
            with self.assertRaisesRegex(DatasetError, message):
                self.reader.load_frames(self.reader.samples("val")[0])
        with open(self.label_path, "w") as f:
            f.write("[{")
        with self.assertRaisesRegex(DatasetError, "v0.json: malformed JSON"):
            self.reader.load_frames(self.reader.samples("val")[0])


if __name__ == "__main__":
    absltest.main()
