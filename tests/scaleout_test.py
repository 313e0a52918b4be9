"""Scale-out of the run framework: one device mesh for the k-NN searches, process-0-only writes,
and patch features that stay memory-mapped."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import os
import shutil
import tempfile
from unittest import mock

import jax
import ml_collections
import ml_dtypes
import numpy as np
from absl.testing import absltest, parameterized
from jax.experimental import multihost_utils

from configs import demo
from vitjax import errors, experiments, knn, models, run
from vitjax.experiments import common
from vitjax.store import FeatureStore

# Experiments whose every k-NN search must go through the run's mesh.
MESH_EXPERIMENTS = ("fair1m_retrieval", "scalemae_knn", "mae_reconstruction")


def make_tempdir(test_or_cls) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_scaleout_test_")
    if isinstance(test_or_cls, type):
        test_or_cls.addClassCleanup(shutil.rmtree, path, ignore_errors=True)
    else:
        test_or_cls.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def tiny_config(experiment_names=MESH_EXPERIMENTS, models=("mae:ti:16:none",)):
    c = demo.get_config("test")
    c.experiments = experiment_names
    c.models = models
    c.model_depth = 1
    c.knn.compute_dtype = "float32"
    c.scalemae_knn.removed = (0, 10)
    c.fair1m_retrieval.perturbations = ("shift", "noise")
    return c


def tree_listing(root: str) -> list[str]:
    """Every file under `root`, relative, sorted."""
    out = []
    for folder, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, f), root) for f in files]
    return sorted(out)


def copy_features(src_workdir: str, dst_workdir: str) -> None:
    shutil.copytree(os.path.join(src_workdir, "features"), os.path.join(dst_workdir, "features"))


def tables(results) -> dict:
    return {name: entry["tables"] for name, entry in results["experiments"].items()}


class RunOnMeshTest(absltest.TestCase):
    """One run on the 8-device mesh (as process 0); the other runs reuse its features."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = make_tempdir(cls)
        with mock.patch.object(knn, "search", wraps=knn.search) as spy:
            cls.results = run.run(tiny_config(), cls.workdir)
        cls.search_calls = spy.call_args_list

    def test_every_search_runs_on_the_run_mesh(self):
        self.assertNotEmpty(self.search_calls)
        for call in self.search_calls:
            mesh = call.kwargs.get("mesh")
            self.assertIsNotNone(mesh)
            self.assertEqual(mesh.devices.size, jax.device_count())
            self.assertEqual(str(call.kwargs.get("compute_dtype")), "float32")

    def test_mesh_and_single_device_runs_agree(self):
        workdir = make_tempdir(self)
        copy_features(self.workdir, workdir)
        with (
            mock.patch.object(run, "device_mesh", return_value=None),
            mock.patch.object(knn, "search", wraps=knn.search) as spy,
        ):
            results = run.run(tiny_config(), workdir)
        self.assertNotEmpty(spy.call_args_list)
        self.assertTrue(all(c.kwargs.get("mesh") is None for c in spy.call_args_list))
        self.assertLen(spy.call_args_list, len(self.search_calls))
        self.assertFalse(any(e["cached"] for e in results["experiments"].values()))
        for name in ("fair1m_retrieval", "scalemae_knn"):
            self.assertNotEmpty(next(iter(tables(results)[name].values())))
        self.assertEqual(tables(results), tables(self.results))

    def test_other_processes_write_nothing(self):
        workdir = make_tempdir(self)
        copy_features(self.workdir, workdir)
        features_before = tree_listing(workdir)
        figure_paths = []
        figure_path = experiments.Context.figure_path

        def recording_figure_path(ctx, name):
            figure_paths.append(figure_path(ctx, name))
            return figure_paths[-1]

        with (
            mock.patch.object(jax, "process_index", return_value=1),
            mock.patch.object(experiments.Context, "figure_path", recording_figure_path),
        ):
            results = run.run(tiny_config(), workdir)
        self.assertEqual(os.listdir(workdir), ["features"])
        self.assertEqual(tree_listing(workdir), features_before)
        self.assertNotEmpty(figure_paths)  # the experiments drew their figures elsewhere ...
        for path in figure_paths:
            self.assertFalse(path.startswith(workdir + os.sep), path)
            self.assertFalse(os.path.exists(path), path)  # ... in a scratch folder, now removed
        self.assertEqual(tables(results), tables(self.results))


class MultiProcessProtocolTest(absltest.TestCase):
    def test_non_writer_agrees_with_process_zero_and_waits_at_the_barrier(self):
        workdir = make_tempdir(self)
        # A model without decoder: the run does no extraction, whose collectives would need a
        # real second process.
        c = tiny_config(("mae_reconstruction",), ("dino:ti:16:none",))
        barriers, broadcasts = [], []

        def broadcast(value):
            broadcasts.append(int(value))
            return np.int32(0)  # process 0 has no cached result

        with (
            mock.patch.object(jax, "process_index", return_value=1),
            mock.patch.object(jax, "process_count", return_value=2),
            mock.patch.object(multihost_utils, "sync_global_devices", barriers.append),
            mock.patch.object(multihost_utils, "broadcast_one_to_all", broadcast),
        ):
            results = run.run(c, workdir)
        self.assertEqual(barriers, ["vitjax-run-written"])
        self.assertEqual(broadcasts, [0])
        self.assertIn("mae_reconstruction", results["experiments"])
        self.assertLessEqual(set(os.listdir(workdir)), {"features"})

    def test_single_process_needs_no_barrier(self):
        with mock.patch.object(multihost_utils, "sync_global_devices") as sync:
            run._barrier("x")
            self.assertTrue(run._agree(True))
        sync.assert_not_called()

    def test_mesh_spans_every_device(self):
        mesh = run.device_mesh()
        self.assertEqual(mesh.axis_names, ("data",))
        self.assertEqual(list(mesh.devices.reshape(-1)), jax.devices())
        with mock.patch.object(jax, "devices", return_value=jax.devices()[:1]):
            self.assertIsNone(run.device_mesh())


def knn_config(**overrides) -> ml_collections.ConfigDict:
    c = common.knn_defaults()
    c.update(dict(k=1, rule="1nn", metric="dot", exclude_ignore=True, query_block=16, db_block=32))
    c.update(overrides)
    return c


class KnnPredictTest(parameterized.TestCase):
    def data(self):
        rng = np.random.default_rng(0)
        support = rng.standard_normal((300, 24)).astype(np.float32)
        labels = rng.integers(0, 5, 300)
        labels[::7] = common.IGNORE
        queries = rng.standard_normal((70, 24)).astype(np.float32)
        return support, labels, queries

    @parameterized.parameters("float32", "bfloat16")
    def test_mesh_gives_the_brute_force_neighbours(self, dtype):
        support, labels, queries = self.data()
        cfg = knn_config(compute_dtype=dtype)
        with mock.patch.object(knn, "search", wraps=knn.search) as spy:
            on_mesh = common.knn_predict(support, labels, queries, 5, cfg, mesh=run.device_mesh())
            single = common.knn_predict(support, labels, queries, 5, cfg)
        self.assertEqual(str(spy.call_args_list[0].kwargs["compute_dtype"]), dtype)
        self.assertEqual(spy.call_args_list[0].kwargs["mesh"].devices.size, 8)
        np.testing.assert_array_equal(on_mesh, single)

        # Oracle: numpy dot products of the matmul inputs (rounded to bfloat16 if asked).
        def cast(x):
            if dtype == "bfloat16":
                x = x.astype(ml_dtypes.bfloat16)
            return x.astype(np.float64)

        scores = cast(queries) @ cast(support).T
        scores[:, labels == common.IGNORE] = -np.inf
        np.testing.assert_array_equal(on_mesh, labels[np.argmax(scores, axis=1)])

    def test_bad_compute_dtype_names_the_field(self):
        support, labels, queries = self.data()
        with self.assertRaisesRegex(errors.ConfigError, "config.knn.compute_dtype"):
            common.knn_predict(support, labels, queries, 5, knn_config(compute_dtype="int8"))


class PatchFeaturesTest(absltest.TestCase):
    def test_stored_float32_features_come_back_as_a_memmap_view(self):
        workdir = make_tempdir(self)
        module, params, spec = models.random_model("dino", "ti", 0, depth=1)
        model = experiments.ModelHandle("dino", module, params, spec, True)
        config = demo.get_config("test")
        ctx = experiments.Context(
            [model],
            FeatureStore(os.path.join(workdir, "f")),
            workdir,
            0,
            config,
            mesh=run.device_mesh(),
        )
        tiles = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        feats = common.patch_features(ctx, model, tiles, {"split": "test"})
        self.assertIsInstance(feats, np.memmap)
        self.assertEqual(feats.dtype, np.float32)
        self.assertEqual(feats.shape, (5 * 2 * 2, spec.width))
        self.assertFalse(feats.flags.writeable)
        stored = ctx.features(model, tiles, key={"split": "test"}).patch[0]
        self.assertIsNotNone(feats.base)  # a view: nothing was copied
        self.assertEqual(feats.filename, stored.filename)  # of the store entry's patch file
        # Oracle: the model applied directly, final LayerNorm on.
        want = module.apply(
            {"params": params}, models.preprocess(spec, tiles), layers=(-1,), norm=True
        )["patch"][0]
        np.testing.assert_allclose(
            feats, np.asarray(want).reshape(-1, spec.width), rtol=1e-4, atol=1e-4
        )
        # The k-NN streams the memmap: same classes as from an in-memory copy.
        labels = np.arange(len(feats)) % 3
        cfg = knn_config(compute_dtype="float32")
        np.testing.assert_array_equal(
            common.knn_predict(feats, labels, feats[:6], 3, cfg, mesh=ctx.mesh),
            common.knn_predict(np.array(feats), labels, np.array(feats[:6]), 3, cfg),
        )

    def test_context_passes_explicit_extraction_options(self):
        from vitjax import extract

        workdir = make_tempdir(self)
        module, params, spec = models.random_model("dino", "ti", 0, depth=1)
        model = experiments.ModelHandle("dino", module, params, spec, True)
        config = demo.get_config("test")
        # Values that differ from extract's own defaults, so that each one is seen to arrive.
        config.extract.batch_size, config.extract.store_dtype, config.log_every_s = (
            8,
            "float16",
            3.0,
        )
        ctx = experiments.Context(
            [model],
            FeatureStore(os.path.join(workdir, "f")),
            workdir,
            0,
            config,
            mesh=run.device_mesh(),
        )
        tiles = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        with mock.patch.object(extract, "extract", wraps=extract.extract) as spy:
            common.patch_features(ctx, model, tiles, {"split": "a"}, batch_size=24)
            feats = ctx.features(model, tiles, key={"split": "b"}, layers=(0,), with_cls=True)
        given, default = (call.kwargs["options"] for call in spy.call_args_list)
        self.assertEqual((given.batch_size, default.batch_size), (24, 8))
        for options in (given, default):  # the rest comes from the run config and the context
            self.assertEqual(options.dtype, "float16")
            self.assertEqual(options.compute_dtype, "float32")
            self.assertEqual(options.progress_interval_s, 3.0)
            self.assertIs(options.mesh, ctx.mesh)
        self.assertEqual((given.with_cls, default.with_cls), (False, True))
        # Oracle: the CLS token of the model applied directly.
        want = module.apply({"params": params}, models.preprocess(spec, tiles), layers=(0,))
        self.assertEqual(feats.cls[0].dtype, np.float16)
        np.testing.assert_allclose(feats.cls[0], want["cls"][0], rtol=1e-3, atol=1e-3)
        with self.assertRaises(TypeError):  # no pass-through: a typo fails at the call
            common.patch_features(ctx, model, tiles, {"split": "a"}, batchsize=16)


if __name__ == "__main__":
    absltest.main()
