"""Every reader on real-format files written by other public projects (not by vitjax's authors).

The files live outside the repository; the environment variable VITJAX_FIXTURES names their folder
(`.ci/run` sets it, so CI always runs this module; its SOURCES.md says where each file came from).
Without the variable the module is skipped with that reason; a variable naming a missing folder is
an error. Expected values come from the files' sources (published MOT17 statistics, the official
Cityscapes label table of cityscapesscripts, the ADE20K objectInfo150.txt) or from decoding the
files independently (tifffile, Pillow, ElementTree, numpy.loadtxt).
"""

from tests import test_util  # noqa: F401  # isort: skip

import json
import os
import shutil
import tempfile
import unittest
import xml.etree.ElementTree as ET

import ml_collections
import numpy as np
import tifffile
from absl.testing import absltest, parameterized
from PIL import Image

from vitjax.data import ade20k, bdd100k, cityscapes, fair1m, mot17, resisc45, ucmerced
from vitjax.data.loaders import segmentation as segmentation_loaders
from vitjax.errors import DatasetError
from vitjax.experiments import scalemae_knn, tracking

ENV = "VITJAX_FIXTURES"
ROOT = os.environ.get(ENV, "")

# Class-1 (pedestrian, consider flag 1) boxes and tracks of the MOT17 train sequences, as
# published by MOTChallenge (and listed in the fixtures' SOURCES.md).
MOT17_PUBLISHED = {
    "MOT17-02-FRCNN": (18581, 62),
    "MOT17-04-FRCNN": (47557, 83),
    "MOT17-05-FRCNN": (6917, 133),
    "MOT17-09-FRCNN": (5325, 26),
    "MOT17-10-FRCNN": (12839, 57),
    "MOT17-11-FRCNN": (9436, 75),
    "MOT17-13-FRCNN": (11642, 110),
}


def setUpModule():
    if not ROOT:
        raise unittest.SkipTest(
            f"{ENV} is not set: these tests read real-format dataset files kept outside the "
            f"repository; set {ENV}=<folder> to run them (CI's .ci/run sets it)"
        )
    if not os.path.isdir(ROOT):
        raise FileNotFoundError(f"{ENV}={ROOT!r} is not a folder; expected the fixtures folder")


def fixture(*parts: str) -> str:
    path = os.path.join(ROOT, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: fixture missing from {ENV}={ROOT!r}")
    return path


def tempdir(test) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_fixtures_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def read_png(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


@test_util.requires("cityscapesscripts")
class CityscapesFixtureTest(absltest.TestCase):
    """mmsegmentation's 256x128 Cityscapes val frame with labelIds, labelTrainIds, instanceIds."""

    def setUp(self):
        super().setUp()
        self.root = fixture("cityscapes", "mmseg_pseudo")
        self.stem = "frankfurt_000000_000294"
        self.label_dir = os.path.join(self.root, "gtFine", "val", "frankfurt")

    def official_train_ids(self) -> np.ndarray:
        from cityscapesscripts.helpers import labels as cs_labels

        label_ids = read_png(os.path.join(self.label_dir, f"{self.stem}_gtFine_labelIds.png"))
        lut = np.full(256, 255, np.uint8)
        for label in cs_labels.labels:
            if 0 <= label.id < 256 and 0 <= label.trainId < 255:
                lut[label.id] = label.trainId
        return lut[label_ids]

    def test_pairing_and_official_train_ids(self):
        reader = cityscapes.CityscapesReader(self.root, label_source="label_ids")
        self.assertEqual(reader.cities("val"), ["frankfurt"])
        (sample,) = reader.samples("val")
        self.assertEqual(sample.stem, self.stem)
        self.assertIsNotNone(sample.train_ids_path)
        image, labels = reader.load(sample)
        self.assertEqual((image.shape, image.dtype), ((128, 256, 3), np.uint8))
        oracle = self.official_train_ids()
        np.testing.assert_array_equal(labels, oracle)
        self.assertTrue(set(np.unique(labels).tolist()) <= set(range(19)) | {255})
        with self.assertRaisesRegex(DatasetError, "train"):
            reader.samples("train")  # only val exists

    def test_derived_train_ids_file_disagrees_at_77_boundary_pixels(self):
        # The sample's labelTrainIds.png was downscaled apart from its labelIds.png (SOURCES.md).
        trust = cityscapes.CityscapesReader(self.root, label_source="train_ids", cross_check=False)
        (sample,) = trust.samples("val")
        train_ids = trust.load_train_ids(sample)
        np.testing.assert_array_equal(train_ids, read_png(sample.train_ids_path))
        self.assertEqual(int(np.count_nonzero(train_ids != self.official_train_ids())), 77)
        with self.assertRaisesRegex(
            DatasetError, r"77 of 32768 pixels differ.*label_source='label_ids'.*cross_check=False"
        ):
            cityscapes.CityscapesReader(self.root).load_train_ids(sample)

    def test_experiment_loader_uses_the_official_label_ids(self):
        data_cfg = ml_collections.ConfigDict(
            dict(root=self.root, splits="seeded", eval_per_group=1, train_per_group=1)
        )
        raw, class_names = segmentation_loaders.load_cityscapes(data_cfg, 0, "eval", 1)
        self.assertLen(class_names, 19)
        self.assertEqual(raw.image_ids, [self.stem])
        np.testing.assert_array_equal(raw.label_maps[0], self.official_train_ids())


class ADE20KFixtureTest(absltest.TestCase):
    """The official SceneParsing toolkit's three validation samples and objectInfo150.txt."""

    def setUp(self):
        super().setUp()
        self.root = fixture("ade20k", "sceneparsing_sample", "ADEChallengeData2016")

    def test_150_classes_and_annotations(self):
        reader = ade20k.ADE20KReader(self.root)
        names = reader.class_names()
        self.assertLen(names, 150)
        self.assertEqual(
            (names[0], names[1], names[2], names[149]), ("wall", "building", "sky", "flag")
        )
        samples = reader.samples("validation")
        self.assertEqual([s.stem for s in samples], [f"ADE_val_0000000{i}" for i in (1, 2, 3)])
        for sample in samples:
            image, raw = reader.load(sample, view="raw")
            with Image.open(sample.image_path) as im:
                self.assertEqual(image.shape, (im.height, im.width, 3))
            png = read_png(sample.annotation_path)
            np.testing.assert_array_equal(raw, png)
            self.assertLessEqual(int(raw.max()), 150)
            reduced = reader.load_annotation(sample, view="reduced")
            np.testing.assert_array_equal(
                reduced, np.where(png == 0, 255, png.astype(np.int64) - 1).astype(np.uint8)
            )
        with self.assertRaisesRegex(DatasetError, "images/training"):
            reader.samples("training")  # the sample holds validation images only

    def test_experiment_loader_on_the_validation_pool(self):
        data_cfg = ml_collections.ConfigDict(
            dict(
                root=self.root,
                splits="seeded",
                eval_per_group=1,
                ade20k_train_pool=2500,
                ade20k_presence_grid=(28, 42),
            )
        )
        segmentation_loaders.ade20k_presence.cache_clear()
        with self.assertLogs(level="WARNING") as logs:
            raw, class_names = segmentation_loaders.load_ade20k(data_cfg, 0, "eval", 1)
        # Three images cannot give every class one: a single warning names the short classes.
        (line,) = [m for m in logs.output if "fewer than k=1" in m]
        self.assertIn("150 (0)", line)
        self.assertEqual(len(logs.output), 1)
        self.assertLen(class_names, 150)
        self.assertTrue(set(raw.image_ids) <= {f"ADE_val_0000000{i}" for i in (1, 2, 3)})
        self.assertNotEmpty(raw.image_ids)
        for stem, labels in zip(raw.image_ids, raw.label_maps):
            png = read_png(os.path.join(self.root, "annotations", "validation", stem + ".png"))
            np.testing.assert_array_equal(labels, np.where(png == 0, 255, png - 1))


def xml_objects(path: str) -> list[tuple[str, np.ndarray]]:
    """(name, 4 corners) of each object, read with ElementTree directly (the oracle)."""
    out = []
    for obj in ET.parse(path).getroot().iter("object"):
        name = obj.find("possibleresult/name").text
        points = [[float(v) for v in p.text.split(",")] for p in obj.iter("point")]
        out.append((name, np.array(points[:4])))
    return out


class FAIR1MFixtureTest(parameterized.TestCase):
    """torchgeo's FAIR1M test data: the 2.0 split layout (labelXml) and the flat 2021 one."""

    def check_labelled(self, reader, samples):
        self.assertNotEmpty(samples)
        for sample in samples:
            self.assertIsNotNone(sample.label_path)
            annotation = reader.load_annotation(sample)
            expected = xml_objects(sample.label_path)
            self.assertEqual([o.name for o in annotation.objects], [n for n, _ in expected])
            for obj, (_, corners) in zip(annotation.objects, expected):
                np.testing.assert_allclose(obj.points, corners)
                self.assertGreater(obj.fine_id, 0)
            tif = tifffile.imread(sample.image_path)
            np.testing.assert_array_equal(reader.load_image(sample), tif[..., :3])
            masks = reader.load_masks(sample)
            # The unit square at (0, 0) covers exactly pixel (0, 0) of the 2 x 2 image.
            expected_fine = np.zeros((2, 2), np.uint8)
            expected_fine[0, 0] = fair1m.fine_id(expected[0][0])
            np.testing.assert_array_equal(masks.fine, expected_fine)
        self.assertEmpty(reader.unknown_names)

    def test_split_layout(self):
        reader = fair1m.FAIR1MReader(fixture("fair1m", "torchgeo"))
        self.assertEqual(reader.splits(), ["train", "validation", "test"])
        self.assertEqual(reader.parts("train"), ["train/part1", "train/part2"])
        self.assertEqual(reader.version, "v2.0")
        self.check_labelled(reader, reader.samples("train"))
        self.check_labelled(reader, reader.samples("validation"))
        test = reader.samples("test")
        self.assertEqual([s.stem for s in test], ["0", "1", "2", "3"])
        self.assertTrue(all(s.label_path is None for s in test))
        with self.assertRaisesRegex(DatasetError, "no 0.xml in labelXml or labelXmls"):
            reader.load_annotation(test[0])

    def test_flat_2021_layout_is_read_as_train(self):
        root = fixture("fair1m", "torchgeo_2021_flat")
        reader = fair1m.FAIR1MReader(root)
        self.assertEqual(reader.splits(), ["train"])
        self.assertEqual(reader.version, "v1.0")
        samples = reader.samples("train")
        self.assertEqual([s.stem for s in samples], ["0", "1", "2", "3"])
        for sample in samples:
            self.assertEqual(os.path.dirname(sample.label_path), os.path.join(root, "labelXmls"))
        self.check_labelled(reader, samples)


class SceneFixtureTest(absltest.TestCase):
    """torchgeo's UC Merced (irregular sizes) and RESISC45 test images."""

    def test_uc_merced_irregular_sizes(self):
        root = fixture("ucmerced", "torchgeo")
        raw = ucmerced.UCMercedReader(root, image_size=None, size_policy="none")
        samples = raw.samples()
        self.assertEqual(
            [(s.stem, s.label) for s in samples],
            [
                ("agricultural00", 0),
                ("agricultural01", 0),
                ("agricultural02", 0),
                ("airplane00", 1),
            ],
        )
        shapes = []
        for sample in samples:
            image = raw.load_image(sample)
            np.testing.assert_array_equal(image, tifffile.imread(sample.path)[..., :3])
            shapes.append(image.shape[:2])
        self.assertEqual(shapes, [(256, 256), (249, 256), (247, 247), (256, 256)])
        for policy in ("resize", "pad"):
            reader = ucmerced.UCMercedReader(root, size_policy=policy)
            self.assertEqual(reader.load_image(samples[2]).shape, (256, 256, 3))
        padded = ucmerced.UCMercedReader(root, size_policy="pad").load_image(samples[1])
        np.testing.assert_array_equal(padded[:249], raw.load_image(samples[1]))
        self.assertFalse(padded[249:].any())

    def test_resisc45(self):
        reader = resisc45.RESISC45Reader(fixture("resisc45", "torchgeo"))
        samples = reader.samples()
        self.assertLen(samples, 9)
        self.assertEqual([s.label for s in samples], [0] * 3 + [1] * 3 + [2] * 3)
        self.assertEqual(samples[3].stem, "airport_001")
        for sample in samples:
            with Image.open(sample.path) as im:
                np.testing.assert_array_equal(
                    reader.load_image(sample), np.asarray(im.convert("RGB"))
                )

    def test_hidden_entries_are_skipped_with_a_note(self):
        for name, source, reader_class, image_dir in (
            (
                "ucmerced",
                ("ucmerced", "torchgeo"),
                ucmerced.UCMercedReader,
                os.path.join("UCMerced_LandUse", "Images"),
            ),
            ("resisc45", ("resisc45", "torchgeo"), resisc45.RESISC45Reader, "NWPU-RESISC45"),
        ):
            with self.subTest(name):
                root = os.path.join(tempdir(self), name)
                shutil.copytree(fixture(*source), root)
                clean = [(s.stem, s.label) for s in reader_class(root).samples()]
                classes = os.path.join(root, image_dir)
                first = sorted(os.listdir(classes))[0]
                # What Jupyter, Finder and macOS zip archives leave beside the data.
                os.makedirs(os.path.join(classes, ".ipynb_checkpoints"))
                os.makedirs(os.path.join(classes, "__MACOSX", first))
                for junk in (
                    os.path.join(classes, ".DS_Store"),
                    os.path.join(classes, first, ".DS_Store"),
                    os.path.join(classes, first, f"._{first}_001.jpg"),
                    os.path.join(classes, first, f"._{first}00.tif"),
                ):
                    with open(junk, "wb") as f:
                        f.write(b"\x00\x05\x16\x07 AppleDouble")
                with self.assertLogs(level="INFO") as logs:
                    got = [(s.stem, s.label) for s in reader_class(root).samples()]
                self.assertEqual(got, clean)
                text = "\n".join(logs.output)
                for skipped in (".ipynb_checkpoints", "__MACOSX", ".DS_Store", f"._{first}"):
                    self.assertIn(skipped, text)

    def test_class_smaller_than_the_shot_count_is_a_named_warning(self):
        reader = ucmerced.UCMercedReader(fixture("ucmerced", "torchgeo"), train_per_class=2)
        with self.assertLogs(level="WARNING") as logs:
            train = reader.samples("train")
        self.assertRegex("\n".join(logs.output), r"airplane \(1\)")
        self.assertEqual(sorted(s.stem for s in train if s.label == 1), ["airplane00"])
        self.assertNotIn(1, [s.label for s in reader.samples("test")])

    def test_scalemae_knn_loader(self):
        from configs import scalemae as scalemae_config

        cfg = scalemae_config.scalemae_knn_defaults()
        cfg.ucmerced.root = fixture("ucmerced", "torchgeo")
        cfg.resisc45.root = fixture("resisc45", "torchgeo")
        cfg.ucmerced.train_per_class = cfg.resisc45.train_per_class = 1
        for name, train_count, test_count in (("ucmerced", 2, 2), ("resisc45", 3, 6)):
            split = scalemae_knn.load_split(name, cfg, 0)
            self.assertLen(split.train_labels, train_count)
            self.assertLen(split.test_labels, test_count)
            self.assertEqual(split.load_test(0).shape, (256, 256, 3))


class BDD100KFixtureTest(absltest.TestCase):
    """Real BDD100K frames with vis4d's scalabel labels, and the official toolkit's test cases."""

    def test_vis4d_videos(self):
        root = fixture("bdd100k", "vis4d_track", "bdd100k")
        reader = bdd100k.BDD100KReader(root)
        videos = reader.samples("val")
        self.assertEqual([v.name for v in videos], ["00091078-875c1f73", "b1c66a42-6f7d68ca"])
        for video in videos:
            with open(video.label_path) as f:
                raw = json.load(f)
            frames = reader.load_frames(video)
            self.assertEqual([fr.frame_index for fr in frames], [r["frameIndex"] for r in raw])
            tracks, names = reader.load_tracks(video)
            self.assertLen(tracks, raw[-1]["frameIndex"] + 1)
            for record in raw:
                frame = tracks[record["frameIndex"]]
                boxes = [
                    [lab["box2d"][k] for k in ("x1", "y1", "x2", "y2")] for lab in record["labels"]
                ]
                np.testing.assert_allclose(frame.boxes, np.array(boxes, np.float32))
                self.assertEqual(
                    [names[t] for t in frame.track_ids], [lab["id"] for lab in record["labels"]]
                )
            image = reader.load_image(frames[0])
            self.assertEqual(image.shape, (720, 1280, 3))
        self.assertEmpty(reader.unknown_categories)

    def test_2020_folder_names_capitalised_attributes_and_null_labels(self):
        reader = bdd100k.BDD100KReader(fixture("bdd100k", "bdd100k_ignore_example", "bdd100k"))
        self.assertTrue(
            reader.label_dir("val").endswith(os.path.join("labels-20", "box-track", "val"))
        )
        (video,) = reader.samples("val")
        frames = reader.load_frames(video)
        self.assertEqual([fr.frame_index for fr in frames], [0, 1])
        # frameIndex 0 and 1 name the video's frames 166 and 167: the `name` field wins.
        self.assertEqual(
            [os.path.basename(fr.image_path) for fr in frames],
            ["00091078-875c1f73-0000166.jpg", "00091078-875c1f73-0000167.jpg"],
        )
        self.assertEqual(reader.load_image(frames[1]).shape, (720, 1280, 3))
        distractor, person = frames[0].labels
        # 'other person' is a distractor of class 1; 'person' is the toolkit alias of pedestrian.
        self.assertEqual(
            (
                distractor.category,
                distractor.category_id,
                distractor.distractor,
                distractor.occluded,
            ),
            ("other person", 1, True, True),
        )
        self.assertEqual(
            (person.category, person.category_id, person.distractor, person.occluded),
            ("pedestrian", 1, False, True),
        )
        self.assertEqual(frames[1].labels, ())  # "labels": null
        tracks, names = reader.load_tracks(video)
        self.assertEqual(names, ["00109430", "00109431"])
        np.testing.assert_array_equal(tracks[0].ignore, [True, False])
        self.assertEmpty(tracks[1].boxes)

    def test_poly2d_only_labels_are_refused_clearly(self):
        reader = bdd100k.BDD100KReader(fixture("bdd100k", "bdd100k_polyonly_example", "bdd100k"))
        (video,) = reader.samples("val")
        with self.assertRaisesRegex(
            DatasetError, r"b1c81faa-3df17267\.json.*'a' has poly2d but no box2d"
        ):
            reader.load_tracks(video)

    def test_an_id_twice_in_one_frame_is_refused(self):
        # The same negative case with boxes added: its id 'a' appears twice in frame 0.
        source = fixture(
            "bdd100k",
            "bdd100k_polyonly_example",
            "bdd100k",
            "labels",
            "box_track_20",
            "val",
            "b1c81faa-3df17267.json",
        )
        with open(source) as f:
            data = json.load(f)
        ids = [lab["id"] for lab in data[0]["labels"]]
        self.assertGreater(ids.count("a"), 1)
        for frame in data:
            for lab in frame["labels"] or []:
                lab["box2d"] = {"x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0}
        path = os.path.join(tempdir(self), "b1c81faa-3df17267.json")
        with open(path, "w") as f:
            json.dump(data, f)
        with self.assertRaisesRegex(DatasetError, r"frame 0: ids \['a'\] appear twice"):
            bdd100k.parse_video_json(path, os.path.dirname(path))

    def test_tracking_loader(self):
        root = fixture("bdd100k", "bdd100k_ignore_example", "bdd100k")
        cfg = ml_collections.ConfigDict(
            dict(
                dataset="bdd100k",
                root=root,
                split="val",
                num_videos=1,
                max_frames=0,
                frame_rate=5.0,
            )
        )
        (video,) = tracking.load_videos(cfg, 0)
        self.assertEqual(video.frame_hw, (720, 1280))
        self.assertLen(video.tracks, 2)
        self.assertEqual(video.load_frame(0).shape, (720, 1280, 3))


class MOT17FixtureTest(absltest.TestCase):
    """The complete MOT17 train ground truth (py-motmetrics) with boxmot's first four frames."""

    def setUp(self):
        super().setUp()
        self.root = fixture("mot17", "motmetrics_full_gt_boxmot_frames")

    def test_published_pedestrian_statistics(self):
        reader = mot17.MOT17Reader(self.root)
        sequences = reader.samples("train")
        self.assertEqual([s.name for s in sequences], sorted(MOT17_PUBLISHED))
        for seq in sequences:
            gt = reader.load_gt(seq)
            scored = mot17.pedestrian_mask(gt)
            got = (int(scored.sum()), len(np.unique(gt.track_ids[scored])))
            self.assertEqual(got, MOT17_PUBLISHED[seq.name], seq.name)
            # numpy's own parse of the file agrees row by row (0-based frames and corners).
            table = np.loadtxt(os.path.join(seq.path, "gt", "gt.txt"), delimiter=",", ndmin=2)
            np.testing.assert_array_equal(gt.frames, table[:, 0] - 1)
            np.testing.assert_allclose(gt.boxes[:, :2], table[:, 2:4] - 1)
            np.testing.assert_allclose(gt.boxes[:, 2:] - gt.boxes[:, :2], table[:, 4:6], atol=1e-3)
        mot05 = sequences[2]
        self.assertEqual(
            (mot05.width, mot05.height, mot05.frame_rate, mot05.length), (640, 480, 14.0, 837)
        )

    def test_frames_and_detector_copies(self):
        reader = mot17.MOT17Reader(self.root)
        seq = reader.samples("train")[0]
        for frame in range(4):
            self.assertEqual(reader.load_image(seq, frame).shape, (1080, 1920, 3))
        with self.assertRaisesRegex(DatasetError, "000005.jpg"):
            reader.load_image(seq, 4)  # the fixture keeps the first four frames
        copies = mot17.MOT17Reader(self.root, detector=None).samples("train")
        names = [s.name for s in copies if s.name.startswith("MOT17-09")]
        self.assertEqual(names, ["MOT17-09-DPM", "MOT17-09-FRCNN", "MOT17-09-SDP"])
        gts = [mot17.MOT17Reader(self.root, None).load_gt(s) for s in copies if s.name in names]
        for other in gts[1:]:
            np.testing.assert_array_equal(other.boxes, gts[0].boxes)

    def test_mot15_ten_column_gt_is_refused(self):
        with self.assertRaisesRegex(
            DatasetError, r"gt\.txt: line 1 has 10 values; expected 9.*MOT15"
        ):
            mot17.parse_gt(fixture("mot17_neg", "mot15_tud_campus", "gt", "gt.txt"))

    def test_tracking_loader(self):
        cfg = ml_collections.ConfigDict(
            dict(
                dataset="mot17",
                root=self.root,
                split="train",
                detector="FRCNN",
                num_videos=1,
                max_frames=4,
                min_visibility=0.0,
            )
        )
        (video,) = tracking.load_videos(cfg, 0)
        self.assertEqual((video.name, video.frame_hw), ("MOT17-02-FRCNN", (1080, 1920)))
        self.assertLen(video.tracks, 4)
        self.assertEqual(video.load_frame(3).shape, (1080, 1920, 3))


if __name__ == "__main__":
    absltest.main()
