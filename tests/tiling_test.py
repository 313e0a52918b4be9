"""Tests for vitjax.data.tiling: grids, round trips, the paper's geometries, nearest/bicubic rules.

Oracles: numpy slicing/padding, rational-arithmetic index formulas, PyTorch `F.interpolate`
("nearest-exact", "nearest", antialiased "bicubic"), and Pillow for the bicubic tile resize.
PyTorch's nearest-exact agrees exactly on every paper geometry; elsewhere it may differ only at
exact ties (see `_assert_equal_up_to_ties`).
"""

import math
import random
from fractions import Fraction

import numpy as np
from absl.testing import absltest, parameterized
from PIL import Image

from tests import test_util  # noqa: F401
from vitjax import errors
from vitjax.data import tiling

torch = test_util.optional_import("torch")
F = test_util.optional_import("torch.nn.functional")
given, settings, st = test_util.hypothesis_api()


def _torch_resize(array: np.ndarray, size, mode: str) -> np.ndarray:
    """[H, W] or [H, W, C] numpy -> resized with torch (float64, so labels survive exactly)."""
    test_util.skip_unless_installed("torch")  # a decorator would reseed hypothesis
    x = torch.from_numpy(np.asarray(array, np.float64))
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    if mode == "bicubic-aa":
        y = F.interpolate(x, size=tuple(size), mode="bicubic", antialias=True, align_corners=False)
    else:
        y = F.interpolate(x, size=tuple(size), mode=mode)
    y = y[0, 0] if array.ndim == 2 else y[0].permute(1, 2, 0)
    return y.numpy()


def _exact_oracle(n_in: int, n_out: int) -> np.ndarray:
    """floor((i + 1/2) * n_in / n_out) in rational arithmetic."""
    return np.array(
        [min(math.floor(Fraction(2 * i + 1, 2) * n_in / n_out), n_in - 1) for i in range(n_out)]
    )


def _assert_equal_up_to_ties(ours, torch_idx, n_in: int, n_out: int) -> None:
    """PyTorch computes (i + 0.5) * scale in floating point; where the exact value is an integer
    (the output centre sits exactly on an input pixel boundary) it may round just below it."""
    differ = np.flatnonzero(np.asarray(ours) != np.asarray(torch_idx))
    for i in differ:
        assert ((2 * i + 1) * n_in) % (2 * n_out) == 0, (n_in, n_out, i)
        assert ours[i] == torch_idx[i] + 1, (n_in, n_out, i)


_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


class TilingTest(parameterized.TestCase):
    @given(
        h=st.integers(1, 70),
        w=st.integers(1, 70),
        th=st.integers(1, 32),
        tw=st.integers(1, 32),
        channels=st.sampled_from([None, 1, 3]),
        pad=st.sampled_from(["edge", "constant"]),
    )
    @_SETTINGS
    def test_tile_stitch_round_trip(self, h, w, th, tw, channels, pad):
        rng = np.random.default_rng(h * 1000 + w)
        shape = (h, w) if channels is None else (h, w, channels)
        image = rng.integers(0, 256, shape).astype(np.uint8)
        tiles, infos = tiling.tile_image(image, (th, tw), pad=pad, pad_value=7)
        rows, cols = -(-h // th), -(-w // tw)
        self.assertEqual(tiling.grid_shape((h, w), (th, tw)), (rows, cols))
        self.assertEqual(tiles.shape, (rows * cols, th, tw, *shape[2:]))
        for k, (tile, info) in enumerate(zip(tiles, infos)):
            self.assertEqual((info.row, info.col), divmod(k, cols))
            self.assertEqual((info.y0, info.x0), (info.row * th, info.col * tw))
            np.testing.assert_array_equal(
                tile[: info.h, : info.w],
                image[info.y0 : info.y0 + info.h, info.x0 : info.x0 + info.w],
            )
        full = tiling.stitch(tiles, infos)
        pad_width = [(0, rows * th - h), (0, cols * tw - w)] + [(0, 0)] * (image.ndim - 2)
        if pad == "edge":
            expected = np.pad(image, pad_width, mode="edge")
        else:
            expected = np.pad(image, pad_width, constant_values=7)
        np.testing.assert_array_equal(full, expected)
        # Pixels back at their own resolution: upsample_to with covered = padded size crops.
        back = tiling.upsample_to(full, (h, w), covered=full.shape[:2])
        np.testing.assert_array_equal(back, image)
        np.testing.assert_array_equal(tiling.stitch_to_pixels(tiles, infos), image)

    def test_stitch_ignores_tile_order(self):
        image = np.arange(50 * 70).reshape(50, 70)
        tiles, infos = tiling.tile_image(image, (16, 16))
        order = list(range(len(infos)))
        random.Random(0).shuffle(order)
        shuffled = tiling.stitch(tiles[order], [infos[k] for k in order])
        np.testing.assert_array_equal(shuffled, tiling.stitch(tiles, infos))

    @test_util.requires("torch")
    def test_cityscapes_8x4_grid(self):
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (1024, 2048, 3)).astype(np.uint8)
        labels = rng.integers(0, 34, (1024, 2048)).astype(np.uint8)
        tiles, infos = tiling.apply_geometry(image, "cityscapes")
        label_tiles, label_infos = tiling.apply_geometry(labels, "cityscapes", is_label=True)
        self.assertEqual(tiles.shape, (32, 224, 224, 3))
        self.assertEqual(label_tiles.shape, (32, 224, 224))
        self.assertEqual(tiling.grid_shape((1024, 2048), 256), (4, 8))
        self.assertEqual([(i.row, i.col) for i in infos], [divmod(k, 8) for k in range(32)])
        self.assertEqual(infos[13].y0, 256)
        self.assertEqual(infos[13].x0, 5 * 256)
        self.assertEqual(infos[0].scale, (0.875, 0.875))
        self.assertEqual(infos, label_infos)
        crop = image[256:512, 1280:1536]
        expected = np.asarray(Image.fromarray(crop).resize((224, 224), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(tiles[13], expected)
        # Pillow bicubic against PyTorch's antialiased bicubic (same kernel, but Pillow rounds to
        # uint8 between its two passes, so single pixels of noise can differ by more).
        ref = np.clip(np.round(_torch_resize(crop, (224, 224), "bicubic-aa")), 0, 255)
        diff = np.abs(ref - tiles[13].astype(np.float64))
        self.assertLess(diff.mean(), 0.5)
        self.assertLessEqual(np.percentile(diff, 99), 4)
        np.testing.assert_array_equal(
            label_tiles[13], _torch_resize(labels[256:512, 1280:1536], (224, 224), "nearest-exact")
        )
        # 14 x 14 patch predictions per tile stitch to 56 x 112 and back to 1024 x 2048 pixels.
        preds = rng.integers(0, 19, (32, 14, 14))
        full = tiling.stitch(preds, infos)
        self.assertEqual(full.shape, (56, 112))
        np.testing.assert_array_equal(full[14:28, 70:84], preds[13])
        pixels = tiling.stitch_to_pixels(preds, infos)
        np.testing.assert_array_equal(pixels, _torch_resize(full, (1024, 2048), "nearest-exact"))

    @test_util.requires("torch")
    def test_ade20k_resize_then_3x2_tiles(self):
        rng = np.random.default_rng(1)
        image = rng.integers(0, 256, (512, 683, 3)).astype(np.uint8)
        mask = rng.integers(0, 151, (512, 683)).astype(np.uint8)
        tiles, infos = tiling.apply_geometry(image, "ade20k")
        label_tiles, _ = tiling.apply_geometry(mask, "ade20k", is_label=True)
        self.assertEqual(tiles.shape, (6, 224, 224, 3))
        self.assertEqual((infos[0].grid_rows, infos[0].grid_cols), (2, 3))
        self.assertEqual((infos[0].orig_h, infos[0].orig_w), (512, 683))
        resized_mask = _torch_resize(mask, (448, 672), "nearest-exact")
        np.testing.assert_array_equal(label_tiles[4], resized_mask[224:448, 224:448])
        resized = np.asarray(Image.fromarray(image).resize((672, 448), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(tiles[2], resized[0:224, 448:672])
        # [R1]: predictions stitched to 28 x 42, nearest-resized to the original mask size.
        preds = rng.integers(0, 151, (6, 14, 14))
        full = tiling.stitch(preds, infos)
        self.assertEqual(full.shape, (28, 42))
        np.testing.assert_array_equal(
            tiling.stitch_to_pixels(preds, infos), _torch_resize(full, (512, 683), "nearest-exact")
        )

    def test_fair1m_edge_padding(self):
        rng = np.random.default_rng(2)
        crop = rng.integers(0, 256, (1000, 1000, 3)).astype(np.uint8)
        mask = rng.integers(0, 5, (1000, 1000)).astype(np.uint8)
        tiles, infos = tiling.apply_geometry(crop, "fair1m")
        label_tiles, _ = tiling.apply_geometry(mask, "fair1m", is_label=True)
        self.assertEqual(tiles.shape, (25, 224, 224, 3))
        last = infos[-1]
        self.assertEqual((last.row, last.col, last.h, last.w), (4, 4, 104, 104))
        np.testing.assert_array_equal(tiles[-1][:104, :104], crop[896:, 896:])
        # Edge padding repeats the last row / column; label padding is ignore (255).
        np.testing.assert_array_equal(tiles[-1][150, :104], crop[999, 896:])
        np.testing.assert_array_equal(tiles[-1][:104, 200], crop[896:, 999])
        self.assertTrue((label_tiles[-1][104:] == 255).all())
        self.assertEqual(infos[0].scale, (1.0, 1.0))
        # Patches of 16 px: pixel y belongs to patch y // 16 of the padded 70 x 70 map.
        preds = rng.integers(0, 38, (25, 14, 14))
        full = tiling.stitch(preds, infos)
        expected = np.repeat(np.repeat(full, 16, 0), 16, 1)[:1000, :1000]
        np.testing.assert_array_equal(tiling.stitch_to_pixels(preds, infos), expected)

    def test_fair1m_constant_padding_geometry(self):
        crop = np.full((500, 500, 3), 9, np.uint8)
        geo = tiling.Geometry("zero", tile_size=(224, 224), pad="constant", pad_value=0)
        tiles, _ = tiling.apply_geometry(crop, geo)
        self.assertTrue((tiles[-1][52:] == 0).all())
        self.assertTrue((tiles[-1][:52, :52] == 9).all())

    @parameterized.parameters(
        ("tracking_tiles", (720, 1280), 15, (224, 224)),
        ("tracking_224", (720, 1280), 1, (224, 224)),
        ("tracking_672", (720, 1280), 1, (672, 672)),
        ("tracking_full", (720, 1280), 1, (672, 1120)),
        ("fair1m_cls", (1000, 1000), 16, (224, 224)),
    )
    def test_other_geometries(self, name, hw, num_tiles, tile_hw):
        image = np.zeros((*hw, 3), np.uint8)
        tiles, infos = tiling.apply_geometry(image, name)
        self.assertEqual(tiles.shape, (num_tiles, *tile_hw, 3))
        if name == "tracking_tiles":
            self.assertEqual((infos[0].grid_rows, infos[0].grid_cols), (3, 5))

    @given(n_in=st.integers(1, 400), n_out=st.integers(1, 300))
    @_SETTINGS
    def test_nearest_rules_match_torch(self, n_in, n_out):
        ours = tiling.nearest_indices(n_in, n_out)
        np.testing.assert_array_equal(ours, _exact_oracle(n_in, n_out))
        line = np.arange(n_in, dtype=np.float64)[None, :]
        exact = _torch_resize(line, (1, n_out), "nearest-exact")[0].astype(np.int64)
        _assert_equal_up_to_ties(ours, exact, n_in, n_out)
        legacy = _torch_resize(line, (1, n_out), "nearest")[0].astype(np.int64)
        np.testing.assert_array_equal(tiling.nearest_indices(n_in, n_out, "legacy"), legacy)

    @test_util.requires("torch")
    def test_legacy_rule_repeats_pytorch_float32_rounding(self):
        # 23 * 14 / 46 = 7 exactly, but PyTorch's float32 product rounds below it and reads 6.
        idx = tiling.nearest_indices(14, 46, "legacy")
        self.assertEqual(idx[23], 6)
        for n_out in (46, 92, 230, 47):
            line = np.arange(14, dtype=np.float64)[None, :]
            torch_idx = _torch_resize(line, (1, n_out), "nearest")[0].astype(np.int64)
            np.testing.assert_array_equal(tiling.nearest_indices(14, n_out, "legacy"), torch_idx)
        source = np.arange(14 * 3).reshape(14, 3)
        np.testing.assert_array_equal(
            tiling.upsample_to(source, (46, 3), rule="legacy"),
            _torch_resize(source, (46, 3), "nearest"),
        )

    @given(h=st.integers(1, 40), w=st.integers(1, 40), oh=st.integers(1, 90), ow=st.integers(1, 90))
    @_SETTINGS
    def test_resize_nearest_and_upsample(self, h, w, oh, ow):
        # Encode each pixel's position as its value, so the result says where it read from.
        source = np.arange(h * w, dtype=np.int64).reshape(h, w)
        rows, cols = _exact_oracle(h, oh), _exact_oracle(w, ow)
        expected = source[rows[:, None], cols[None, :]]
        np.testing.assert_array_equal(tiling.resize_image(source, (oh, ow)), expected)
        np.testing.assert_array_equal(tiling.upsample_to(source, (oh, ow)), expected)
        got = _torch_resize(source, (oh, ow), "nearest-exact").astype(np.int64)
        _assert_equal_up_to_ties(rows, got[:, 0] // w, h, oh)
        _assert_equal_up_to_ties(cols, got[0] % w, w, ow)
        legacy = _torch_resize(source, (oh, ow), "nearest")
        np.testing.assert_array_equal(tiling.upsample_to(source, (oh, ow), rule="legacy"), legacy)

    @test_util.requires("torch")
    def test_bicubic_float_and_grey(self):
        rng = np.random.default_rng(3)
        image = rng.uniform(0, 255, (40, 60, 2)).astype(np.float32)
        out = tiling.resize_image(image, (20, 30))
        self.assertEqual(out.shape, (20, 30, 2))
        self.assertEqual(out.dtype, np.float32)
        ref = _torch_resize(image, (20, 30), "bicubic-aa")
        np.testing.assert_allclose(out, ref, atol=1.5)

    def test_batch_helpers(self):
        rng = np.random.default_rng(4)
        images = [rng.integers(0, 9, (30, 50)), rng.integers(0, 9, (64, 20))]
        tiles, infos = tiling.tile_images(images, (16, 16), pad="constant", pad_value=255)
        self.assertEqual(len(tiles), 2 * 4 + 4 * 2)
        maps = tiling.stitch_all(tiles, infos)
        for image, full in zip(images, maps):
            np.testing.assert_array_equal(full[: image.shape[0], : image.shape[1]], image)
        with self.assertRaises(errors.DatasetError):
            tiling.stitch(tiles, infos)  # two images in one stitch

    def test_bad_input(self):
        with self.assertRaisesRegex(errors.ConfigError, "pad"):
            tiling.tile_image(np.zeros((8, 8)), (4, 4), pad="reflect")
        with self.assertRaisesRegex(errors.ConfigError, "cityscapes"):
            tiling.get_geometry("cityscape")
        with self.assertRaisesRegex(errors.DatasetError, "expected"):
            tiling.tile_image(np.zeros((2, 8, 8, 3)), (4, 4))
        tiles, infos = tiling.tile_image(np.zeros((8, 8)), (4, 4))
        with self.assertRaisesRegex(errors.DatasetError, "2 x 2 grid"):
            tiling.stitch(tiles[:3], infos[:3])
        with self.assertRaisesRegex(errors.DatasetError, "bicubic"):
            tiling.resize_image(np.zeros((8, 8, 3), np.int32), (4, 4), "bicubic")


if __name__ == "__main__":
    absltest.main()
