"""Tests for vitjax.data.synthetic and vitjax.data.textures.

Oracles: matplotlib's point-in-polygon test for the rotated boxes, numpy recounts of masks, a
randomly initialised timm ViT (patch 1-NN must beat the majority class by far), and
scikit-learn k-NN on colour statistics for the scene-classification images.
"""

import time

import numpy as np
from absl import logging
from absl.testing import absltest, parameterized
from matplotlib.path import Path

from tests import test_util  # noqa: F401
from vitjax import errors
from vitjax.data import patch_labels, synthetic, textures

torch = test_util.optional_import("torch")
neighbors = test_util.optional_import("sklearn.neighbors")
vision_transformer = test_util.optional_import("timm.models.vision_transformer")


def _report_speed(what: str, n: int, seconds: float) -> None:
    msg = (
        f"{what}: {n} in {seconds:.2f} s = {n / seconds:.1f}/s ({60 * n / seconds:.0f}/min, 1 core)"
    )
    logging.info(msg)
    print(msg)


class DeterminismTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("scenes", lambda n, s: synthetic.semantic_scenes(n, (64, 96), s)),
        ("aerial", lambda n, s: synthetic.aerial_tiles(n, (64, 64), s)),
        ("videos", lambda n, s: synthetic.videos(n, 3, (48, 64), s)),
        ("scene_cls", lambda n, s: synthetic.scene_classification(n, (48, 48), s)),
    )
    def test_seeded_and_prefix_stable(self, make):
        a, b, c, d = make(3, 11), make(3, 11), make(2, 11), make(3, 12)
        first = lambda x: x[0] if isinstance(x, tuple) else getattr(x, "images", None)  # noqa: E731
        if isinstance(a, synthetic.Videos):
            first = lambda x: x.frames  # noqa: E731
        np.testing.assert_array_equal(first(a), first(b))
        self.assertFalse(np.array_equal(first(a), first(d)))
        if isinstance(a, tuple):  # class-major: n_per_class=2 is a per-class prefix of 3
            np.testing.assert_array_equal(
                first(a).reshape(8, 3, -1)[:, :2], first(c).reshape(8, 2, -1)
            )
        else:
            np.testing.assert_array_equal(first(a)[:2], first(c))


class SemanticScenesTest(absltest.TestCase):
    def test_shapes_labels_and_classes(self):
        start = time.perf_counter()
        scenes = synthetic.semantic_scenes(24, size=(224, 224), seed=0)
        _report_speed("semantic_scenes 224 px", 24, time.perf_counter() - start)
        self.assertEqual(scenes.images.shape, (24, 224, 224, 3))
        self.assertEqual(scenes.images.dtype, np.uint8)
        self.assertEqual(scenes.labels.shape, (24, 224, 224))
        self.assertEqual(scenes.labels.dtype, np.uint8)
        self.assertLen(scenes.class_names, 8)
        present = set(np.unique(scenes.labels).tolist())
        self.assertEqual(present, set(range(8)) | {255})
        # Layout: sky at the top rows, road and no sky at the bottom.
        top = scenes.labels[:, :5].ravel()
        self.assertGreater(np.mean(top == synthetic.SKY), 0.4)
        self.assertEqual(np.sum(scenes.labels[:, -5:] == synthetic.SKY), 0)
        # Every class paints a distinct colour distribution: per-class mean colours differ.
        means = np.array(
            [scenes.images[scenes.labels == c].mean(0) for c in range(8)], dtype=np.float64
        )
        dists = np.linalg.norm(means[:, None] - means[None], axis=-1)
        self.assertGreater(dists[~np.eye(8, dtype=bool)].min(), 5.0)

    def test_non_square(self):
        scenes = synthetic.semantic_scenes(2, size=(112, 224), seed=3, ego_vehicle_prob=1.0)
        self.assertEqual(scenes.images.shape, (2, 112, 224, 3))
        self.assertTrue((scenes.labels[:, -1] == 255).all())

    @test_util.requires("torch", "timm")
    def test_random_vit_features_separate_classes(self):
        train = synthetic.semantic_scenes(8, seed=0)
        test = synthetic.semantic_scenes(4, seed=1)
        torch.manual_seed(0)
        # A small random ViT/16 (timm's reference implementation) keeps the test fast.
        vit = vision_transformer.VisionTransformer(
            embed_dim=96, depth=3, num_heads=3, num_classes=0
        ).eval()
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

        def features(images):
            x = (torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255 - mean) / std
            with torch.no_grad():
                tokens = vit.forward_features(x)[:, 1:]
            f = tokens.reshape(-1, tokens.shape[-1]).numpy()
            return f / np.linalg.norm(f, axis=1, keepdims=True)

        y_train = patch_labels.patch_labels_batch(train.labels, (14, 14), "mode").ravel()
        y_test = patch_labels.patch_labels_batch(test.labels, (14, 14), "mode").ravel()
        f_train, f_test = features(train.images), features(test.images)
        keep, valid = y_train != 255, y_test != 255
        nearest = (f_test[valid] @ f_train[keep].T).argmax(1)
        accuracy = np.mean(y_train[keep][nearest] == y_test[valid])
        majority = np.bincount(y_test[valid]).max() / valid.sum()
        print(
            f"random ViT/16 (96-d, 3 blocks) patch 1-NN accuracy {accuracy:.3f} "
            f"(majority {majority:.3f})"
        )
        self.assertGreater(accuracy, majority + 0.3)


class AerialTilesTest(absltest.TestCase):
    def test_masks_boxes_consistent(self):
        start = time.perf_counter()
        aerial = synthetic.aerial_tiles(24, size=(224, 224), seed=0)
        _report_speed("aerial_tiles 224 px", 24, time.perf_counter() - start)
        self.assertEqual(aerial.images.shape, (24, 224, 224, 3))
        self.assertLen(aerial.fine_names, 13)
        self.assertLen(aerial.super_names, 5)
        self.assertEqual(aerial.fine_to_super.shape, (14,))
        self.assertEqual(aerial.fine_to_super[0], 0)
        np.testing.assert_array_equal(aerial.super_mask, aerial.fine_to_super[aerial.fine_mask])
        np.testing.assert_array_equal(aerial.fine_mask > 0, aerial.instance_mask > 0)
        seen_fine = set()
        ys, xs = np.mgrid[0:224, 0:224]
        centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
        for n in range(24):
            boxes = aerial.boxes[n]
            inst = aerial.instance_mask[n]
            self.assertEqual(int(inst.max()), len(boxes))
            for k, box in enumerate(boxes, start=1):
                self.assertEqual(box.instance_id, k)
                self.assertEqual(box.points.shape, (4, 2))
                pixels = inst.ravel() == k
                self.assertGreater(pixels.sum(), 0)
                self.assertTrue((aerial.fine_mask[n].ravel()[pixels] == box.fine_id).all())
                self.assertEqual(box.super_id, aerial.fine_to_super[box.fine_id])
                inside = Path(box.points.astype(np.float64)).contains_points(
                    centres[pixels], radius=1e-3
                ) | Path(box.points[::-1].astype(np.float64)).contains_points(
                    centres[pixels], radius=1e-3
                )
                self.assertTrue(inside.all(), f"tile {n} instance {k}")
                seen_fine.add(box.fine_id)
        self.assertGreaterEqual(len(seen_fine), 10)
        # Instances of one fine class differ in colour.
        colours = [
            aerial.images[n][aerial.instance_mask[n] == b.instance_id].mean(0)
            for n in range(24)
            for b in aerial.boxes[n]
            if b.fine_id == 7
        ]
        self.assertGreater(np.std(np.array(colours), axis=0).max(), 10)


class VideosTest(absltest.TestCase):
    def test_tracks_boxes_and_motion(self):
        start = time.perf_counter()
        vids = synthetic.videos(4, 20, size=(128, 160), seed=0)
        _report_speed("video frames 128x160", 80, time.perf_counter() - start)
        self.assertEqual(vids.frames.shape, (4, 20, 128, 160, 3))
        self.assertEqual(vids.masks.shape, (4, 20, 128, 160))
        self.assertLen(vids.tracks, 4)
        changes = 0
        for v in range(4):
            category_of, last = {}, None
            for t in range(20):
                boxes, ids, cats = vids.tracks[v][t]
                self.assertEqual(boxes.shape, (len(ids), 4))
                self.assertLen(set(ids.tolist()), len(ids))
                self.assertTrue((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all())
                self.assertTrue((boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 128).all())
                self.assertTrue(
                    (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
                )
                listed = set(ids.tolist())
                visible = set(np.unique(vids.masks[v, t]).tolist()) - {0}
                self.assertLessEqual(listed, visible)
                for box, tid, cat in zip(boxes, ids, cats):
                    self.assertEqual(category_of.setdefault(int(tid), int(cat)), int(cat))
                    ys, xs = np.nonzero(vids.masks[v, t] == tid)
                    tol = 1e-3  # boxes are float32
                    self.assertTrue((xs + 0.5 >= box[0] - tol).all())
                    self.assertTrue((xs + 0.5 <= box[2] + tol).all())
                    self.assertTrue((ys + 0.5 >= box[1] - tol).all())
                    self.assertTrue((ys + 0.5 <= box[3] + tol).all())
                    if last is not None and tid in last:
                        moved = np.abs(box - last[tid]).max()
                        self.assertLess(moved, 20.0)  # smooth: no jumps between frames
                if last is not None and set(last) != listed:
                    changes += 1
                last = {int(i): b for i, b in zip(ids, boxes)}
        self.assertGreater(changes, 0)  # objects enter or leave


@test_util.requires("sklearn")
class SceneClassificationTest(absltest.TestCase):
    def test_classes_separable(self):
        start = time.perf_counter()
        images, labels, names = synthetic.scene_classification(6, size=(128, 128), seed=0)
        _report_speed("scene_classification 128 px", len(images), time.perf_counter() - start)
        self.assertEqual(images.shape, (48, 128, 128, 3))
        np.testing.assert_array_equal(labels, np.repeat(np.arange(8), 6))
        self.assertLen(names, 8)

        def stats(x):
            x = x.astype(np.float32)
            grad = np.abs(np.diff(x, axis=1)).mean((1, 2))
            return np.concatenate([x.mean((1, 2)), x.std((1, 2)), grad], 1)

        test_images, test_labels, _ = synthetic.scene_classification(3, size=(128, 128), seed=1)
        knn = neighbors.KNeighborsClassifier(1).fit(stats(images), labels)
        accuracy = knn.score(stats(test_images), test_labels)
        print(f"scene classification colour-statistics 1-NN accuracy {accuracy:.3f}")
        self.assertGreater(accuracy, 0.6)


class TexturesTest(absltest.TestCase):
    def test_real_and_stand_in_textures(self):
        self.assertEqual(textures.texture_source(), "skimage")
        for name in textures.REAL_TEXTURES:
            for tex in (textures.real_texture(name), textures._procedural_stand_in(name)):
                self.assertEqual(tex.shape, (512, 512))
                self.assertAlmostEqual(float(tex.mean()), 0.0, places=3)
                self.assertAlmostEqual(float(tex.std()), 1.0, places=3)
        self.assertEqual(textures.real_texture("grass", 0.5).shape, (256, 256))
        self.assertEqual(textures.real_texture("grass", 2).shape, (1024, 1024))
        crop = textures.random_crop(
            textures.real_texture("brick"), (600, 100), np.random.default_rng(0)
        )
        self.assertEqual(crop.shape, (600, 100))
        with self.assertRaisesRegex(errors.ConfigError, "brick"):
            textures.real_texture("marble")
        with self.assertRaises(errors.ConfigError):
            textures.real_texture("grass", 0.3)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(errors.ConfigError, "seed"):
            synthetic.semantic_scenes(1, seed=-1)
        with self.assertRaisesRegex(errors.ConfigError, "size"):
            synthetic.aerial_tiles(1, size=(8, 8))
        with self.assertRaisesRegex(errors.ConfigError, "n_frames"):
            synthetic.videos(1, 0)


if __name__ == "__main__":
    absltest.main()
