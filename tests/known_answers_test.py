"""Known answers, end to end: hand-built models whose features are known, through the real pipeline.

The models of `vitjax.models.known` run through `vitjax.run.run` (config -> synthetic data ->
tiling -> extraction -> feature store -> engines -> experiment -> results.json) on synthetic inputs
designed so that every answer can be computed by hand: scenes made of 16 x 16 cells aligned with
the patch grid, each cell one pattern (a flat colour, or a colour with a bright top or left half)
of one class; videos of flat-coloured boxes on a grey background moving by whole patches. The
numpy oracle below recomputes each model's tokens from the raw pixels (the formula documented in
`vitjax/models/known.py`, LayerNorm included), and the k-NN, scores and counts from those, with no
vitjax code; the results read back from results.json must equal them.
"""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import json
import os
import shutil
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized
from PIL import Image

from configs import bdd100k as bdd100k_config
from configs import common as common_config
from configs import fair1m as fair1m_config
from configs import scalemae as scalemae_config
from vitjax import errors, models, run
from vitjax.data import synthetic
from vitjax.data.loaders import object_tiles
from vitjax.experiments import common
from vitjax.models import known

P = 16
TILE = 224
GRID = TILE // P
SCENE_HW = (TILE, 2 * TILE)
EVAL_SEED_OFFSET = 1_000_003  # `data/loaders/segmentation.py: load_synthetic` draws the evaluation scenes with seed + this
CLASSES = ("road", "building", "vegetation", "sky")
# (class, RGB, texture): texture 0 flat, 1 top half brighter (by TEXTURE[1]), 2 left half brighter
# (by TEXTURE[2]; unequal amplitudes, so that no flat query is exactly as close to both).
PATTERNS = (
    (0, (90, 90, 90), 0),
    (0, (150, 110, 60), 0),
    (1, (180, 60, 60), 0),
    # Same mean colour as pattern 0: only the vertical half-difference tells them apart.
    (1, (90, 90, 90), 1),
    (2, (60, 150, 70), 0),
    # Only the horizontal half-difference tells (a swapped axis confuses classes 1 and 2).
    (2, (90, 90, 90), 2),
    (3, (100, 140, 200), 0),
    (3, (200, 200, 120), 0),
)
# Evaluation-only patterns: the nearest training pattern decides, right or wrong.
NOVEL = (
    (0, (165, 75, 65), 0),  # nearest: (180, 60, 60), class 1 -> error
    (2, (85, 135, 185), 0),  # nearest: (100, 140, 200), class 3 -> error
    (1, (100, 100, 100), 1),  # nearest: (90, 90, 90) top-bright, class 1 -> right
)
TEXTURE = (0, 40, 28)
LN_EPS = 1e-6
MODELS = ("colour", "colour_planted", "position", "constant")


# ---------------------------------------------------------------------------------------------
# Synthetic inputs with exact answers.


def _paint_cell(image, row, col, rgb, texture):
    cell = np.empty((P, P, 3), np.int32)
    cell[:] = rgb
    if texture == 1:
        cell[: P // 2] += TEXTURE[1]
        cell[P // 2 :] -= TEXTURE[1]
    elif texture == 2:
        cell[:, : P // 2] += TEXTURE[2]
        cell[:, P // 2 :] -= TEXTURE[2]
    image[row * P : (row + 1) * P, col * P : (col + 1) * P] = cell


def grid_scenes(n, size=SCENE_HW, seed=0, **_):
    """Stand-in for `synthetic.semantic_scenes`: cell-aligned patterns, labels = their class.

    Rectangles of cells are painted with random patterns; evaluation scenes (seed >= the offset
    `load_synthetic` adds) also get the NOVEL patterns.
    """
    h, w = size
    gh, gw = h // P, w // P
    pool = PATTERNS + (NOVEL if seed >= EVAL_SEED_OFFSET else ())
    images = np.empty((n, h, w, 3), np.uint8)
    labels = np.empty((n, h, w), np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, 77, i])
        cells = np.full((gh, gw), rng.integers(len(PATTERNS)), np.int64)
        for _ in range(10):
            rh, rw = rng.integers(2, 7, size=2)
            r0, c0 = rng.integers(0, gh - 1), rng.integers(0, gw - 1)
            cells[r0 : r0 + rh, c0 : c0 + rw] = rng.integers(len(pool))
        image = np.empty((h, w, 3), np.int32)
        for r in range(gh):
            for c in range(gw):
                cls, rgb, texture = pool[cells[r, c]]
                _paint_cell(image, r, c, rgb, texture)
                labels[i, r * P : (r + 1) * P, c * P : (c + 1) * P] = cls
        images[i] = image
    return synthetic.SemanticScenes(images, labels, list(CLASSES))


VIDEO_COLOURS = ((200, 40, 40), (40, 180, 60), (50, 70, 200), (220, 200, 60))


def colour_videos(n_videos, n_frames, size=SCENE_HW, seed=0, **_):
    """Stand-in for `synthetic.videos`: one 48 x 48 box per 48-pixel band, each of its own flat
    colour, moving sideways by one patch per frame on a grey background (no occlusion)."""
    h, w = size
    frames = np.full((n_videos, n_frames, h, w, 3), 128, np.uint8)
    masks = np.zeros((n_videos, n_frames, h, w), np.uint16)
    tracks = []
    for v in range(n_videos):
        rng = np.random.default_rng([seed, 78, v])
        order = rng.permutation(len(VIDEO_COLOURS))
        cols = rng.integers(0, w // P - 3, size=len(order))
        steps = rng.choice([-1, 1], size=len(order))
        video = []
        for t in range(n_frames):
            boxes, ids, cats = [], [], []
            for k, colour in enumerate(order):
                y0 = P + 3 * P * k
                if not 0 <= cols[k] + steps[k] <= w // P - 3:
                    steps[k] = -steps[k]
                cols[k] += steps[k] if t else 0
                x0 = int(cols[k]) * P
                frames[v, t, y0 : y0 + 3 * P, x0 : x0 + 3 * P] = VIDEO_COLOURS[colour]
                masks[v, t, y0 : y0 + 3 * P, x0 : x0 + 3 * P] = k + 1
                boxes.append((x0, y0, x0 + 3 * P, y0 + 3 * P))
                ids.append(k + 1)
                cats.append(k % 3)
            video.append(
                (
                    np.asarray(boxes, np.float32),
                    np.asarray(ids, np.int32),
                    np.asarray(cats, np.int32),
                )
            )
        tracks.append(video)
    return synthetic.Videos(frames, tracks, ["car", "pedestrian", "bicycle"], masks)


# ---------------------------------------------------------------------------------------------
# The numpy oracle: tokens from raw pixels, k-NN, scores. No vitjax code.


def oracle_tokens(kind, images, native_grid=(GRID, GRID)):
    """float64 [N, gh, gw, 16] final-LayerNorm tokens of known model `kind` (module docstring of
    vitjax/models/known.py), computed from uint8 [N, H, W, 3] images."""
    x = np.asarray(images, np.float64) / 255.0
    n, h, w, _ = x.shape
    gh, gw = h // P, w // P
    cells = x.reshape(n, gh, P, gw, P, 3)
    grey = cells.mean(axis=-1)
    half = P // 2
    stats = np.concatenate(
        [
            cells.mean(axis=(2, 4)),
            (grey[:, :, :half].mean(axis=(2, 4)) - grey[:, :, half:].mean(axis=(2, 4)))[..., None],
            (grey[..., :half].mean(axis=(2, 4)) - grey[..., half:].mean(axis=(2, 4)))[..., None],
        ],
        axis=-1,
    )
    tokens = np.zeros((n, gh, gw, 16))
    if kind in ("colour", "colour_planted"):
        tokens[..., 0:5] = stats
        tokens[..., 5:10] = -stats
    tokens[..., 10] = known.CONSTANT
    tokens[..., 11] = -known.CONSTANT
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    if kind == "colour_planted":
        assert (gh, gw) == tuple(native_grid)
        theta = 2 * np.pi * (rows * gw + cols) / (gh * gw)
        code = [np.cos(theta), -np.cos(theta), np.sin(theta), -np.sin(theta)]
        tokens[..., 12:16] = known.PLANTED * np.stack(code, axis=-1)
    elif kind == "position":
        assert (gh, gw) == tuple(native_grid)
        u, v = 2 * rows / (gh - 1) - 1, 2 * cols / (gw - 1) - 1
        tokens[..., 12:16] = known.POSITION * np.stack([u, -u, v, -v], axis=-1)
    if kind == "constant":
        return np.broadcast_to(np.tile([1.0, -1.0], 8), tokens.shape).copy()
    mean = tokens.mean(axis=-1, keepdims=True)
    var = ((tokens - mean) ** 2).mean(axis=-1, keepdims=True)
    return (tokens - mean) / np.sqrt(var + LN_EPS)


def tiles_of(images):
    """The 224 x 224 tiles of 224 x 448 images, row-major per image: [2N, 224, 224, ...]."""
    images = np.asarray(images)
    halves = np.stack([images[:, :, :TILE], images[:, :, TILE:]], axis=1)
    return halves.reshape(-1, TILE, TILE, *images.shape[3:])


def centre_labels(label_tiles):
    """int [T, 14, 14] label of the pixel under each patch centre."""
    centres = np.arange(GRID) * P + P // 2
    return label_tiles[:, centres][:, :, centres].astype(np.int64)


def nearest(queries, support, metric="dot", drop=()):
    """Row of the most similar support vector (ties: lowest row), float64 brute force."""
    q, s = np.array(queries, np.float64), np.array(support, np.float64)
    if len(drop):
        q[:, list(drop)] = 0.0
        s[:, list(drop)] = 0.0
    if metric == "cosine":
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        s /= np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-300)
    return np.argmax(q @ s.T, axis=1)


def miou(gt, pred, num_classes):
    """Cityscapes 'present' mIoU: predictions outside [0, C) are errors, nobody's false positive."""
    gt, pred = np.asarray(gt).ravel(), np.asarray(pred).ravel()
    keep = gt < num_classes
    gt, pred = gt[keep], pred[keep]
    ious = []
    for c in range(num_classes):
        tp = np.sum((gt == c) & (pred == c))
        union = np.sum(gt == c) + np.sum((pred == c) & (gt != c))
        if union:
            ious.append(tp / union)
    return float(np.mean(ious))


def pixel_miou(patch_pred, eval_labels):
    """mIoU of [2N, 14, 14] tile patch predictions, each spread over its 16 x 16 pixels."""
    pixels = np.kron(patch_pred, np.ones((1, P, P), np.int64))
    return miou(tiles_of(eval_labels), pixels, len(CLASSES))


def knn_miou(kind, train, evals, metric="cosine", drop=(), label_grid=None):
    """Oracle few-shot k-NN (1-NN) pixel mIoU of model `kind`."""
    support = oracle_tokens(kind, tiles_of(train.images)).reshape(-1, 16)
    queries = oracle_tokens(kind, tiles_of(evals.images)).reshape(-1, 16)
    labels = centre_labels(tiles_of(train.labels))
    if label_grid is not None:
        labels = label_grid(labels)
    labels = labels.reshape(-1)
    pred = labels[nearest(queries, support, metric, drop)].reshape(-1, GRID, GRID)
    return pixel_miou(pred, evals.labels)


# ---------------------------------------------------------------------------------------------
# The run.


def make_config():
    """Every experiment on the cell-aligned scenes, the four known models, small sizes.

    k-NN uses cosine similarity: with dims dropped, a dot product is still scaled by each token's
    LayerNorm factor (which the planted dims enter), while cosine renormalises what remains, so
    removing the planted dims gives exactly the clean model's similarities. The probe gets a large
    learning rate: the known features are small (0.01-1 per dim).
    """
    c = common_config.get_base()
    c.seed = 0
    c.dataset = "synthetic"
    c.models = tuple(f"known:{kind}" for kind in MODELS)
    c.experiments = (
        "fewshot",
        "variance",
        "robustness",
        "tiling_vs_full",
        "fair1m_retrieval",
        "tracking",
        "scalemae_knn",
    )
    c.data.synthetic_hw = SCENE_HW
    c.data.synthetic_groups = 2
    c.data.synthetic_eval_images = 3
    c.data.train_per_group = 2
    c.data.tile_size = TILE
    c.data.tile_out = TILE
    c.extract.batch_size = 16
    c.knn.metric = "cosine"
    c.probe.epochs = 60
    c.probe.batch_size = 512
    c.probe.learning_rates = (0.1,)
    c.probe.weight_decays = (0.0,)
    c.probe.val_fraction = 0.0
    c.fewshot.shots = (2,)
    c.fewshot.table_shots = 2
    c.variance.removed = (0, 4)
    c.variance.linear_removed = ()
    c.variance.top_n = 4
    c.variance.batchnorm = False
    c.variance.overlap_datasets = ("synthetic", "synthetic_aerial")
    c.robustness.blur_levels = (8, 16, 32, 64)
    c.robustness.noise_levels = (20.0,)
    c.robustness.freq_bands = ()
    c.tiling_vs_full.full_hw = SCENE_HW
    c.tiling_vs_full.methods = ("knn",)
    fair1m_config.add_demo(c)
    f = c.fair1m_retrieval
    f.tile_size = TILE
    f.synthetic_candidates = 16
    f.perturbations = ("shift",)
    f.levels.shift = (P, 2 * P)
    f.removed = (0,)
    bdd100k_config.add_demo(c)
    t = c.tracking
    t.geometries = ("224x448/224",)
    t.gaps = (1, 3)
    t.synthetic_videos = 2
    t.synthetic_frames = 5
    t.synthetic_hw = SCENE_HW
    scalemae_config.add_knn_demo(c)
    s = c.scalemae_knn
    s.synthetic.n_per_class = 4
    s.synthetic.train_per_class = 2
    s.synthetic.image_size = 256
    s.load_size = 256
    s.input_size = TILE
    s.sizes = (224, 56)
    s.removed = (0,)
    s.representations = ("mean_patch",)
    return c


class KnownAnswersTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = tempfile.mkdtemp(prefix="vitjax_known_")
        cls.config = make_config()
        with (
            mock.patch.object(synthetic, "semantic_scenes", grid_scenes),
            mock.patch.object(synthetic, "videos", colour_videos),
        ):
            common.clear_data_cache()
            try:
                run.run(cls.config, cls.workdir)
            finally:
                common.clear_data_cache()
        with open(os.path.join(cls.workdir, "results.json"), encoding="utf-8") as f:
            cls.results = json.load(f)
        c = cls.config
        n_train = c.data.synthetic_groups * c.fewshot.shots[0]
        cls.train = grid_scenes(n_train, SCENE_HW, c.seed)
        cls.evals = grid_scenes(c.data.synthetic_eval_images, SCENE_HW, c.seed + EVAL_SEED_OFFSET)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.workdir, ignore_errors=True)
        super().tearDownClass()

    def rows(self, experiment, table, **match):
        rows = self.results["experiments"][experiment]["tables"][table]
        return [r for r in rows if all(r.get(k) == v for k, v in match.items())]

    # -- The models are marked as what they are. ---------------------------------------------

    def test_report_marks_known_answer_models(self):
        self.assertFalse(self.results["random_weights"])
        for m in self.results["models"]:
            self.assertFalse(m["random_weights"], m["name"])
            self.assertTrue(m["weights_hash"].startswith("known-"), m["weights_hash"])
        with open(os.path.join(self.workdir, "report.md"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("KNOWN-ANSWER MODELS", text)
        self.assertNotIn("RANDOM WEIGHTS", text)
        self.assertEqual(text.count("| known-answer |"), len(MODELS))

    # -- Few-shot k-NN and linear probe. ----------------------------------------------------

    @parameterized.parameters(*MODELS)
    def test_fewshot_knn_equals_numpy(self, kind):
        (row,) = self.rows("fewshot", "scores", model=f"known_{kind}16", method="knn")
        self.assertAlmostEqual(row["miou"], knn_miou(kind, self.train, self.evals), places=12)

    @test_util.requires("sklearn")
    def test_fewshot_linear_equals_sklearn(self):
        from sklearn.linear_model import LogisticRegression

        support = oracle_tokens("colour", tiles_of(self.train.images)).reshape(-1, 16)
        queries = oracle_tokens("colour", tiles_of(self.evals.images)).reshape(-1, 16)
        labels = centre_labels(tiles_of(self.train.labels)).reshape(-1)
        pred = LogisticRegression(C=100.0, max_iter=5000).fit(support, labels).predict(queries)
        (row,) = self.rows("fewshot", "scores", model="known_colour16", method="linear")
        self.assertAlmostEqual(
            row["miou"], pixel_miou(pred.reshape(-1, GRID, GRID), self.evals.labels), places=9
        )

    @parameterized.named_parameters(
        ("transposed", lambda labels: labels.transpose(0, 2, 1)),
        ("shifted_one_row", lambda labels: np.roll(labels, 1, axis=1)),
        ("shifted_one_tile", lambda labels: np.roll(labels, 1, axis=0)),
    )
    def test_wrong_label_grid_changes_the_answer(self, wrong):
        # The oracle with a broken patch-label grid disagrees with the pipeline by a wide margin,
        # so the equality above would catch the same bug inside the pipeline.
        (row,) = self.rows("fewshot", "scores", model="known_colour16", method="knn")
        broken = knn_miou("colour", self.train, self.evals, label_grid=wrong)
        self.assertGreater(abs(row["miou"] - broken), 0.05)

    # -- Variance. ----------------------------------------------------------------------------

    def test_variance_ranks_the_planted_dims_first(self):
        feats = oracle_tokens("colour_planted", tiles_of(self.train.images)).reshape(-1, 16)
        var = feats.var(axis=0)
        top = np.argsort(-var, kind="stable")[:4]
        self.assertCountEqual(top.tolist(), known.PLANTED_DIMS)
        self.assertGreater(var[top].min(), 100 * np.delete(var, top).max())
        (row,) = self.rows("variance", "overview", model="known_colour_planted16")
        self.assertAlmostEqual(row["var_frac_top4"], var[top].sum() / var.sum(), places=5)
        self.assertAlmostEqual(row["var_frac_top1"], var.max() / var.sum(), places=5)
        # Class-independent: the same dims come first on the aerial tiles.
        (overlap,) = self.rows("variance", "overlap", model="known_colour_planted16")
        self.assertEqual(overlap["overlap"], 1.0)

    def test_variance_removal_restores_the_clean_score(self):
        (planted,) = self.rows("variance", "overview", model="known_colour_planted16")
        (clean,) = self.rows("variance", "overview", model="known_colour16")
        clean_miou = knn_miou("colour", self.train, self.evals)
        self.assertAlmostEqual(clean["knn_full"], clean_miou, places=12)
        self.assertAlmostEqual(
            planted["knn_full"], knn_miou("colour_planted", self.train, self.evals), places=12
        )
        self.assertLess(planted["knn_full"], clean_miou - 0.2)
        self.assertAlmostEqual(planted["knn_top-variance4_removed"], clean_miou, places=12)
        self.assertAlmostEqual(
            knn_miou("colour_planted", self.train, self.evals, drop=known.PLANTED_DIMS),
            clean_miou,
            places=12,
        )
        self.assertLess(planted["knn_random4_removed"], clean_miou - 0.2)

    # -- Robustness. --------------------------------------------------------------------------

    @parameterized.parameters("knn", "linear")
    def test_robustness_noise_leaves_colour_unchanged_blur_lowers_it(self, method):
        rows = self.rows("robustness", "scores", model="known_colour16", method=method)
        by = {(r["corruption"], r["level"]): r["miou"] for r in rows}
        clean = by[("clean", 0.0)]
        if method == "knn":
            self.assertAlmostEqual(clean, knn_miou("colour", self.train, self.evals), places=12)
        for level in self.config.robustness.noise_levels:
            self.assertEqual(by[("noise", float(level))], clean)
        blurred = [by[("blur", float(level))] for level in self.config.robustness.blur_levels]
        curve = [clean, *blurred]
        self.assertTrue(all(a > b for a, b in zip(curve, curve[1:])), curve)

    # -- FAIR1M identification under whole-patch shifts. ----------------------------------------

    @parameterized.parameters("colour", "position")
    def test_fair1m_identification_under_patch_shifts(self, kind):
        f = self.config.fair1m_retrieval
        tiles = object_tiles.select_synthetic_tiles(
            f.synthetic_candidates, f.tile_size, f.per_category, f.area_threshold, self.config.seed
        )
        database = oracle_tokens(kind, tiles.images).reshape(-1, 16)
        centres = np.arange(GRID) * P + P // 2
        fine = tiles.fine_mask[:, centres][:, :, centres]
        t_idx, r_idx, c_idx = np.nonzero(fine)
        scores = database @ database.T
        self_score = np.diag(scores).copy()
        np.fill_diagonal(scores, -np.inf)
        # Textured: no other original patch comes within 1e-4 of a patch's own score (float32
        # resolves about 1e-5 here), so the nearest neighbour of an exact copy is unambiguous.
        textured = self_score - scores.max(axis=1) > 1e-4
        for level in f.levels.shift:
            step = int(level) // P
            shifted = np.zeros_like(tiles.images)
            shifted[:, :, int(level) :] = tiles.images[:, :, : -int(level)]
            queries = oracle_tokens(kind, shifted)[t_idx, r_idx, c_idx]
            has_target = c_idx >= step
            target = t_idx * GRID * GRID + r_idx * GRID + (c_idx - step)
            same = has_target & (np.argmax(queries @ database.T, axis=1) == target)
            (row,) = self.rows(
                "fair1m_retrieval",
                "outcomes",
                model=f"known_{kind}16",
                mode="identification",
                perturbation="shift",
                level=float(level),
                removed=0,
            )
            self.assertEqual(row["queries"], len(t_idx))
            self.assertEqual(row["upper_bound"], int(has_target.sum()))
            self.assertEqual(row["same_patch"], int(same.sum()))
            if kind == "colour":
                # Every textured query is found (here every query with a counterpart is).
                is_textured = has_target & textured[np.where(has_target, target, 0)]
                self.assertTrue(same[is_textured].all())
                self.assertGreater(is_textured.sum(), 0.8 * has_target.sum())
                self.assertEqual(row["same_patch"], row["upper_bound"])
            else:
                self.assertEqual(row["same_patch"], 0)
                self.assertGreater(row["upper_bound"], 100)

    # -- Tracking. ----------------------------------------------------------------------------

    @parameterized.parameters("colour", "constant")
    def test_tracking_association(self, kind):
        t = self.config.tracking
        vids = colour_videos(
            t.synthetic_videos, t.synthetic_frames, t.synthetic_hw, self.config.seed
        )
        for gap in t.gaps:
            first_right = [[], []]
            chance = []
            for video in vids.tracks:
                for a, b in zip(video, video[gap:]):
                    # Constant features: every candidate ties, the first (lowest row) is chosen.
                    first_right[0].extend(a[1] == b[1][0])
                    first_right[1].extend(a[2] == b[2][0])
                    chance.extend([1.0 / len(b[1])] * len(a[1]))
            (row,) = self.rows("tracking", "association", model=f"known_{kind}16", gap=gap)
            self.assertEqual(row["queries"], len(chance))
            if kind == "colour":
                self.assertEqual(row["instance_acc"], 1.0)
                self.assertEqual(row["category_acc"], 1.0)
            else:
                self.assertAlmostEqual(row["instance_acc"], np.mean(first_right[0]), places=12)
                self.assertAlmostEqual(row["category_acc"], np.mean(first_right[1]), places=12)
                self.assertAlmostEqual(row["instance_acc"], np.mean(chance), places=12)

    # -- Tiling vs full image, Scale-MAE k-NN. ----------------------------------------------------

    def test_tiling_vs_full_equal_numpy(self):
        expected = knn_miou("colour", self.train, self.evals)
        rows = self.rows("tiling_vs_full", "scores", model="known_colour16", method="knn")
        self.assertEqual(sorted(r["input"] for r in rows), ["full", "tiles"])
        for r in rows:
            self.assertAlmostEqual(r["miou"], expected, places=12, msg=r["input"])

    def test_scalemae_knn_equals_numpy(self):
        from vitjax.data import fewshot

        s = self.config.scalemae_knn
        side = s.synthetic.image_size
        images, labels, names = synthetic.scene_classification(
            s.synthetic.n_per_class, size=(side, side), seed=self.config.seed
        )
        train = fewshot.sample_per_group(
            labels.tolist(), s.synthetic.train_per_class, self.config.seed
        )
        test = np.setdiff1d(np.arange(len(labels)), train)

        def resize(image, size):
            return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))

        for size in s.sizes:

            def mean_token(i, size=size):
                image = resize(images[i], s.input_size)
                if size != s.input_size:
                    image = resize(resize(image, size), s.input_size)
                return oracle_tokens("colour", image[None])[0].mean(axis=(0, 1))

            tr = np.stack([mean_token(i) for i in train])
            te = np.stack([mean_token(i) for i in test])
            tr /= np.linalg.norm(tr, axis=1, keepdims=True)
            te /= np.linalg.norm(te, axis=1, keepdims=True)
            sims = te @ tr.T
            k = min(s.k, len(train))
            votes = np.zeros((len(test), len(names)))
            for q in range(len(test)):
                for j in np.argsort(-sims[q], kind="stable")[:k]:
                    votes[q, labels[train[j]]] += np.exp(sims[q, j] / s.temperature)
            expected = np.mean(np.argmax(votes, axis=1) == labels[test])
            (row,) = self.rows("scalemae_knn", "knn", model="known_colour16", size=int(size))
            self.assertAlmostEqual(row["accuracy"], expected, places=12)


class KnownModelsTest(parameterized.TestCase):
    """The builder and its config strings, without the pipeline."""

    @parameterized.parameters(*MODELS)
    def test_tokens_equal_the_documented_function(self, kind):
        module, params, spec = models.known_model(kind)
        images = np.random.default_rng(0).integers(0, 256, (2, TILE, TILE, 3), dtype=np.uint8)
        out = module.apply({"params": params}, models.preprocess(spec, images), layers=(-1,))
        np.testing.assert_allclose(out["patch"][0], oracle_tokens(kind, images), atol=2e-5)

    def test_config_strings(self):
        entries = run.parse_models("known:colour, known:colour_planted:14,dino:ti:16:none")
        self.assertEqual(entries[0], run.ModelEntry("known", "colour", 16, None))
        self.assertEqual(entries[1], run.ModelEntry("known", "colour_planted", 14, None))
        config = make_config()
        config.models = ("known:colour", "known:position:14")
        handles = run.load_models(config)
        self.assertEqual([h.name for h in handles], ["known_colour16", "known_position14"])
        self.assertEqual([h.random_weights for h in handles], [False, False])

    @parameterized.parameters(
        ("known:nope", "known kinds: colour"),
        ("known:colour:15", "must be even"),
        ("known:colour:16:/ckpt", "takes no checkpoint"),
    )
    def test_bad_config_strings(self, text, message):
        config = make_config()
        config.models = (text,)
        with self.assertRaisesRegex(errors.ConfigError, message):
            run.load_models(config)


if __name__ == "__main__":
    absltest.main()
