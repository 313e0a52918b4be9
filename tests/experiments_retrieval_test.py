"""FAIR1M instance identification / retrieval and Scale-MAE image k-NN: protocol logic and runs."""

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from unittest import mock  # noqa: E402

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl.testing import absltest, parameterized  # noqa: E402
from PIL import Image  # noqa: E402

from configs import demo  # noqa: E402
from configs import fair1m as fair1m_config  # noqa: E402
from configs import scalemae as scalemae_config  # noqa: E402
from tests import test_util  # noqa: F401
from vitjax import corruptions, errors, models, run  # noqa: E402
from vitjax.data import fair1m, fewshot  # noqa: E402
from vitjax.data.loaders import object_tiles  # noqa: E402
from vitjax.data.types import ObjectTiles  # noqa: E402
from vitjax.experiments import (
    common,  # noqa: E402
    scalemae_knn,  # noqa: E402
)
from vitjax.experiments import fair1m_retrieval as fr  # noqa: E402

KNN_CFG = common.knn_defaults()
KNN_CFG.update(dict(query_block=64, db_block=128))


def tempdir(test) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_retrieval_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------------------
# A FAIR1M fixture in the real layout whose tile membership is known by construction.
# Coordinates are in units u (a tile is 16 u): the image is 40 u x 32 u (H x W), so a 3 x 2 tile
# grid whose last row is padded.

OBJECTS_U = [  # (name, x1, y1, x2, y2) in units; comments: tiles holding >= 1/3 of the object
    ("Boeing737", 2, 2, 10, 10),  # tile 0
    ("Small Car", 14, 2, 18, 5),  # tiles 0 and 1 (half each)
    ("Tennis Court", 25, 18, 31, 25),  # tile 3
    ("Bus", 0, 30, 4, 34),  # tiles 2 and 4 (half each)
    ("Cargo Truck", 10, 20, 18, 22),  # 3/4 in tile 2, 1/4 in tile 3 -> tile 2 only
    ("Intersection", 12, 35, 20, 38),  # tiles 4 and 5 (half each)
    ("Boeing 737", 20, 8, 24, 12),  # unknown name: reported, never painted
]
EXPECTED_TILES = {  # tile -> fine names it shows
    0: {"Boeing737", "Small Car"},
    1: {"Small Car"},
    2: {"Bus", "Cargo Truck"},
    3: {"Tennis Court"},
    4: {"Bus", "Intersection"},
    5: {"Intersection"},
}


def xml_text(objects, width, height, filename) -> str:
    parts = []
    for name, x1, y1, x2, y2 in objects:
        corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
        pts = "".join(f"<point>{x:.6f},{y:.6f}</point>" for x, y in corners)
        parts.append(
            "<object><coordinate>pixel</coordinate><type>rectangle</type><description>None"
            f"</description><possibleresult><name>{name}</name></possibleresult>"
            f"<points>{pts}</points></object>"
        )
    return (
        f"<annotation><source><filename>{filename}</filename><origin>GF2/GF3</origin></source>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<objects>{''.join(parts)}</objects></annotation>"
    )


def write_fair1m(root: str, unit: int) -> np.ndarray:
    """validation/images/7.tif + validation/labelXmls/7.xml; returns the image."""
    height, width = 40 * unit, 32 * unit
    os.makedirs(os.path.join(root, "validation", "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "validation", "labelXmls"), exist_ok=True)
    image = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(os.path.join(root, "validation", "images", "7.tif"))
    objects = [(n, x1 * unit, y1 * unit, x2 * unit, y2 * unit) for n, x1, y1, x2, y2 in OBJECTS_U]
    with open(os.path.join(root, "validation", "labelXmls", "7.xml"), "w") as f:
        f.write(xml_text(objects, width, height, "7.tif"))
    return image


class FAIR1MTilesTest(parameterized.TestCase):
    def test_membership_selection_and_tiles_follow_the_protocol(self):
        unit, tile = 4, 64
        root = tempdir(self)
        image = write_fair1m(root, unit)
        reader = fair1m.FAIR1MReader(root)
        tiles = object_tiles.select_fair1m_tiles(
            reader, "validation", 1000, tile, per_category=1, seed=5
        )

        # Oracle of the draw: the hand-derived membership through the same greedy sampler.
        membership = np.zeros((6, fair1m.NUM_FINE + 1), bool)
        for t, names in EXPECTED_TILES.items():
            for name in names:
                membership[t, fair1m.fine_id(name)] = True
        expected = fewshot.select_tiles_per_category(membership, 1, 5)
        self.assertEqual([int(c) for c in tiles.category], [c for _, c in expected])
        self.assertEqual(reader.unknown_names[0][1], "Boeing 737")

        padded = np.zeros((3 * tile, 2 * tile, 3), np.uint8)
        padded[: image.shape[0]] = image
        masks = reader.load_masks(reader.samples("validation")[0])
        fine_padded = np.zeros((3 * tile, 2 * tile), np.uint8)
        fine_padded[: image.shape[0]] = masks.fine
        for k, (t, category) in enumerate(expected):
            r, c = divmod(t, 2)
            window = np.s_[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
            np.testing.assert_array_equal(tiles.images[k], padded[window])
            np.testing.assert_array_equal(tiles.fine_mask[k], fine_padded[window])
            self.assertIn(category, np.unique(tiles.fine_mask[k]))
            self.assertEqual(tiles.names[k], f"7__1__0___0.{t}_{r}_{c}")
        # Instance ids are the objects' positions in the XML (1-based).
        boeing = [k for k, (_, c) in enumerate(expected) if c == fair1m.fine_id("Boeing737")]
        self.assertEqual(set(np.unique(tiles.instance_mask[boeing[0]])) - {0}, {1, 2})

    def test_threshold_drops_a_quarter_of_an_instance(self):
        root = tempdir(self)
        write_fair1m(root, 4)
        tiles = object_tiles.select_fair1m_tiles(
            fair1m.FAIR1MReader(root), tile_size=64, per_category=8
        )
        truck = fair1m.fine_id("Cargo Truck")
        self.assertEqual(int((tiles.category == truck).sum()), 1)  # tile 3 holds only 1/4
        self.assertEqual(len(tiles), 6)  # each tile is used once whatever the category

    def test_empty_split_is_a_dataset_error(self):
        root = tempdir(self)
        os.makedirs(os.path.join(root, "validation", "images"))
        with self.assertRaisesRegex(errors.DatasetError, "no labelled image"):
            object_tiles.select_fair1m_tiles(fair1m.FAIR1MReader(root))


# ---------------------------------------------------------------------------------------------
# Outcome hierarchy and correspondence on hand-made features.


def hand_tiles() -> ObjectTiles:
    """2 tiles of 4 x 4 px; with 2-px patches each patch is one 2 x 2 block (grid 2 x 2)."""

    def blocks(values):
        return np.kron(np.asarray(values).reshape(2, 2), np.ones((2, 2), np.int64))

    fine = np.stack([blocks([1, 1, 2, 0]), blocks([3, 4, 0, 1])]).astype(np.uint8)
    instance = np.stack([blocks([1, 1, 2, 0]), blocks([1, 2, 0, 3])]).astype(np.int32)
    return ObjectTiles(
        images=np.zeros((2, 4, 4, 3), np.uint8),
        fine_mask=fine,
        instance_mask=instance,
        category=np.array([1, 3], np.int32),
        source=np.array([0, 0]),
        names=["a", "b"],
        fine_to_super=np.array([0, 1, 1, 2, 3], np.int32),  # fine 1, 2 -> super 1
        fine_names=["bg", "f1", "f2", "f3", "f4"],
        super_names=["s1", "s2", "s3"],
    )


def brute_force_outcomes(table, rows, label_rows, targets, nn):
    """Oracle: the hierarchy written out query by query."""
    counts = dict.fromkeys(
        ["same_patch", "same_fine", "same_super", "other_object", "background"], 0
    )
    for q, lab, target, n in zip(rows, label_rows, targets, nn):
        if target >= 0 and table.tile[n] == table.tile[q] and table.patch[n] == target:
            counts["same_patch"] += 1
        elif table.fine[n] == 0:
            counts["background"] += 1
        elif table.fine[n] == table.fine[lab]:
            counts["same_fine"] += 1
        elif table.super[n] == table.super[lab]:
            counts["same_super"] += 1
        else:
            counts["other_object"] += 1
    return counts


class OutcomeTest(parameterized.TestCase):
    def test_hierarchy_on_hand_made_features(self):
        table = fr.patch_table(hand_tiles(), (2, 2), "centre")
        np.testing.assert_array_equal(table.fine, [1, 1, 2, 0, 3, 4, 0, 1])
        rows, label_rows, targets = fr.query_selection(table, np.arange(4))
        np.testing.assert_array_equal(rows, [0, 1, 2, 4, 5, 7])  # background patches are no queries
        # Each query's feature copies the database row it must retrieve (one-hot features).
        database = np.eye(8, dtype=np.float32)
        wanted = {0: 0, 1: 7, 2: 0, 4: 5, 5: 6, 7: 1}
        queries = database[[wanted[r] for r in rows]] * 2.0
        nn = fr.nearest(queries, database, "dot", None, None, None, KNN_CFG)
        np.testing.assert_array_equal(nn, [wanted[r] for r in rows])
        counts = fr.outcome_counts(table, rows, label_rows, targets, nn)
        expected = dict(same_patch=1, same_fine=2, same_super=1, other_object=1, background=1)
        self.assertEqual({k: counts[k] for k in expected}, expected)
        self.assertEqual(expected, brute_force_outcomes(table, rows, label_rows, targets, nn))
        self.assertEqual(counts["queries"], 6)
        self.assertEqual(counts["upper_bound"], 6)
        self.assertEqual(counts["same_instance"], 1)
        self.assertEqual(counts["any_object"], 5)

    def test_retrieval_never_returns_the_own_tile(self):
        table = fr.patch_table(hand_tiles(), (2, 2), "centre")
        rows, label_rows, targets = fr.query_selection(table, np.arange(4))
        database = np.random.default_rng(7).standard_normal((8, 16)).astype(np.float32)
        nn = fr.nearest(
            database[rows], database, "dot", None, table.group[rows], table.group, KNN_CFG
        )
        self.assertTrue(np.all(table.tile[nn] != table.tile[rows]))
        # Oracle: brute-force argmax over the other tile's rows.
        scores = database[rows].astype(np.float64) @ database.T.astype(np.float64)
        scores[table.tile[rows][:, None] == table.tile[None, :]] = -np.inf
        np.testing.assert_array_equal(nn, np.argmax(scores, axis=1))
        counts = fr.outcome_counts(table, rows, label_rows, targets, nn)
        self.assertEqual(counts["same_patch"], 0)
        # The same neighbours with the database sharded over the run's 8-device mesh.
        on_mesh = fr.nearest(
            database[rows],
            database,
            "dot",
            None,
            table.group[rows],
            table.group,
            KNN_CFG,
            mesh=run.device_mesh(),
        )
        np.testing.assert_array_equal(on_mesh, nn)

    @parameterized.parameters(("original", 32, 24), ("transformed", 24, 24))
    def test_same_patch_count_through_the_correspondence_map(self, mode, queries, bound):
        # Two 64 px tiles, every patch an object; the perturbed tile is shifted by one whole
        # patch (16 px) to the right, so patch (i, j) shows original patch (i, j - 1).
        tiles = ObjectTiles(
            images=np.zeros((2, 64, 64, 3), np.uint8),
            fine_mask=np.ones((2, 64, 64), np.uint8),
            instance_mask=np.ones((2, 64, 64), np.int32),
            category=np.array([1, 1], np.int32),
            source=np.array([0, 1]),
            names=["a", "b"],
            fine_to_super=np.array([0, 1], np.int32),
            fine_names=["bg", "f1"],
            super_names=["s1"],
        )
        table = fr.patch_table(tiles, (4, 4))
        cmap = corruptions.correspondence_map("shift", 16, (64, 64), 16).reshape(-1)
        self.assertEqual(int((cmap < 0).sum()), 4)
        rng = np.random.default_rng(0)
        database = rng.standard_normal((32, 256)).astype(np.float32)
        database /= np.linalg.norm(database, axis=1, keepdims=True)
        # Features of the shifted tiles: the original patch's vector where there is one, else a
        # weak random vector (the black border entering the tile).
        perturbed = 0.05 * rng.standard_normal((32, 256)).astype(np.float32)
        target_rows = table.tile * 16 + cmap[table.patch]
        has = cmap[table.patch] >= 0
        perturbed[has] = database[target_rows[has]]
        rows, label_rows, targets = fr.query_selection(table, cmap, mode)
        nn = fr.nearest(perturbed[rows], database, "dot", None, None, None, KNN_CFG)
        counts = fr.outcome_counts(table, rows, label_rows, targets, nn)
        self.assertEqual(counts["queries"], queries)
        self.assertEqual(counts["upper_bound"], bound)
        self.assertEqual(counts["same_patch"], 24)  # every query with a counterpart finds it

    def test_photometric_correspondence_is_the_identity(self):
        cfg = fair1m_config.fair1m_retrieval_defaults()
        for name in ("clean", "noise", "box_blur"):
            np.testing.assert_array_equal(
                fr.correspondence(name, 8.0, 224, 16, cfg), np.arange(196)
            )
        cases = fr.perturbation_cases(cfg)
        self.assertLen(cases, 1 + 5 * 4)
        self.assertEqual(cases[0], ("clean", 0.0))
        cfg.perturbations = ("shift", "warp")
        with self.assertRaisesRegex(errors.ConfigError, "warp"):
            fr.perturbation_cases(cfg)


# ---------------------------------------------------------------------------------------------
# Scale-MAE k-NN pieces.


def weighted_knn_oracle(train, train_labels, test, k, temperature, num_classes):
    """DINO's weighted vote by brute force: cosine sims, top-k, sum exp(s / T) per class."""
    a = test / np.linalg.norm(test, axis=1, keepdims=True)
    b = train / np.linalg.norm(train, axis=1, keepdims=True)
    sims = a @ b.T
    preds = []
    for row in sims:
        top = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(num_classes)
        np.add.at(votes, train_labels[top], np.exp(row[top] / temperature))
        preds.append(np.argmax(votes))
    return np.asarray(preds)


class ScaleMAEKnnTest(parameterized.TestCase):
    @parameterized.parameters((None,), ([0, 3, 5],))
    def test_weighted_knn_matches_brute_force(self, drop):
        rng = np.random.default_rng(1)
        centres = rng.standard_normal((4, 12)) * 2
        train_labels = np.repeat(np.arange(4), 10)
        test_labels = np.repeat(np.arange(4), 6)
        train = centres[train_labels] + rng.standard_normal((40, 12))
        test = centres[test_labels] + rng.standard_normal((24, 12))
        acc = scalemae_knn.knn_accuracy(
            train,
            train_labels,
            test,
            test_labels,
            4,
            k=5,
            temperature=0.07,
            drop_dims=None if drop is None else np.array(drop),
        )
        keep = np.setdiff1d(np.arange(12), drop or [])
        oracle = weighted_knn_oracle(train[:, keep], train_labels, test[:, keep], 5, 0.07, 4)
        self.assertAlmostEqual(acc, float(np.mean(oracle == test_labels)))
        on_mesh = scalemae_knn.knn_accuracy(
            train,
            train_labels,
            test,
            test_labels,
            4,
            k=5,
            temperature=0.07,
            drop_dims=None if drop is None else np.array(drop),
            mesh=run.device_mesh(),
        )
        self.assertEqual(on_mesh, acc)

    def test_search_settings_come_from_config_knn(self):
        from vitjax import knn

        rng = np.random.default_rng(3)
        train, test = rng.standard_normal((40, 8)), rng.standard_normal((10, 8))
        labels = np.arange(40) % 4
        knn_cfg = ml_collections.ConfigDict(
            dict(query_block=8, db_block=16, compute_dtype="bfloat16", metric="dot", k=3)
        )
        with mock.patch.object(knn, "search", wraps=knn.search) as spy:
            scalemae_knn.knn_accuracy(train, labels, test, labels[:10], 4, k=5, knn_cfg=knn_cfg)
            fr.nearest(test, train, "l2", None, None, None, knn_cfg)
            scalemae_knn.knn_accuracy(train, labels, test, labels[:10], 4, k=5)
        got = [
            (
                c.kwargs["k"],
                c.kwargs["metric"],
                c.kwargs["query_block"],
                c.kwargs["db_block"],
                str(c.kwargs["compute_dtype"]),
            )
            for c in spy.call_args_list
        ]
        self.assertEqual(
            got,
            [
                (5, "cosine", 8, 16, "bfloat16"),  # the experiment's own k and metric
                (1, "l2", 8, 16, "bfloat16"),
                (5, "cosine", knn.DEFAULT_QUERY_BLOCK, knn.DEFAULT_DB_BLOCK, "float32"),
            ],
        )

    @parameterized.parameters(("clip", 16), ("siglip", 16), ("dino", 16))
    def test_cls_arm_is_the_family_global_representation(self, family, patch):
        c = demo.get_config("test")
        c.experiments = ("scalemae_knn",)
        c.models = (f"{family}:ti:{patch}:none",)
        c.model_depth = 1
        c.scalemae_knn.sizes = (32,)
        c.scalemae_knn.removed = (0,)
        seen = []
        original = scalemae_knn.image_features

        def spy(ctx, model, source, *args):
            out = original(ctx, model, source, *args)
            seen.append((model, source, out))
            return out

        workdir = tempfile.mkdtemp(prefix="vitjax_global_")
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        with mock.patch.object(scalemae_knn, "image_features", spy):
            run.run(c, workdir)
        self.assertNotEmpty(seen)
        model, source, out = seen[0]
        images = np.stack([source[i] for i in range(len(source))])
        want = model.module.apply(
            {"params": model.params}, models.preprocess(model.spec, images), layers=(-1,)
        )["global"]
        want = np.asarray(next(iter(want.values())))
        # CLIP's global vector is the projected embedding (width E != D); the others keep D.
        self.assertEqual(want.shape[1] != model.spec.width, family == "clip")
        np.testing.assert_allclose(out["cls"], want, atol=2e-5, rtol=1e-4)

    def test_synthetic_identity_names_the_chosen_images(self):
        cfg = scalemae_config.scalemae_knn_defaults()
        cfg.synthetic.update(dict(n_per_class=4, image_size=32, train_per_class=2))
        base = scalemae_knn.load_split("synthetic", cfg, 0).identity
        self.assertEqual(scalemae_knn.load_split("synthetic", cfg, 0).identity, base)
        cfg.synthetic.train_per_class = 1
        self.assertNotEqual(scalemae_knn.load_split("synthetic", cfg, 0).identity, base)
        cfg.synthetic.train_per_class = 2
        cfg.synthetic.test_per_class = 1
        self.assertNotEqual(scalemae_knn.load_split("synthetic", cfg, 0).identity, base)

    def test_missing_roots_name_the_field(self):
        cfg = scalemae_config.scalemae_knn_defaults()
        for name, layout in (("ucmerced", "Images"), ("resisc45", "NWPU-RESISC45")):
            cfg[name].root = os.path.join(tempdir(self), "missing")
            with self.assertRaisesRegex(
                errors.ConfigError, rf"config\.scalemae_knn\.{name}\.root=.*{layout}"
            ):
                scalemae_knn.load_split(name, cfg, 0)
        del cfg["k"]
        with self.assertRaisesRegex(errors.ConfigError, r"config\.scalemae_knn lacks.*'k'"):
            scalemae_knn._check(cfg)

    def test_simulated_gsd_matches_pillow(self):
        image = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        out = scalemae_knn.simulate_gsd(image, 32, 8)
        pil = Image.fromarray(image).resize((32, 32), Image.Resampling.BICUBIC)
        pil = pil.resize((8, 8), Image.Resampling.BICUBIC).resize(
            (32, 32), Image.Resampling.BICUBIC
        )
        np.testing.assert_array_equal(out, np.asarray(pil))
        same = scalemae_knn.simulate_gsd(image, 32, 32)
        np.testing.assert_array_equal(
            same, np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.BICUBIC))
        )


# ---------------------------------------------------------------------------------------------
# One-step runs through the entry point.


def write_ucmerced(root: str) -> None:
    rng = np.random.default_rng(4)
    for cls, colour in (("agricultural", 60), ("airplane", 200)):
        folder = os.path.join(root, "Images", cls)
        os.makedirs(folder)
        for i in range(4):
            image = np.clip(colour + 20 * rng.standard_normal((40, 40, 3)), 0, 255)
            Image.fromarray(image.astype(np.uint8)).save(os.path.join(folder, f"{cls}{i:02d}.tif"))


class Fair1mConfigTest(absltest.TestCase):
    def test_missing_root_names_the_field(self):
        cfg = fair1m_config.fair1m_retrieval_defaults()
        cfg.dataset = "fair1m"
        for root in ("", os.path.join(tempdir(self), "missing")):
            cfg.root = root
            with self.assertRaisesRegex(
                errors.ConfigError,
                r"config\.fair1m_retrieval\.root=.*--config\.fair1m_retrieval\.root.*labelXml",
            ):
                fr.load_tiles(cfg, 0)
        del cfg["perturbations"]
        with self.assertRaisesRegex(errors.ConfigError, r"fair1m_retrieval\.defaults\(\)"):
            fr._check(cfg)


class EndToEndTest(absltest.TestCase):
    def test_fair1m_retrieval_on_the_real_layout(self):
        root = tempdir(self)
        write_fair1m(root, 7)  # 280 x 224 px, 112 px tiles: 7 x 7 (ViT/16) and 8 x 8 (ViT/14)
        c = fair1m_config.get_config("synthetic")
        c.models = ("dino:ti:16:none", "dinov2_reg:ti:14:none")
        c.model_depth = 1
        s = c.fair1m_retrieval
        s.dataset, s.root, s.tile_size, s.per_category = "fair1m", root, 112, 1
        s.perturbations = ("shift", "rotate", "noise")
        s.levels.shift, s.levels.rotate, s.levels.noise = (4,), (20.0,), (30.0,)
        s.removed = (0, 10)
        workdir = tempdir(self)
        results = run.run(c, workdir)
        rows = results["experiments"]["fair1m_retrieval"]["tables"]["outcomes"]
        self.assertLen(rows, 2 * 4 * 2 * 2)  # models x cases x removed x modes
        for r in rows:
            parts = sum(r[k] for k in fr.metrics.RETRIEVAL_OUTCOMES)
            self.assertEqual(parts, r["queries"])
            self.assertLessEqual(r["same_patch"], r["upper_bound"])
            self.assertGreater(r["queries"], 0)
            if r["mode"] == "retrieval":
                self.assertEqual(r["same_patch"], 0)
            if r["mode"] == "identification" and r["perturbation"] in ("clean", "shift"):
                self.assertEqual(r["upper_bound"], r["queries"])
        with open(os.path.join(workdir, "results.json")) as f:
            self.assertIn("fair1m_retrieval", json.load(f)["experiments"])
        for fig in ("identification", "retrieval"):
            self.assertTrue(
                os.path.exists(os.path.join(workdir, "figures", f"fair1m_retrieval_{fig}.png"))
            )

    def test_scalemae_knn_on_uc_merced_layout(self):
        root = tempdir(self)
        write_ucmerced(root)
        c = scalemae_config.get_config("synthetic")
        c.experiments = ("scalemae_knn",)
        c.models = ("scalemae:ti:16:none", "dino:ti:16:none")
        c.model_depth = 1
        s = c.scalemae_knn
        s.datasets = ("ucmerced",)
        s.ucmerced.root, s.ucmerced.train_per_class = root, 2
        s.load_size, s.input_size, s.sizes, s.removed = 48, 64, (64, 32), (0, 100)
        results = run.run(c, tempdir(self))
        rows = results["experiments"]["scalemae_knn"]["tables"]["knn"]
        self.assertLen(rows, 2 * 2 * 2 * 2)  # models x sizes x representations x removed
        for r in rows:
            self.assertTrue(0.0 <= r["accuracy"] <= 1.0)
            expected = 64 / r["size"] if r["family"] == "scalemae" else 0.0
            self.assertEqual(r["gsd_ratio_given"], expected)
        # The two classes differ in brightness: the CLS k-NN of full-size images separates them.
        full = [r for r in rows if r["size"] == 64 and r["removed"] == 0]
        self.assertTrue(all(r["accuracy"] > 0.5 for r in full))


if __name__ == "__main__":
    absltest.main()
