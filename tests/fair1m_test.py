"""Tests of the FAIR1M reader: XML parsing, categories, rasterisation, split discovery."""

from tests import test_util  # noqa: F401  # isort: skip

import os
import tempfile

import numpy as np
import skimage.draw
from absl.testing import absltest, parameterized
from matplotlib.path import Path as MplPath
from PIL import Image

from vitjax.data import fair1m, tiling
from vitjax.errors import DatasetError

SIZE = 64
BOX = [(8, 8), (24, 8), (24, 20), (8, 20)]  # axis-aligned Boeing737, x 8-24, y 8-20
DIAMOND = [(20, 14), (28, 22), (20, 30), (12, 22)]  # rotated Small Car, centre (20, 22)


def xml_text(objects, width=SIZE, height=SIZE, filename="0.tif") -> str:
    parts = []
    for name, points in objects:
        closed = list(points) + [points[0]]
        pts = "".join(f"<point>{x:.6f},{y:.6f}</point>" for x, y in closed)
        parts.append(
            "<object><coordinate>pixel</coordinate><type>rectangle</type>"
            f"<description>None</description><possibleresult><name>{name}</name>"
            f"</possibleresult><points>{pts}</points></object>"
        )
    return (
        f"<annotation><source><filename>{filename}</filename><origin>GF2/GF3</origin></source>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<objects>{''.join(parts)}</objects></annotation>"
    )


def write_part(root, part, label_dir, stem, objects, size=(SIZE, SIZE)):
    os.makedirs(os.path.join(root, part, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, part, label_dir), exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(os.path.join(root, part, "images", f"{stem}.tif"))
    with open(os.path.join(root, part, label_dir, f"{stem}.xml"), "w") as f:
        f.write(xml_text(objects, filename=f"{stem}.tif"))
    return rgb


def write_fixture(root: str):
    image = write_part(
        root, "train/part1", "labelXml", "0", [("Boeing737", BOX), ("Small Car", DIAMOND)]
    )
    write_part(
        root,
        "validation",
        "labelXmls",
        "1",
        [(" tennis court ", [(2, 2), (10, 2), (10, 6), (2, 6)]), ("Boeing 737", BOX)],
    )
    return image


class FAIR1MTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.enterContext(tempfile.TemporaryDirectory())
        self.image = write_fixture(self.root)
        self.reader = fair1m.FAIR1MReader(self.root)

    def test_category_table(self):
        self.assertLen(fair1m.FINE_NAMES, 38)
        self.assertEqual(fair1m.FINE_NAMES[0], "background")
        self.assertEqual(np.bincount(fair1m.FINE_TO_SUPER).tolist(), [1, 11, 9, 10, 4, 3])
        self.assertEqual(fair1m.fine_id("Boeing737"), 1)
        self.assertEqual(fair1m.fine_id("  small car "), 21)
        self.assertEqual(fair1m.fine_id("BRIDGE"), 37)
        self.assertEqual(fair1m.fine_id("Boeing 737"), -1)
        self.assertEqual(fair1m.FINE_TO_SUPER[fair1m.fine_id("Tennis Court")], 4)
        self.assertEqual(fair1m.SUPER_NAMES[fair1m.FINE_TO_SUPER[21] - 1], "Vehicle")

    def test_parse_xml(self):
        sample = self.reader.samples("train")[0]
        annotation = self.reader.load_annotation(sample)
        self.assertEqual(
            (annotation.filename, annotation.width, annotation.height), ("0.tif", 64, 64)
        )
        names = [(o.name, o.fine_id, o.super_id) for o in annotation.objects]
        self.assertEqual(names, [("Boeing737", 1, 1), ("Small Car", 21, 3)])
        # The closing 5th point is dropped, leaving the 4 corners.
        np.testing.assert_array_equal(annotation.objects[0].points, np.array(BOX, float))
        np.testing.assert_array_equal(annotation.objects[1].points, np.array(DIAMOND, float))

    def test_rasterised_masks_at_known_pixels(self):
        masks = self.reader.load_masks(self.reader.samples("train")[0])
        fine, sup, inst = masks.fine, masks.super, masks.instance
        self.assertEqual(fine.shape, (SIZE, SIZE))
        # Box: pixels with centres inside x in [8, 24), y in [8, 20): rows 8-19, cols 8-23.
        self.assertEqual(fine[8, 8], 1)
        self.assertEqual(fine[19, 8], 1)
        self.assertEqual(fine[8, 23], 1)
        self.assertEqual(fine[7, 8], 0)
        self.assertEqual(fine[8, 7], 0)
        self.assertEqual(fine[20, 8], 0)
        self.assertEqual(fine[8, 24], 0)
        # The diamond (drawn later) overwrites the box where they overlap.
        self.assertEqual((fine[19, 20], sup[19, 20], inst[19, 20]), (21, 3, 2))
        self.assertEqual((fine[15, 20], inst[15, 20]), (21, 2))  # centre (20.5, 15.5) inside
        # Centres exactly on an edge belong to the pixel right of / below it: (20.5, 14.5) and
        # (27.5, 22.5) lie on the diamond's right edges, (19.5, 14.5) on its left edge.
        self.assertEqual((fine[14, 20], inst[14, 20]), (1, 1))
        self.assertEqual((fine[14, 19], inst[14, 19]), (21, 2))
        self.assertEqual((fine[22, 26], fine[22, 27]), (21, 0))
        self.assertEqual(np.count_nonzero(inst == 2), 128)  # area of the diamond = 2 * 8 * 8
        np.testing.assert_array_equal(sup, fair1m.FINE_TO_SUPER[fine])
        box_only = fair1m.rasterize(
            self.reader.load_annotation(self.reader.samples("train")[0]).objects[:1], (SIZE, SIZE)
        )
        self.assertEqual(np.count_nonzero(box_only.fine), 16 * 12)

    @parameterized.parameters(0, 1, 2, 3)
    def test_polygon_fill_matches_oracles(self, seed):
        rng = np.random.default_rng(seed)
        shape = (40, 50)
        centre = rng.uniform([10, 10], [40, 30])
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=6))
        radii = rng.uniform(3, 15, size=6)
        points = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        mask = fair1m.polygon_mask(points, shape)
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
        inside = MplPath(points).contains_points(centres).reshape(shape)
        np.testing.assert_array_equal(mask, inside)
        # skimage takes integer coordinates as pixel centres, hence the half-pixel shift.
        rr, cc = skimage.draw.polygon(points[:, 1] - 0.5, points[:, 0] - 0.5, shape)
        sk = np.zeros(shape, bool)
        sk[rr, cc] = True
        np.testing.assert_array_equal(mask, sk)

    def test_polygon_outside_canvas(self):
        self.assertFalse(fair1m.polygon_mask([(-10, -10), (-2, -10), (-2, -2)], (8, 8)).any())
        clipped = fair1m.polygon_mask([(-4, -4), (4, -4), (4, 4), (-4, 4)], (8, 8))
        self.assertEqual(np.count_nonzero(clipped), 16)

    def test_unknown_names_reported_not_dropped(self):
        sample = self.reader.samples("validation")[0]
        with self.assertLogs(level="WARNING") as logs:
            annotation = self.reader.load_annotation(sample)
        self.assertIn("Boeing 737", "".join(logs.output))
        self.assertEqual([o.fine_id for o in annotation.objects], [32, -1])
        self.assertEqual(annotation.unknown_names, ["Boeing 737"])
        self.assertEqual(self.reader.unknown_names, [(sample.label_path, "Boeing 737")])
        masks = fair1m.rasterize(annotation.objects, (SIZE, SIZE))
        self.assertEqual(set(np.unique(masks.fine).tolist()), {0, 32})
        strict = fair1m.FAIR1MReader(self.root, strict=True)
        with self.assertRaisesRegex(
            DatasetError, r"1.xml: unknown category names \['Boeing 737'\]"
        ):
            strict.load_annotation(sample)

    def test_split_and_version_discovery(self):
        self.assertEqual(self.reader.splits(), ["train", "validation"])
        self.assertEqual(self.reader.parts("train"), ["train/part1"])
        self.assertEqual(self.reader.version, "v2.0")
        val = self.reader.samples("validation")[0]
        self.assertTrue(val.label_path.endswith("validation/labelXmls/1.xml"))
        self.assertIsNone(self.reader.parts("test") or None)
        with self.assertRaisesRegex(DatasetError, "no FAIR1M 'test' folder found; expected one of"):
            self.reader.samples("test")
        v1 = self.enterContext(tempfile.TemporaryDirectory())
        write_part(v1, "train/part1", "labelXml", "0", [])
        write_part(v1, "train/part2", "labelXmls", "7", [])
        write_part(v1, "train/part2", "labelXmls", "10", [])
        reader = fair1m.FAIR1MReader(v1)
        self.assertEqual(reader.version, "v1.0")
        stems = [(s.part, s.stem) for s in reader.samples("train")]
        self.assertEqual(stems, [("train/part1", "0"), ("train/part2", "7"), ("train/part2", "10")])
        custom = fair1m.FAIR1MReader(v1, split_dirs={"mine": ("train/part2",)})
        self.assertLen(custom.samples("mine"), 2)
        with self.assertRaisesRegex(DatasetError, "FAIR1M split 'train'"):
            custom.samples("train")

    def test_missing_root_names_the_expected_layout(self):
        missing = os.path.join(self.root, "no_such_folder")
        with self.assertRaises(DatasetError) as raised:
            fair1m.FAIR1MReader(missing)
        message = str(raised.exception)
        self.assertIn(missing, message)
        self.assertIn(
            "<root>/{train/part1,train/part2,validation}/{images,labelXml|labelXmls}", message
        )

    def test_malformed_xml(self):
        sample = self.reader.samples("train")[0]
        cases = (
            ("<annotation><objects>", "malformed XML"),
            ("<root/>", "expected <annotation>"),
            (xml_text([("Bus", BOX[:3])]), "object 0 has 4 points; expected 4 corners"),
            (
                xml_text([("Bus", BOX)]).replace("24.000000,8.000000", "24.0;8.0"),
                "expected text 'x,y'",
            ),
            (xml_text([("", BOX)]), "object 0 has no possibleresult/name"),
            (xml_text([("Bus", BOX)], width=65), "size is 64x65 .* is 64x64"),
        )
        for text, message in cases:
            with open(sample.label_path, "w") as f:
                f.write(text)
            with self.assertRaisesRegex(DatasetError, message):
                self.reader.load_annotation(sample)
        os.remove(sample.label_path)
        sample = self.reader.samples("train")[0]
        with self.assertRaisesRegex(DatasetError, "no 0.xml in labelXml or labelXmls"):
            self.reader.load_annotation(sample)

    def test_image_and_edge_padded_tiles(self):
        sample = self.reader.samples("train")[0]
        image = self.reader.load_image(sample)
        np.testing.assert_array_equal(image, self.image)
        tiles, infos = tiling.tile_image(image, (24, 24), pad="edge")
        self.assertEqual(tiles.shape, (9, 24, 24, 3))
        last = tiles[-1]  # covers rows/cols 48-71 of a 64 px image: 16 real, 8 padded
        np.testing.assert_array_equal(last[:16, :16], image[48:, 48:])
        np.testing.assert_array_equal(last[16:, :16], np.repeat(image[63:, 48:], 8, axis=0))
        self.assertEqual((infos[-1].h, infos[-1].w), (16, 16))

    def test_crop_windows_and_names(self):
        self.assertEqual(fair1m.crop_windows(1000, 1000), [(0, 0)])
        self.assertEqual(fair1m.crop_windows(1000, 2500), [(0, 0), (1000, 0), (1500, 0)])
        self.assertEqual(fair1m.crop_windows(500, 800), [(0, 0)])
        self.assertEqual(fair1m.crop_name("5239", 0, 0), "5239__1__0___0")
        self.assertEqual(
            fair1m.parse_crop_name("5239__1__1000___500.png"), ("5239", 1.0, 1000, 500)
        )
        with self.assertRaisesRegex(DatasetError, "expected a DOTA crop name"):
            fair1m.parse_crop_name("5239.png")


if __name__ == "__main__":
    absltest.main()
