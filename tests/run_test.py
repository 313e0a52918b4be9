"""Tests of the run framework: model parsing, registry, cache keys, caching and report writing."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import csv
import importlib
import io
import json
import os
import shutil
import stat
import tempfile
from unittest import mock

import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from configs import common as common_config
from configs import demo
from configs import mae_reconstruction as recon_config
from configs import scalemae as scalemae_config
from vitjax import errors, experiments, fileio, report, run

_CALLS = []


def make_tempdir(test) -> str:
    """A fresh folder removed after `test` (absltest's create_tempdir needs parsed flags)."""
    path = tempfile.mkdtemp(prefix="vitjax_run_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


@experiments.register("_test_probe_experiment")
def _probe_experiment(ctx, cfg):
    """A tiny experiment that extracts features once and writes one figure."""
    from vitjax import plotting

    _CALLS.append(cfg.value)
    images = np.random.default_rng(ctx.seed).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    rows = []
    for model in ctx.models:
        feats = ctx.features(model, images, key={"what": "probe"})
        patch = np.asarray(feats.patch[-1])
        rows.append({"model": model.name, "mean": float(patch.mean()), "value": cfg.value})
    path = ctx.figure_path("curve")
    plotting.line_plot(path, {"p": {"a": ([0, 1], [0.0, 1.0])}}, "x", "y")
    return experiments.Result(
        tables={"means": rows},
        figures={"curve": path},
        text={"means": "Mean feature.", "curve": "A line."},
        scalars={
            "n": len(rows),
            experiments.SKIPPED_INPUTS: ["absent_dataset"] if cfg.get("skip", False) else [],
        },
    )


@experiments.register("_test_other_experiment")
def _other_experiment(ctx, cfg):
    """Writes its own table and figure, and warns about a partly empty input."""
    from vitjax import plotting

    ctx.warn("level 3 had no queries; its row is left out")
    path = ctx.figure_path("bars")
    plotting.line_plot(path, {"p": {"a": ([0, 1], [1.0, 0.0])}}, "x", "y")
    return experiments.Result(tables={"other": [{"x": 1}]}, figures={"bars": path})


def tiny_config(value=1.0):
    c = demo.get_config("test")
    c.models = ("dino:ti:16:none",)
    c.model_depth = 1
    c.experiments = ("_test_probe_experiment",)
    c._test_probe_experiment = ml_collections.ConfigDict({"value": value})
    return c


class ParseModelsTest(parameterized.TestCase):
    def test_parses_entries(self):
        entries = run.parse_models("dino:b:16:/ckpt/a:b, mae:ti:16:none ,dinov2:s:14")
        self.assertEqual(entries[0], run.ModelEntry("dino", "b", 16, "/ckpt/a:b"))
        self.assertEqual(entries[1], run.ModelEntry("mae", "ti", 16, None))
        self.assertEqual(entries[2], run.ModelEntry("dinov2", "s", 14, None))

    @parameterized.parameters("", "dino:b", "dino:b:x:none", " , ")
    def test_rejects_bad_entries(self, text):
        with self.assertRaisesRegex(errors.ConfigError, "config.models"):
            run.parse_models(text)

    def test_random_models_are_marked(self):
        config = tiny_config()
        handles = run.load_models(config)
        self.assertLen(handles, 1)
        self.assertTrue(handles[0].random_weights)
        self.assertEqual(handles[0].spec.depth, 1)
        seed = run.random_seed(run.parse_models(config.models)[0], 0)
        self.assertEqual(handles[0].describe()["weights_hash"], f"random-seed{seed}")
        other = run.random_seed(run.ModelEntry("ibot", "ti", 16, None), 0)
        self.assertNotEqual(seed, other)


class RegistryTest(absltest.TestCase):
    def test_unknown_experiment_lists_known(self):
        with self.assertRaisesRegex(errors.ConfigError, "fewshot.*variance|variance.*fewshot"):
            experiments.get("no_such_experiment")

    def test_known_experiments_resolve(self):
        for name in common_config.ALL_EXPERIMENTS:
            self.assertTrue(callable(experiments.get(name)))

    def test_run_rejects_unknown_experiment_before_work(self):
        config = tiny_config()
        config.experiments = ("fewshot", "nope")
        with self.assertRaisesRegex(errors.ConfigError, "nope"):
            run.run(config, make_tempdir(self))


class CacheKeyTest(absltest.TestCase):
    def test_key_depends_on_own_and_shared_sections_only(self):
        config = common_config.get_base()
        handles = []
        key = run.cache_key("fewshot", config, handles)
        other = common_config.get_base()
        other.variance.top_n = 7  # another experiment's section
        other.experiments = ("fewshot",)
        self.assertEqual(run.cache_key("fewshot", other, handles), key)
        own = common_config.get_base()
        own.fewshot.shots = (4,)
        self.assertNotEqual(run.cache_key("fewshot", own, handles), key)
        shared = common_config.get_base()
        shared.knn.k = 20
        self.assertNotEqual(run.cache_key("fewshot", shared, handles), key)


class RunTest(absltest.TestCase):
    def test_second_run_reuses_cache_and_features(self):
        from vitjax import extract

        workdir = make_tempdir(self)
        _CALLS.clear()
        real_extract = extract.extract
        with mock.patch.object(extract, "extract", side_effect=real_extract) as spy:
            first = run.run(tiny_config(), workdir)
            self.assertEqual(spy.call_count, 1)
            self.check_outputs(workdir, first)
            second = run.run(tiny_config(), workdir)
            self.assertEqual(spy.call_count, 1)  # nothing extracted again
        self.assertEqual(_CALLS, [1.0])  # the experiment ran once
        entry = second["experiments"]["_test_probe_experiment"]
        self.assertTrue(entry["cached"])
        self.assertEqual(entry["tables"], first["experiments"]["_test_probe_experiment"]["tables"])

        # A changed experiment config reruns it.
        third = run.run(tiny_config(value=2.0), workdir)
        self.assertEqual(_CALLS, [1.0, 2.0])
        self.assertFalse(third["experiments"]["_test_probe_experiment"]["cached"])

    def check_outputs(self, workdir, results):
        with open(os.path.join(workdir, "results.json")) as f:
            on_disk = json.load(f)
        self.assertEqual(on_disk["seed"], 0)
        self.assertIn("jax", on_disk["versions"])
        self.assertTrue(on_disk["models"][0]["weights_hash"].startswith("random-seed"))
        self.assertEqual(on_disk["config"]["models"], ["dino:ti:16:none"])
        self.assertEqual(
            on_disk["experiments"]["_test_probe_experiment"]["tables"],
            results["experiments"]["_test_probe_experiment"]["tables"],
        )
        with open(os.path.join(workdir, "tables", "_test_probe_experiment_means.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(rows[0]["model"], results["models"][0]["name"])
        with open(os.path.join(workdir, "report.md")) as f:
            first_line = f.readline()
        self.assertIn("RANDOM WEIGHTS", first_line)

    def test_result_with_skipped_inputs_is_not_cached(self):
        workdir = make_tempdir(self)
        _CALLS.clear()
        config = tiny_config()
        config._test_probe_experiment.skip = True
        run.run(config, workdir)
        again = run.run(config, workdir)
        self.assertEqual(_CALLS, [1.0, 1.0])
        self.assertFalse(again["experiments"]["_test_probe_experiment"]["cached"])

    def test_missing_figure_invalidates_cache(self):
        workdir = make_tempdir(self)
        _CALLS.clear()
        run.run(tiny_config(), workdir)
        os.remove(os.path.join(workdir, "figures", "_test_probe_experiment_curve.png"))
        run.run(tiny_config(), workdir)
        self.assertEqual(_CALLS, [1.0, 1.0])


CONFIG_ARGS = ("", "accelerator", "runlocal", "synthetic", "test")


def config_modules():
    """Every runnable experiment config module of configs/ (those with get_config); the
    `pretrain_*` configs are `python -m vitjax.pretrain`'s (tests/pretrain_test.py)."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    out = {}
    for file in sorted(os.listdir(folder)):
        if file.endswith(".py") and not file.startswith(("_", "pretrain_")):
            module = importlib.import_module(f"configs.{file[:-3]}")
            if hasattr(module, "get_config"):
                out[file[:-3]] = module
    return out


class ConfigsTest(absltest.TestCase):
    def test_every_config_and_arg_names_known_experiments_and_models(self):
        modules = config_modules()
        self.assertContainsSubset({"cityscapes", "ade20k", "demo", "mae_reconstruction"}, modules)
        for name, module in modules.items():
            for arg in CONFIG_ARGS:
                try:
                    config = module.get_config(arg or None)
                except ValueError as e:
                    self.assertIn("unknown", str(e))  # an arg this config does not take
                    continue
                for experiment in run.experiment_names(config):  # raises on unknown names
                    self.assertIn(experiment, config, f"{name}:{arg} lacks config.{experiment}")
                self.assertNotEmpty(run.parse_models(config.models), f"{name}:{arg}")

    def test_scalemae_config_runs_only_scalemae_knn(self):
        for arg in ("", "runlocal", "synthetic", "accelerator"):
            config = scalemae_config.get_config(arg or None)
            self.assertEqual(config.experiments, ("scalemae_knn",))
            self.assertNotIn("mae_reconstruction", config)
        self.assertNotIn("--config.experiments", scalemae_config.__doc__)

    def test_mae_reconstruction_config(self):
        config = recon_config.get_config()
        self.assertEqual(config.experiments, ("mae_reconstruction",))
        (entry,) = run.parse_models(config.models)
        self.assertEqual((entry.family, entry.size, entry.patch_size), ("mae", "b", 16))
        self.assertTrue(entry.checkpoint.endswith("_visualize"))
        self.assertFalse(config.mae_reconstruction.norm_pix)  # the visualize decoder's target
        self.assertEqual(config.dataset, "cityscapes")
        self.assertIn("--config=configs/mae_reconstruction.py", recon_config.__doc__)

    def test_mae_reconstruction_config_runs_without_data(self):
        config = recon_config.get_config("synthetic")
        config.model_depth = 1
        recon_config.add_demo(config, tiny=True)
        results = run.run(config, make_tempdir(self))
        rows = results["experiments"]["mae_reconstruction"]["tables"]["reconstruction"]
        self.assertLen(rows, 2 * 3)  # mask ratios x (full, top-N zeroed, random-N zeroed)
        for row in rows:
            self.assertEqual(row["family"], "mae")
            self.assertGreater(row["mse"], 0.0)


def file_mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class WorkdirTest(absltest.TestCase):
    def test_workdir_that_is_a_file_is_a_config_error(self):
        folder = make_tempdir(self)
        path = os.path.join(folder, "a_file")
        with open(path, "w") as f:
            f.write("keep")
        for workdir, says in ((path, "is a file"), (os.path.join(path, "sub"), "a_file is a file")):
            with self.assertRaisesRegex(errors.ConfigError, f"--workdir=.*{says}, not a folder"):
                run.run(tiny_config(), workdir)
        with open(path) as f:
            self.assertEqual(f.read(), "keep")

    def test_outputs_respect_the_umask(self):
        workdir = make_tempdir(self)
        old = os.umask(0o022)
        try:
            run.run(tiny_config(), workdir)
        finally:
            os.umask(old)
        outputs = [
            "results.json",
            "report.md",
            "config.json",
            os.path.join("tables", "_test_probe_experiment_means.csv"),
            os.path.join("figures", "_test_probe_experiment_curve.png"),
        ] + [os.path.join("cache", n) for n in os.listdir(os.path.join(workdir, "cache"))]
        for rel in outputs:
            self.assertEqual(oct(file_mode(os.path.join(workdir, rel))), oct(0o644), rel)
        old = os.umask(0o077)
        try:
            path = os.path.join(workdir, "private.txt")
            fileio.atomic_write_text(path, "x")
            self.assertEqual(oct(file_mode(path)), oct(0o600))
        finally:
            os.umask(old)

    def test_rerun_with_another_config_clears_only_its_own_outputs(self):
        workdir = make_tempdir(self)
        run.run(tiny_config(), workdir)
        # Files of the user inside the run's folders are never touched.
        foreign = [os.path.join("tables", "mine.csv"), os.path.join("figures", "mine.png"), "notes"]
        for rel in foreign:
            with open(os.path.join(workdir, rel), "w") as f:
                f.write("user")
        config = tiny_config()
        config.experiments = ("_test_other_experiment",)
        results = run.run(config, workdir)
        with open(os.path.join(workdir, "results.json")) as f:
            self.assertEqual(json.load(f)["outputs"], results["outputs"])
        listed = {
            os.path.join(sub, n)
            for sub in ("tables", "figures")
            for n in os.listdir(os.path.join(workdir, sub))
        }
        self.assertEqual(
            listed,
            {
                os.path.join("tables", "_test_other_experiment_other.csv"),
                os.path.join("figures", "_test_other_experiment_bars.png"),
                *foreign[:2],
            },
        )
        self.assertTrue(os.path.exists(os.path.join(workdir, "notes")))
        self.assertNotEmpty(os.listdir(os.path.join(workdir, "cache")))  # caches are kept

    def test_stale_removal_stays_inside_the_workdir(self):
        root = make_tempdir(self)
        workdir = os.path.join(root, "w")
        os.makedirs(os.path.join(workdir, "cache"))
        for rel in ("outside.txt", os.path.join("w", "cache", "c.json"), os.path.join("w", "x")):
            with open(os.path.join(root, rel), "w") as f:
                f.write("keep")
        os.symlink(os.path.join(root, "outside.txt"), os.path.join(workdir, "link"))
        previous = {"../outside.txt", "cache/c.json", "link", "x", "tables"}
        removed = run.remove_stale_outputs(workdir, previous, current={"x"})
        self.assertEqual(removed, [])
        for rel in ("outside.txt", os.path.join("w", "cache", "c.json"), os.path.join("w", "x")):
            self.assertTrue(os.path.exists(os.path.join(root, rel)), rel)

    def test_results_without_an_outputs_list_name_their_tables_and_figures(self):
        workdir = make_tempdir(self)
        old = {"experiments": {"e": {"tables": {"t": []}, "figures": {"f": "figures/e_f.png"}}}}
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(old, f)
        self.assertEqual(
            run.previous_outputs(workdir),
            {
                "results.json",
                "config.json",
                "report.md",
                os.path.join("tables", "e_t.csv"),
                os.path.join("figures", "e_f.png"),
            },
        )


class WarningsTest(absltest.TestCase):
    def test_warnings_reach_results_log_and_report_also_from_cache(self):
        workdir = make_tempdir(self)
        config = tiny_config()
        config.experiments = ("_test_other_experiment", "_test_probe_experiment")
        with self.assertLogs(level="WARNING") as logs:
            first = run.run(config, workdir)
        expected = ["level 3 had no queries; its row is left out"]
        self.assertEqual(first["experiments"]["_test_other_experiment"]["warnings"], expected)
        self.assertEqual(first["experiments"]["_test_probe_experiment"]["warnings"], [])
        self.assertTrue(any(expected[0] in line for line in logs.output))
        with open(os.path.join(workdir, "report.md")) as f:
            text = f.read()
        self.assertIn("## Warnings", text)
        self.assertIn(f"- `_test_other_experiment`: {expected[0]}", text)
        with self.assertLogs(level="WARNING") as logs:
            again = run.run(config, workdir)
        self.assertTrue(again["experiments"]["_test_other_experiment"]["cached"])
        self.assertEqual(again["experiments"]["_test_other_experiment"]["warnings"], expected)
        self.assertTrue(any(expected[0] in line for line in logs.output))

    def test_one_progress_line_per_experiment_and_short_extraction_lines(self):
        config = tiny_config()
        config.experiments = ("_test_probe_experiment", "_test_other_experiment")
        with self.assertLogs(level="DEBUG") as logs:
            run.run(config, make_tempdir(self))
        info = [r.getMessage() for r in logs.records if r.levelname == "INFO"]
        debug = [r.getMessage() for r in logs.records if r.levelname == "DEBUG"]
        self.assertLen([m for m in info if m.startswith("experiment 1/2 ")], 2)
        self.assertTrue(
            any(m.startswith("experiment 2/2 _test_other_experiment: finished") for m in info)
        )
        self.assertTrue(any("ETA" in m for m in info))
        self.assertFalse(any("Extraction plan" in m for m in info))
        self.assertTrue(any("Extraction plan" in m for m in debug))
        # One line for the one extraction that ran (its progress), none for the cached ones.
        self.assertLen([m for m in info if m.startswith("extract ")], 1)


class ReportTest(absltest.TestCase):
    def _results(self, random_weights):
        return {
            "config": {"dataset": "synthetic"},
            "seed": 0,
            "versions": {"jax": "x"},
            "models": [{"name": "m", "random_weights": random_weights, "checkpoint": "/c"}],
            "experiments": {
                "e": {
                    "tables": {"t": [{"a": 1, "b": 0.123456}, {"a": 2, "c": None}]},
                    "figures": {"f": "figures/e_f.png"},
                    "text": {"summary": "S.", "t": "Table text.", "f": "Figure text."},
                    "cached": False,
                    "seconds": 1.0,
                    "cache_key": "k",
                }
            },
        }

    def test_first_line_says_random_weights(self):
        text = report.build_report(self._results(True))
        self.assertTrue(text.splitlines()[0].startswith("**WARNING: RANDOM WEIGHTS"))
        text = report.build_report(self._results(False))
        self.assertNotIn("RANDOM", text.splitlines()[0])
        self.assertIn("| 1 | 0.123 | - |", text)
        self.assertIn("![f](figures/e_f.png)", text)
        self.assertIn("*Figure text.*", text)

    def test_models_table_names_the_global_vector(self):
        results = self._results(True)
        results["models"] = [
            {"name": "a", "family": "siglip", "random_weights": True},
            {"name": "b", "family": "dinov3", "random_weights": True},
        ]
        text = report.build_report(results)
        self.assertIn("| a | siglip |", text)
        self.assertIn("MAP attention-pooling head output (SigLIP has no CLS token)", text)
        self.assertIn("CLS token after the final norm", text)

    def test_csv_round_trip(self):
        rows = [{"a": 1, "b": "x,y"}, {"a": 2, "c": 0.5}]
        parsed = list(csv.DictReader(io.StringIO(report.to_csv(rows))))
        self.assertEqual(parsed, [{"a": "1", "b": "x,y", "c": ""}, {"a": "2", "b": "", "c": "0.5"}])

    def test_write_atomic_leaves_no_temporary(self):
        folder = make_tempdir(self)
        path = os.path.join(folder, "sub", "x.txt")
        fileio.atomic_write_text(path, "one")
        fileio.atomic_write_text(path, "two")
        with open(path) as f:
            self.assertEqual(f.read(), "two")
        self.assertEqual(os.listdir(os.path.dirname(path)), ["x.txt"])

    def test_to_jsonable(self):
        value = experiments.to_jsonable({"a": np.float32(1.5), "b": (np.int64(2), float("nan"))})
        self.assertEqual(value, {"a": 1.5, "b": [2, None]})
        json.dumps(value)


if __name__ == "__main__":
    absltest.main()
