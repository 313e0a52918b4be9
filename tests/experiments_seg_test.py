"""Protocol logic of the segmentation-side experiments on hand-made features and labels."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import dataclasses
import os
import shutil
import tempfile

import ml_collections
import numpy as np
from absl.testing import absltest, parameterized
from PIL import Image
from sklearn import linear_model, preprocessing
from sklearn import metrics as sk_metrics

from configs import cityscapes as cityscapes_config
from vitjax import errors, experiments, run
from vitjax.data import tiling
from vitjax.experiments import (
    common,
    fewshot,
    global_context,
    layerwise,
    robustness,
    tiling_vs_full,
    variance,
)

KNN_CFG = ml_collections.ConfigDict(
    dict(k=10, rule="1nn", metric="dot", exclude_ignore=True, query_block=64, db_block=128)
)


def brute_force_1nn(support, labels, queries, keep_dims):
    """Oracle: label of the highest dot product over the kept dims (ties -> lower index)."""
    scores = queries[:, keep_dims] @ support[:, keep_dims].T
    return labels[np.argmax(scores, axis=1)]


def noisy_class_features(rng, n, num_classes, informative, noise_dims, noise_scale):
    """Features: class centroid in `informative` dims + high-variance pure-noise dims."""
    labels = rng.integers(0, num_classes, n)
    centroids = rng.standard_normal((num_classes, informative)) * 3.0
    signal = centroids[labels] + 0.3 * rng.standard_normal((n, informative))
    noise = noise_scale * rng.standard_normal((n, noise_dims))
    return np.concatenate([noise, signal], axis=1).astype(np.float32), labels


@dataclasses.dataclass
class FakeSpec:
    family: str
    size: str
    patch_size: int = 16
    depth: int = 12
    rel_pos_bias: bool = False
    native_grid: tuple = (14, 14)


def handle(family="mae", size="b", random_weights=False, **spec_fields):
    spec = FakeSpec(family, size, **spec_fields)
    return experiments.ModelHandle(f"{family}_{size}", None, None, spec, random_weights)


class VarianceTest(parameterized.TestCase):
    def test_removing_noisy_top_variance_dims_helps_knn(self):
        rng = np.random.default_rng(0)
        feats, labels = noisy_class_features(rng, 600, 4, 16, 8, noise_scale=20.0)
        support, queries = feats[:400], feats[400:]
        s_labels, q_labels = labels[:400], labels[400:]

        order = common.variance_order(support)
        self.assertCountEqual(order[:8].tolist(), range(8))  # the noise dims come first

        full = common.knn_predict(support, s_labels, queries, 4, KNN_CFG)
        removed = common.knn_predict(support, s_labels, queries, 4, KNN_CFG, drop_dims=order[:8])
        acc_full = (full == q_labels).mean()
        acc_removed = (removed == q_labels).mean()
        self.assertGreater(acc_removed, acc_full + 0.3)
        self.assertGreater(acc_removed, 0.95)
        # Independent oracle: brute-force 1-NN by dot product over the kept dims.
        keep = np.setdiff1d(np.arange(support.shape[1]), order[:8])
        np.testing.assert_array_equal(removed, brute_force_1nn(support, s_labels, queries, keep))
        np.testing.assert_array_equal(
            full, brute_force_1nn(support, s_labels, queries, np.arange(support.shape[1]))
        )

    def test_random_control_does_not_remove_the_noise(self):
        rng = np.random.default_rng(1)
        feats, labels = noisy_class_features(rng, 600, 4, 16, 8, noise_scale=20.0)
        support, queries = feats[:400], feats[400:]
        s_labels, q_labels = labels[:400], labels[400:]
        dims = variance.random_dims(np.random.default_rng(3), feats.shape[1], 8)
        self.assertLen(np.unique(dims), 8)
        acc_random = (
            common.knn_predict(support, s_labels, queries, 4, KNN_CFG, drop_dims=dims) == q_labels
        ).mean()
        order = common.variance_order(support)
        acc_top = (
            common.knn_predict(support, s_labels, queries, 4, KNN_CFG, drop_dims=order[:8])
            == q_labels
        ).mean()
        self.assertGreater(acc_top, acc_random)

    def test_spectrum_matches_numpy_variance(self):
        x = np.random.default_rng(2).standard_normal((50, 7)) * np.arange(1, 8)
        spec = variance.spectrum(x)
        expected = np.sort(np.var(x, axis=0))[::-1]
        np.testing.assert_allclose(spec, expected / expected.sum(), rtol=1e-12)
        self.assertAlmostEqual(spec.sum(), 1.0)

    @parameterized.parameters((3, 2 / 3), (1, 0.0), (2, 1.0), (5, 4 / 5))
    def test_topn_overlap(self, n, expected):
        a = np.array([4, 1, 7, 0, 2, 3, 5, 6])
        b = np.array([1, 4, 0, 7, 6, 5, 3, 2])
        # Oracle: python sets.
        self.assertAlmostEqual(
            common.topn_overlap(a, b, n), len(set(a[:n]) & set(b[:n])) / n, places=12
        )
        self.assertAlmostEqual(common.topn_overlap(a, b, n), expected)

    def test_standardize_matches_sklearn(self):
        rng = np.random.default_rng(4)
        ref = rng.standard_normal((100, 5)) * [1, 10, 0.1, 3, 7] + 5
        x = rng.standard_normal((20, 5))
        scaler = preprocessing.StandardScaler().fit(ref)
        np.testing.assert_allclose(
            common.standardize(x, ref, eps=0.0), scaler.transform(x), rtol=1e-5
        )


class ScoreTest(parameterized.TestCase):
    def _split(self):
        # Two 8x8 images, tiles of 4 -> 2x2 tiles each, 2x2 patch grid per tile.
        rng = np.random.default_rng(0)
        labels = [rng.integers(0, 3, (8, 8)).astype(np.uint8) for _ in range(2)]
        labels[0][0, :] = 255
        images = [np.zeros((8, 8, 3), np.uint8) for _ in range(2)]
        geo = tiling.Geometry("t", tile_size=(4, 4))
        return common.make_split(images, labels, geo, [0, 1], ["a", "b"]), labels

    def test_patch_level_scores_match_sklearn(self):
        split, _ = self._split()
        targets = split.patch_targets((2, 2), "centre")
        self.assertEqual(targets.shape, (8 * 4,))
        pred = np.random.default_rng(1).integers(0, 3, targets.shape)
        data_cfg = ml_collections.ConfigDict(
            dict(score_level="patch", patch_label_rule="centre", miou_convention="present")
        )
        s = common.score(pred, split, (2, 2), 3, data_cfg)
        keep = targets != 255
        iou = sk_metrics.jaccard_score(targets[keep], pred[keep], labels=[0, 1, 2], average=None)
        np.testing.assert_allclose(s["iou"], iou)
        self.assertAlmostEqual(s["miou"], iou.mean())
        self.assertAlmostEqual(s["acc"], sk_metrics.accuracy_score(targets[keep], pred[keep]))

    def test_pixel_level_scores_upsample_each_patch(self):
        split, labels = self._split()
        pred = np.random.default_rng(2).integers(0, 3, 8 * 4)
        data_cfg = ml_collections.ConfigDict(
            dict(score_level="pixel", patch_label_rule="centre", miou_convention="present")
        )
        s = common.score(pred, split, (2, 2), 3, data_cfg)
        # Oracle: every patch covers a 2x2 pixel block; tiles are row-major per image.
        gt, pixels = [], []
        grids = pred.reshape(2, 2, 2, 2, 2)  # image, tile row, tile col, patch row, patch col
        for i in range(2):
            full = grids[i].transpose(0, 2, 1, 3).reshape(4, 4)
            pixels.append(np.kron(full, np.ones((2, 2), int)).ravel())
            gt.append(labels[i].ravel())
        gt, pixels = np.concatenate(gt), np.concatenate(pixels)
        keep = gt != 255
        iou = sk_metrics.jaccard_score(gt[keep], pixels[keep], labels=[0, 1, 2], average=None)
        np.testing.assert_allclose(s["iou"], iou)
        self.assertAlmostEqual(s["acc"], sk_metrics.accuracy_score(gt[keep], pixels[keep]))

    def test_label_padding_is_ignored(self):
        images = [np.zeros((6, 6, 3), np.uint8)]
        labels = [np.ones((6, 6), np.uint8)]
        split = common.make_split(
            images, labels, tiling.Geometry("t", tile_size=(4, 4)), [0], ["x"]
        )
        self.assertEqual(split.tiles.shape, (4, 4, 4, 3))
        self.assertTrue(np.all(split.label_tiles[3][2:, :] == 255))
        self.assertTrue(np.all(split.label_tiles[0] == 1))

    def test_select_images_renumbers(self):
        split, _ = self._split()
        sub = split.select_images(np.array([False, True]))
        self.assertEqual(sub.num_images, 1)
        self.assertEqual({i.image_index for i in sub.infos}, {0})
        np.testing.assert_array_equal(sub.tiles, split.tiles[4:])


class LayerwiseTest(parameterized.TestCase):
    @parameterized.parameters(("all", 4, [0, 1, 2, 3]), ("0,-1", 4, [0, 3]), ("2, 1,2", 3, [1, 2]))
    def test_parse_layers(self, text, depth, expected):
        self.assertEqual(layerwise.parse_layers(text, depth), expected)

    @parameterized.parameters("5", "x", "")
    def test_parse_layers_rejects(self, text):
        with self.assertRaises(errors.ConfigError):
            layerwise.parse_layers(text, 4)

    def test_per_class_breakdown(self):
        gt = np.array([0, 0, 1, 1, 2, 2, 2, 255])
        pred = np.array([0, 1, 1, 1, 2, 0, 2, 0])
        cm = common.confusion(gt, pred, 4)
        s = common.scores_from_confusion(cm, "present")
        row = layerwise.per_class_rows({"model": "m"}, 3, s["iou"], ["a", "b", "c", "d"])
        keep = gt != 255
        iou = sk_metrics.jaccard_score(gt[keep], pred[keep], labels=[0, 1, 2], average=None)
        self.assertEqual(row["layer"], 3)
        for name, value in zip("abc", iou):
            self.assertAlmostEqual(row[name], value)
        self.assertIsNone(row["d"])  # absent class: no IoU
        self.assertAlmostEqual(s["miou"], iou.mean())


class GlobalContextTest(absltest.TestCase):
    def test_class_fractions_brute_force(self):
        rng = np.random.default_rng(0)
        tiles = rng.choice([0, 1, 2, 255], size=(5, 6, 6)).astype(np.uint8)
        tiles[4] = 255
        frac, valid = global_context.class_fractions(tiles, [2, 0])
        for t in range(4):
            labelled = tiles[t][tiles[t] != 255]
            self.assertAlmostEqual(frac[t, 0], np.mean(labelled == 2))
            self.assertAlmostEqual(frac[t, 1], np.mean(labelled == 0))
        np.testing.assert_array_equal(valid, [True, True, True, True, False])

    def test_central_patch(self):
        feats = np.arange(2 * 3 * 4 * 2).reshape(2 * 3 * 4, 2)
        centre = global_context.central_patches(feats, 2, (3, 4))
        np.testing.assert_array_equal(centre, feats.reshape(2, 3, 4, 2)[:, 1, 2])

    def test_variants_partition_dims(self):
        order = np.random.default_rng(0).permutation(20)
        v = global_context.feature_variants(order, 5, np.random.default_rng(1))
        self.assertCountEqual(v["full"], range(20))
        self.assertCountEqual(np.concatenate([v["top5_removed"], v["top5_only"]]), range(20))
        self.assertCountEqual(v["top5_only"], order[:5])
        self.assertLen(np.unique(v["random5"]), 5)

    def test_ridge_r2_matches_sklearn(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((120, 6))
        y = x @ rng.standard_normal((6, 2)) + 0.5 * rng.standard_normal((120, 2))
        out = global_context.fit_and_score(x[:80], y[:80], x[80:], y[80:], [1.0], 0.25, 0)
        ref = linear_model.Ridge(alpha=1.0).fit(x[:80], y[:80]).predict(x[80:])
        self.assertAlmostEqual(out["r2"], sk_metrics.r2_score(y[80:], ref), places=6)
        self.assertEqual(out["l2"], 1.0)
        self.assertGreater(out["r2"], 0.8)


class RobustnessTest(absltest.TestCase):
    def test_levels_from_config(self):
        cfg = ml_collections.ConfigDict(
            dict(blur_kind="box_blur", blur_levels=(2, 4), noise_levels=(10.0,), freq_bands=(0, 3),
                 num_bands=4, freq_sigma=20.0)
        )  # fmt: skip
        levels = robustness.corruption_levels(cfg)
        self.assertEqual([(a, b, c) for a, b, c, _ in levels], [
            ("blur", "box_blur", 2.0), ("blur", "box_blur", 4.0), ("noise", "noise", 10.0),
            ("freq_noise", "freq_noise", 0.0), ("freq_noise", "freq_noise", 3.0),
        ])  # fmt: skip

    def test_corrupt_is_uint8_and_box_blur_matches_mean(self):
        rng = np.random.default_rng(0)
        tiles = rng.integers(0, 256, (3, 9, 9, 3)).astype(np.uint8)
        out = robustness.corrupt(tiles, "box_blur", 3.0, {}, seed=0)
        self.assertEqual(out.dtype, np.uint8)
        # Oracle: an interior pixel of a 3x3 box blur is the mean of its 3x3 neighbourhood.
        expected = tiles[:, 3:6, 3:6].astype(np.float64).mean(axis=(1, 2))
        np.testing.assert_allclose(out[:, 4, 4], np.round(expected), atol=1)
        noisy = robustness.corrupt(tiles, "noise", 30.0, {}, seed=0)
        self.assertGreater(np.abs(noisy.astype(int) - tiles).mean(), 5)
        np.testing.assert_array_equal(noisy, robustness.corrupt(tiles, "noise", 30.0, {}, seed=0))


class FewshotTableTest(absltest.TestCase):
    def _ctx(self, models, dataset="cityscapes"):
        config = ml_collections.ConfigDict({"dataset": dataset})
        return experiments.Context(models, None, "/tmp", 0, config)

    def test_paper_numbers_only_for_real_vitb_on_cityscapes(self):
        models = [handle("mae", "b"), handle("dino", "b", random_weights=True), handle("dino", "s")]
        rows = [
            {"model": m.name, "shots": 4, "method": meth, "miou": 0.1}
            for m in models
            for meth in ("knn", "linear")
        ]
        table = fewshot.tab2(self._ctx(models), rows, 4, ["knn", "linear"])
        self.assertEqual(table[0]["knn_paper"], 0.058)
        self.assertEqual(table[0]["linear_paper"], 0.375)
        self.assertNotIn("knn_paper", table[1])  # random weights
        self.assertNotIn("knn_paper", table[2])  # not ViT-B
        ade = fewshot.tab2(self._ctx(models, "ade20k"), rows, 4, ["knn", "linear"])
        self.assertNotIn("knn_paper", ade[0])

    def test_methods_parsing(self):
        self.assertEqual(common.methods("knn, linear"), ["knn", "linear"])
        with self.assertRaises(errors.ConfigError):
            common.methods("knn,svm")


class DatasetConfigTest(absltest.TestCase):
    def test_other_dataset_gets_its_protocol_and_root(self):
        config = cityscapes_config.get_config()
        config.data.other_roots = "ade20k=/data/ade, cityscapes=/data/cs"
        ade = common.dataset_config(config, "ade20k")
        self.assertEqual(ade.dataset, "ade20k")
        self.assertEqual(ade.data.root, "/data/ade")
        self.assertEqual(tuple(ade.data.resize_hw), (448, 672))
        self.assertEqual((ade.data.tile_size, ade.data.tile_out), (224, 224))
        self.assertEqual(config.data.tile_size, 256)  # the original is untouched
        self.assertIs(common.dataset_config(config, "cityscapes"), config)
        config.data.other_roots = "cityscapes=/data/cs"
        with self.assertRaisesRegex(errors.ConfigError, "other_roots"):
            common.dataset_config(config, "ade20k")


class TilingVsFullTest(absltest.TestCase):
    def test_rel_pos_bias_models_only_at_native_grid(self):
        simmim = handle("simmim", "b", rel_pos_bias=True)
        self.assertTrue(tiling_vs_full.supports_grid(simmim, (14, 14)))
        self.assertFalse(tiling_vs_full.supports_grid(simmim, (56, 112)))
        self.assertTrue(tiling_vs_full.supports_grid(handle("dino", "b"), (56, 112)))

    def test_full_geometry_is_one_resized_tile(self):
        data_cfg = ml_collections.ConfigDict(dict(resize_hw=(0, 0), tile_size=256, tile_out=224))
        geo = common.geometry(data_cfg, full_hw=(32, 64))
        tiles, infos = tiling.apply_geometry(np.zeros((20, 40, 3), np.uint8), geo)
        self.assertEqual(tiles.shape, (1, 32, 64, 3))
        self.assertEqual((infos[0].orig_h, infos[0].orig_w), (20, 40))
        geo = common.geometry(data_cfg)
        tiles, _ = tiling.apply_geometry(np.zeros((512, 1024, 3), np.uint8), geo)
        self.assertEqual(tiles.shape, (8, 224, 224, 3))


def write_cityscapes_fixture(root: str) -> None:
    """2 train cities x 1 image and 1 val city x 1 image, 64x128, labelIds with 7/26/33/0/9."""
    rng = np.random.default_rng(0)
    for split, city in (("train", "aachen"), ("train", "bochum"), ("val", "frankfurt")):
        stem = f"{city}_000000_000019"
        image_dir = os.path.join(root, "leftImg8bit", split, city)
        label_dir = os.path.join(root, "gtFine", split, city)
        os.makedirs(image_dir)
        os.makedirs(label_dir)
        image = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
        labels = np.full((64, 128), 7, np.uint8)  # road
        labels[:32, :64] = 26  # car
        labels[:32, 64:] = 33  # bicycle
        labels[60:, :] = 0  # unlabeled -> ignore
        labels[:, :8] = 9  # parking -> ignore
        Image.fromarray(image).save(os.path.join(image_dir, f"{stem}_leftImg8bit.png"))
        Image.fromarray(labels).save(os.path.join(label_dir, f"{stem}_gtFine_labelIds.png"))


class CityscapesEndToEndTest(absltest.TestCase):
    def test_fewshot_and_full_input_on_a_cityscapes_fixture(self):
        root = tempfile.mkdtemp(prefix="vitjax_cs_")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        write_cityscapes_fixture(os.path.join(root, "data"))
        config = cityscapes_config.get_config("runlocal")
        config.data.root = os.path.join(root, "data")
        config.data.splits = "paper"  # no shipped 1-per-city list: falls back to the seeded draw
        config.data.tile_size = 32
        config.data.tile_out = 32
        config.models = "dino:ti:16:none"
        config.model_depth = 1
        config.experiments = "fewshot,tiling_vs_full"
        config.fewshot.methods = "knn"
        config.tiling_vs_full.methods = "knn"
        config.tiling_vs_full.full_hw = (64, 128)
        results = run.run(config, os.path.join(root, "work"))
        fewshot_rows = results["experiments"]["fewshot"]["tables"]["scores"]
        self.assertLen(fewshot_rows, 1)
        self.assertEqual(fewshot_rows[0]["train_images"], 2)  # one per train city
        self.assertBetween(fewshot_rows[0]["miou"], 0.0, 1.0)
        data = common.load_segmentation(config)
        self.assertLen(data.class_names, 19)
        self.assertEqual(data.train.tiles.shape, (16, 32, 32, 3))  # 2 images x 2x4 tiles
        self.assertEqual(set(np.unique(data.eval.label_maps[0])), {0, 13, 18, 255})
        inputs = {r["input"] for r in results["experiments"]["tiling_vs_full"]["tables"]["scores"]}
        self.assertEqual(inputs, {"tiles", "full"})


if __name__ == "__main__":
    absltest.main()
