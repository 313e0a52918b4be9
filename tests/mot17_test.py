"""Tests of the MOT17 reader: seqinfo, gt conversion to 0-based, official filters."""

from tests import test_util  # noqa: F401  # isort: skip

import os
import tempfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from vitjax.data import bdd100k, mot17
from vitjax.errors import DatasetError

SEQINFO = """[Sequence]
name={name}
imDir=img1
frameRate=30
seqLength=3
imWidth=64
imHeight=48
imExt=.jpg
"""
# frame, id, left, top, width, height, consider, class, visibility (all 1-based)
GT_LINES = [
    "1,1,10,5,20,30,1,1,1.0",  # pedestrian, scored
    "3,1,12,6,20,30,1,1,0.3",  # same id in frame 3, 30 % visible
    "1,2,30,10,10,20,0,1,1.0",  # pedestrian with consider flag 0
    "2,3,5,5,8,16,1,7,0.0",  # static person (distractor)
    "2,4,40,20,5,10,0,8,1.0",  # distractor class
    "3,5,1,1,10,10,0,9,1.0",  # occluder
]


def write_sequence(root, name="MOT17-02-FRCNN", gt_lines=GT_LINES, seqinfo=SEQINFO):
    folder = os.path.join(root, "MOT17", "train", name)
    os.makedirs(os.path.join(folder, "img1"))
    os.makedirs(os.path.join(folder, "gt"))
    for frame in range(1, 4):
        Image.fromarray(np.full((48, 64, 3), 40 * frame, np.uint8)).save(
            os.path.join(folder, "img1", f"{frame:06d}.jpg")
        )
    with open(os.path.join(folder, "seqinfo.ini"), "w") as f:
        f.write(seqinfo.format(name=name))
    with open(os.path.join(folder, "gt", "gt.txt"), "w") as f:
        f.write("\n".join(gt_lines) + "\n")
    return folder


class MOT17Test(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.enterContext(tempfile.TemporaryDirectory())
        self.folder = write_sequence(self.root)
        self.reader = mot17.MOT17Reader(self.root)  # the parent of MOT17/
        (self.sequence,) = self.reader.samples("train")

    def test_seqinfo(self):
        s = self.sequence
        self.assertEqual((s.name, s.detector, s.split), ("MOT17-02-FRCNN", "FRCNN", "train"))
        self.assertEqual((s.length, s.width, s.height, s.frame_rate), (3, 64, 48, 30.0))
        self.assertEqual((s.image_dir, s.image_ext), ("img1", ".jpg"))

    def test_gt_is_converted_to_zero_based(self):
        gt = self.reader.load_gt(self.sequence)
        oracle = np.loadtxt(os.path.join(self.folder, "gt", "gt.txt"), delimiter=",")
        np.testing.assert_array_equal(gt.frames, oracle[:, 0] - 1)
        np.testing.assert_array_equal(gt.track_ids, oracle[:, 1] - 1)
        np.testing.assert_allclose(gt.boxes[:, 0], oracle[:, 2] - 1)
        np.testing.assert_allclose(gt.boxes[:, 3], oracle[:, 3] - 1 + oracle[:, 5])
        np.testing.assert_array_equal(gt.boxes[0], [9, 4, 29, 34])
        np.testing.assert_array_equal(gt.consider, oracle[:, 6] == 1)
        np.testing.assert_array_equal(gt.classes, oracle[:, 7])
        np.testing.assert_allclose(gt.visibility, oracle[:, 8])

    def test_filters(self):
        gt = self.reader.load_gt(self.sequence)
        np.testing.assert_array_equal(
            mot17.pedestrian_mask(gt), [True, True, False, False, False, False]
        )
        np.testing.assert_array_equal(
            mot17.pedestrian_mask(gt, min_visibility=0.5), [True, False, False, False, False, False]
        )
        np.testing.assert_array_equal(
            mot17.distractor_mask(gt), [False, False, False, True, True, False]
        )
        self.assertLen(gt.select(mot17.distractor_mask(gt)).frames, 2)

    def test_tracks_and_pairs(self):
        tracks = self.reader.load_tracks(self.sequence)
        self.assertLen(tracks, 3)
        np.testing.assert_array_equal(tracks[0].track_ids, [0])  # flag-0 pedestrian left out
        np.testing.assert_array_equal(tracks[1].track_ids, [2, 3])
        np.testing.assert_array_equal(tracks[1].ignore, [True, True])  # distractors
        np.testing.assert_array_equal(tracks[2].track_ids, [0])  # occluder left out
        self.assertFalse(tracks[2].ignore[0])
        visible = self.reader.load_tracks(self.sequence, min_visibility=0.5)
        self.assertTrue(visible[2].ignore[0])
        bare = self.reader.load_tracks(self.sequence, include_distractors=False)
        self.assertLen(bare[1].track_ids, 0)
        (pair,) = bdd100k.tracking_pairs([tracks], gaps=[1, 2])
        self.assertEqual((pair.frame_a, pair.frame_b, pair.track_ids.tolist()), (0, 2, [0]))
        np.testing.assert_array_equal(pair.boxes_b[0], [11, 5, 31, 35])

    def test_images(self):
        path = self.reader.image_path(self.sequence, 0)
        self.assertTrue(path.endswith("MOT17-02-FRCNN/img1/000001.jpg"))
        self.assertEqual(self.reader.load_image(self.sequence, 2).shape, (48, 64, 3))
        with self.assertRaisesRegex(DatasetError, "000004.jpg: image file not found"):
            self.reader.load_image(self.sequence, 3)

    def test_detector_copies(self):
        write_sequence(self.root, "MOT17-02-SDP")
        self.assertEqual([s.name for s in self.reader.samples("train")], ["MOT17-02-FRCNN"])
        every = mot17.MOT17Reader(os.path.join(self.root, "MOT17"), detector=None)
        self.assertEqual(
            [s.name for s in every.samples("train")], ["MOT17-02-FRCNN", "MOT17-02-SDP"]
        )

    def test_malformed_input(self):
        with self.assertRaisesRegex(DatasetError, "expected the MOT17 layout"):
            self.reader.samples("test")
        gt_path = os.path.join(self.folder, "gt", "gt.txt")
        for lines, message in (
            (["1,1,10,5,20,30,1,1"], "line 1 has 8 values; expected 9"),
            (["1,1,10,5,20,30,1,1,1.0", "4,1,10,5,20,30,1,1,1.0"], "line 2: frame 4 beyond"),
            (["0,1,10,5,20,30,1,1,1.0"], "expected frame and id >= 1"),
            (["1,1,a,5,20,30,1,1,1.0"], "line 1: non-numeric"),
            (["1,1,10,5,20,30,1,1,1.0", "1,1,11,5,20,30,1,1,1.0"], "id appears twice"),
        ):
            with open(gt_path, "w") as f:
                f.write("\n".join(lines))
            with self.assertRaisesRegex(DatasetError, message):
                self.reader.load_gt(self.sequence)
        ini = os.path.join(self.folder, "seqinfo.ini")
        with open(ini, "w") as f:
            f.write(SEQINFO.format(name="MOT17-02-FRCNN").replace("seqLength=3\n", ""))
        with self.assertRaisesRegex(
            DatasetError, r"seqinfo.ini: \[Sequence\] lacks keys \['seqLength'\]"
        ):
            self.reader.samples("train")
        with open(ini, "w") as f:
            f.write(SEQINFO.format(name="MOT17-02-FRCNN").replace("imWidth=64", "imWidth=65"))
        (sequence,) = self.reader.samples("train")
        with self.assertRaisesRegex(DatasetError, "imWidth=65"):
            self.reader.load_image(sequence, 0)
        with open(ini, "w") as f:
            f.write("name=x\n")
        with self.assertRaisesRegex(DatasetError, "seqinfo.ini: malformed ini"):
            self.reader.samples("train")


if __name__ == "__main__":
    absltest.main()
