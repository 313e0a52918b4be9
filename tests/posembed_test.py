"""Position encodings vs PyTorch's F.interpolate, independent sin-cos formulas and timm's BEiT
relative position index and bias-table resizing."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from tests import test_util  # noqa: F401
from vitjax import errors
from vitjax.models import posembed

timm = test_util.optional_import("timm")  # imports timm.models.beit too
torch = test_util.optional_import("torch")
F = test_util.optional_import("torch.nn.functional")
pos_embed_rel = test_util.optional_import("timm.layers.pos_embed_rel")


def _torch_resize(grid: np.ndarray, **kwargs) -> np.ndarray:
    """PyTorch oracle: float64 [h, w, C] -> F.interpolate(bicubic, **kwargs) -> [h', w', C]."""
    x = torch.from_numpy(grid.transpose(2, 0, 1)[None])
    return F.interpolate(x, mode="bicubic", **kwargs)[0].numpy().transpose(1, 2, 0)


def _apply(rows: np.ndarray, cols: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.einsum("ih,jw,hwc->ijc", rows, cols, grid)


class BicubicMatrixTest(parameterized.TestCase):
    @parameterized.product(
        shapes=[((14, 14), (16, 16)), ((37, 37), (16, 16)), ((14, 14), (7, 11)), ((5, 9), (23, 4))],
        align_corners=[False, True],
    )
    @test_util.requires("torch")
    def test_size_semantics_match_torch(self, shapes, align_corners):
        (gh, gw), (h, w) = shapes
        grid = np.random.default_rng(0).standard_normal((gh, gw, 6))
        got = _apply(
            posembed.bicubic_matrix(gh, h, align_corners=align_corners),
            posembed.bicubic_matrix(gw, w, align_corners=align_corners),
            grid,
        )
        want = _torch_resize(grid, size=(h, w), align_corners=align_corners)
        np.testing.assert_allclose(got, want, atol=1e-12)

    @parameterized.parameters(
        ((37, 37), (16, 16)), ((14, 14), (20, 9)), ((14, 14), (14, 15)), ((3, 4), (30, 2))
    )
    @test_util.requires("torch")
    def test_antialias_size_matches_torch(self, native, target):
        grid = np.random.default_rng(1).standard_normal((*native, 5))
        got = _apply(
            posembed.antialiased_bicubic_matrix(native[0], target[0]),
            posembed.antialiased_bicubic_matrix(native[1], target[1]),
            grid,
        )
        want = _torch_resize(grid, size=target, antialias=True)
        np.testing.assert_allclose(got, want, atol=1e-12)

    @parameterized.parameters(
        ((37, 37), (16, 16)), ((14, 14), (5, 7)), ((14, 14), (14, 20)), ((37, 37), (37, 37))
    )
    @test_util.requires("torch")
    def test_offset_scale_factor_matches_torch(self, native, target):
        """DINO's scale_factor=((h+0.1)/g, (w+0.1)/g), with and without antialias."""
        grid = np.random.default_rng(2).standard_normal((*native, 4))
        scale = tuple(posembed.offset_scale_factor(n, t) for n, t in zip(native, target))
        for antialias in (False, True):
            with self.subTest(antialias=antialias):
                make = posembed.antialiased_bicubic_matrix if antialias else posembed.bicubic_matrix
                got = _apply(
                    make(native[0], target[0], scale_factor=scale[0]),
                    make(native[1], target[1], scale_factor=scale[1]),
                    grid,
                )
                want = _torch_resize(grid, scale_factor=scale, antialias=antialias)
                self.assertEqual(want.shape[:2], target)
                np.testing.assert_allclose(got, want, atol=1e-12)

    @test_util.requires("torch")
    def test_offset_output_size_rounding(self):
        """F.interpolate's floor(in * scale) gives the target for every grid DINO/DINOv2 can meet."""
        for native in (14, 16, 28, 37):
            for target in range(1, 80):
                matrix = posembed.resample_matrix(native, target, posembed.POS_INTERP_SCALE_OFFSET)
                probe = torch.zeros(1, 1, native, 1, dtype=torch.float64)
                scale = posembed.offset_scale_factor(native, target)
                want = F.interpolate(probe, scale_factor=(scale, 1.0), mode="bicubic").shape[2]
                self.assertEqual(matrix.shape, (want, native))

    def test_resample_matrix_is_cached_and_read_only(self):
        a = posembed.resample_matrix(14, 20, posembed.POS_INTERP_SIZE)
        self.assertIs(a, posembed.resample_matrix(14, 20, posembed.POS_INTERP_SIZE))
        self.assertFalse(a.flags.writeable)
        with self.assertRaises(errors.ConfigError):
            posembed.resample_matrix(14, 20, posembed.POS_INTERP_NATIVE_ONLY)


@test_util.requires("torch")
class ResamplePosEmbedTest(parameterized.TestCase):
    """Whole tables ([1, 1+N, D], cls first) like each family's PyTorch code, in float32."""

    def _reference(self, table: np.ndarray, native, target, mode) -> np.ndarray:
        cls, grid = table[:, :1], table[0, 1:].reshape(*native, -1).astype(np.float64)
        if mode == posembed.POS_INTERP_SCALE_OFFSET:
            kwargs = dict(
                scale_factor=((target[0] + 0.1) / native[0], (target[1] + 0.1) / native[1])
            )
        elif mode == posembed.POS_INTERP_SIZE_ANTIALIAS:
            kwargs = dict(size=target, antialias=True)
        elif mode == posembed.POS_INTERP_SIZE:
            kwargs = dict(size=target)
        else:
            kwargs = dict(size=target, align_corners=True)
        patches = _torch_resize(grid, **kwargs).reshape(1, -1, table.shape[-1])
        return np.concatenate([cls, patches], axis=1)

    @parameterized.product(
        mode=[
            posembed.POS_INTERP_SCALE_OFFSET,
            posembed.POS_INTERP_SIZE_ANTIALIAS,
            posembed.POS_INTERP_SIZE,
            posembed.POS_INTERP_ALIGN_CORNERS,
        ],
        target=[(16, 16), (10, 23)],
    )
    def test_matches_torch(self, mode, target):
        native = (14, 14)
        table = np.random.default_rng(3).standard_normal((1, 197, 8)).astype(np.float32)
        got = posembed.resample_pos_embed(jnp.asarray(table), native, target, mode)
        self.assertEqual(got.dtype, jnp.float32)
        np.testing.assert_allclose(got, self._reference(table, native, target, mode), atol=2e-6)

    def test_native_grid_is_unchanged_and_native_only_raises(self):
        table = jnp.asarray(np.random.default_rng(4).standard_normal((1, 197, 8)), jnp.float32)
        for mode in posembed.POS_INTERP_MODES:
            self.assertIs(posembed.resample_pos_embed(table, (14, 14), (14, 14), mode), table)
        with self.assertRaisesRegex(errors.ConfigError, "native"):
            posembed.resample_pos_embed(table, (14, 14), (16, 16), posembed.POS_INTERP_NATIVE_ONLY)


def _numpy_sincos(dim: int, grid, ratio: float) -> np.ndarray:
    """Independent loop over patches and frequencies of MAE/Scale-MAE's formula."""
    h, w = grid
    quarter = dim // 4
    out = np.zeros((h * w, dim))
    for i in range(h):
        for j in range(w):
            for k in range(quarter):
                omega = 10000.0 ** (-k / quarter)
                x, y = j * ratio * omega, i * ratio * omega
                out[i * w + j, [k, quarter + k, 2 * quarter + k, 3 * quarter + k]] = [
                    np.sin(x),
                    np.cos(x),
                    np.sin(y),
                    np.cos(y),
                ]
    return out


class SinCosTest(parameterized.TestCase):
    @parameterized.parameters(((14, 14), 1.0), ((3, 5), 1.0), ((4, 2), 2.5))
    def test_sincos_2d(self, grid, ratio):
        np.testing.assert_allclose(
            posembed.sincos_2d(32, grid, ratio), _numpy_sincos(32, grid, ratio), atol=1e-12
        )

    def test_mae_table_has_zero_cls_row(self):
        table = posembed.sincos_pos_embed(16, (14, 14))
        self.assertEqual(table.shape, (1, 197, 16))
        self.assertEqual(table.dtype, np.float32)
        np.testing.assert_array_equal(table[0, 0], 0.0)
        np.testing.assert_allclose(table[0, 1:], _numpy_sincos(16, (14, 14), 1.0), atol=1e-7)

    @parameterized.parameters(((14, 14),), ((6, 9),))
    def test_gsd_per_image_ratios(self, grid):
        ratios = np.array([1.0, 0.5, 3.2], np.float32)
        got = np.asarray(posembed.gsd_sincos_pos_embed(64, grid, jnp.asarray(ratios)))
        self.assertEqual(got.shape, (3, 1 + grid[0] * grid[1], 64))
        for b, r in enumerate(ratios):
            np.testing.assert_array_equal(got[b, 0], 0.0)
            # Computed in float32 like Scale-MAE: positions up to ~40 lose ~1e-5 in sin/cos.
            np.testing.assert_allclose(got[b, 1:], _numpy_sincos(64, grid, float(r)), atol=2e-5)
        scalar = posembed.gsd_sincos_pos_embed(64, grid, 0.5)
        self.assertEqual(scalar.shape[0], 1)
        np.testing.assert_allclose(scalar[0], got[1], atol=1e-6)

    def test_width_must_be_multiple_of_four(self):
        with self.assertRaisesRegex(errors.ConfigError, "multiple of 4"):
            posembed.sincos_2d(30, (2, 2))


@test_util.requires("timm")
class RelativePositionIndexTest(absltest.TestCase):
    def test_matches_formula_and_timm_beit(self):
        index = posembed.relative_position_index((14, 14))
        self.assertEqual(index.shape, (197, 197))
        self.assertEqual(posembed.relative_table_size((14, 14)), 732)
        # docs/checkpoints.md §4.4: (r1 - r2 + 13) * 27 + (c1 - c2 + 13); cls rows/cols 729..731.
        want = np.zeros((197, 197), np.int64)
        for a in range(196):
            for b in range(196):
                (r1, c1), (r2, c2) = divmod(a, 14), divmod(b, 14)
                want[1 + a, 1 + b] = (r1 - r2 + 13) * 27 + (c1 - c2 + 13)
        want[0, 1:], want[1:, 0], want[0, 0] = 729, 730, 731
        np.testing.assert_array_equal(index, want)
        timm_index = timm.models.beit.gen_relative_position_index((14, 14)).numpy()
        np.testing.assert_array_equal(index, timm_index)

    def test_rectangular_matches_timm(self):
        np.testing.assert_array_equal(
            posembed.relative_position_index((3, 5)),
            timm.models.beit.gen_relative_position_index((3, 5)).numpy(),
        )


def _timm_resize_table(table: np.ndarray, native, target) -> np.ndarray:
    """timm's `resize_rel_pos_bias_table` (default, scipy-free path) as the oracle."""
    rows = (2 * target[0] - 1) * (2 * target[1] - 1) + 3
    out = pos_embed_rel.resize_rel_pos_bias_table(
        torch.from_numpy(table),
        new_window_size=tuple(target),
        new_bias_shape=(rows, table.shape[1]),
        old_window_size=tuple(native),
    )
    return out.numpy()


class ResampleRelPosBiasTest(parameterized.TestCase):
    @parameterized.parameters(
        ((14, 14), (16, 16)),  # upsampling
        ((14, 14), (10, 10)),  # downsampling
        ((14, 14), (12, 20)),  # rectangular
        ((14, 14), (14, 17)),  # one axis unchanged: timm still moves its nodes
        ((5, 7), (8, 3)),  # rectangular source
        ((14, 14), (1, 2)),
    )
    @test_util.requires("torch", "timm")
    def test_matches_timm(self, native, target):
        heads = 3
        rows = posembed.relative_table_size(native)
        table = np.random.default_rng(sum(target)).standard_normal((rows, heads)).astype(np.float32)
        got = posembed.resample_rel_pos_bias(jnp.asarray(table), native, target)
        want = _timm_resize_table(table, native, target)
        self.assertEqual(got.shape, (posembed.relative_table_size(target), heads))
        self.assertEqual(got.dtype, jnp.float32)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(got[-3:], table[-3:])  # the cls entries are kept

    def test_matrix_is_linear_on_geometric_nodes(self):
        # Independent of timm: the nodes follow BEiT's rule and the matrix interpolates linearly.
        nodes = posembed.geometric_nodes(27, 39)
        self.assertLen(nodes, 27)
        np.testing.assert_allclose(nodes, -nodes[::-1], atol=0)
        self.assertEqual(nodes[13], 0.0)
        q = nodes[15] - nodes[14]
        np.testing.assert_allclose(np.diff(nodes[14:]), q ** np.arange(1, 13), rtol=1e-12)
        self.assertAlmostEqual(nodes[-1], 19.0, delta=1e-4)  # reaches 39 // 2
        matrix = posembed.rel_bias_matrix(27, 39)
        self.assertIs(matrix, posembed.rel_bias_matrix(27, 39))
        self.assertFalse(matrix.flags.writeable)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
        # Linear functions inside the node range are reproduced exactly.
        inside = np.abs(np.arange(39) - 19) <= nodes[-1]
        np.testing.assert_allclose(
            (matrix @ (2.0 * nodes + 1.0))[inside], 2.0 * (np.arange(39) - 19)[inside] + 1.0
        )

    def test_native_is_unchanged_and_bad_modes_raise(self):
        table = jnp.asarray(np.random.default_rng(5).standard_normal((732, 2)), jnp.float32)
        self.assertIs(posembed.resample_rel_pos_bias(table, (14, 14), (14, 14)), table)
        with self.assertRaisesRegex(errors.ConfigError, r"native \(14, 14\) patch grid"):
            posembed.resample_rel_pos_bias(
                table, (14, 14), (16, 16), posembed.POS_INTERP_NATIVE_ONLY
            )
        with self.assertRaisesRegex(errors.ConfigError, "cannot resize a relative"):
            posembed.resample_rel_pos_bias(table, (14, 14), (16, 16), posembed.POS_INTERP_SIZE)
        with self.assertRaisesRegex(errors.ConfigError, r"rel_pos_bias/table: expected \[732, H\]"):
            posembed.resample_rel_pos_bias(table[:-1], (14, 14), (16, 16))


if __name__ == "__main__":
    absltest.main()
