"""One end-to-end run of every demo experiment through the real entry point (`main.main`)."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl import flags
from absl.testing import absltest, flagsaver

from configs import demo
from vitjax import experiments, extract, main, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# All ten experiments of the demo, in its order.
EXPERIMENTS = list(demo.get_config("test").experiments)
EXPECTED_TABLES = {
    "fewshot": {"scores", "tab2"},
    "variance": {"overview", "removal", "batchnorm", "overlap"},
    "layerwise": {"by_layer", "per_class"},
    "robustness": {"scores"},
    "global_context": {"r2"},
    "tiling_vs_full": {"scores"},
    "fair1m_retrieval": {"outcomes"},
    "tracking": {"association"},
    "scalemae_knn": {"knn"},
    "mae_reconstruction": {"reconstruction"},
}
# Experiments that only use some models: which families appear in their tables.
FAMILIES = {"mae_reconstruction": {"mae"}}


class MainTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = tempfile.mkdtemp(prefix="vitjax_main_test_")
        argv = [
            "main",
            f"--config={os.path.join(REPO, 'configs', 'demo.py')}:test",
            f"--workdir={cls.workdir}",
        ]
        # config_flags reads its --config.* overrides from sys.argv, not from the parsed list.
        with flagsaver.flagsaver(), mock.patch.object(sys, "argv", argv):
            flags.FLAGS(argv)
            main.main(["main"])
        with open(os.path.join(cls.workdir, "results.json")) as f:
            cls.results = json.load(f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.workdir, ignore_errors=True)
        super().tearDownClass()

    def test_results_structure(self):
        r = self.results
        self.assertLen(EXPERIMENTS, 10)
        self.assertCountEqual(EXPERIMENTS, EXPECTED_TABLES)
        self.assertEqual(list(r["experiments"]), EXPERIMENTS)
        self.assertEqual(r["seed"], 0)
        self.assertTrue(r["random_weights"])
        self.assertEqual(r["config"]["dataset"], "synthetic")
        self.assertIn("flax", r["versions"])
        families = {m["name"]: m["family"] for m in r["models"]}
        self.assertEqual(sorted(families.values()), ["dino", "dinov2_reg", "mae"])
        for m in r["models"]:
            self.assertTrue(m["weights_hash"].startswith("random-seed"))
        for name, entry in r["experiments"].items():
            self.assertEqual(set(entry["tables"]), EXPECTED_TABLES[name], name)
            self.assertFalse(entry["cached"])
            wanted = {n for n, f in families.items() if f in FAMILIES.get(name, {f})}
            for table, rows in entry["tables"].items():
                self.assertNotEmpty(rows, f"{name}/{table}")
                self.assertEqual({r["model"] for r in rows}, wanted, f"{name}/{table}")

    def test_scores_are_valid(self):
        for name, entry in self.results["experiments"].items():
            for table, rows in entry["tables"].items():
                for row in rows:
                    for column in ("miou", "acc", "overlap"):
                        if row.get(column) is not None:
                            self.assertBetween(row[column], 0.0, 1.0, f"{name}/{table}/{column}")
        fewshot = self.results["experiments"]["fewshot"]["tables"]["scores"]
        shots = {(r["shots"], r["method"]) for r in fewshot}
        self.assertEqual(shots, {(1, "knn"), (1, "linear"), (2, "knn"), (2, "linear")})
        robustness = self.results["experiments"]["robustness"]["tables"]["scores"]
        self.assertEqual(
            {r["corruption"] for r in robustness}, {"clean", "blur", "noise", "freq_noise"}
        )
        recon = self.results["experiments"]["mae_reconstruction"]["tables"]["reconstruction"]
        self.assertEqual({r["mask_ratio"] for r in recon}, {0.0, 0.75})
        self.assertEqual(
            {r["features"] for r in recon}, {"full", "top10_zeroed", "random10_zeroed"}
        )
        for r in recon:
            self.assertGreater(r["mse"], 0.0)
        knn = self.results["experiments"]["scalemae_knn"]["tables"]["knn"]
        for r in knn:
            self.assertBetween(r["accuracy"], 0.0, 1.0)
        variance = self.results["experiments"]["variance"]["tables"]["overview"]
        self.assertTrue(all(r.get("knn_removed_paper") is None for r in variance))
        tab2 = self.results["experiments"]["fewshot"]["tables"]["tab2"]
        # Random weights: no paper number, and the comparison says why.
        numbers = [r[m + "_paper"] for r in tab2 for m in ("knn", "linear") if m + "_paper" in r]
        self.assertNotEmpty(numbers)  # the demo's dino and mae rows have a paper column
        self.assertTrue(all(v is None for v in numbers))
        self.assertTrue(
            all("weights random" in r["knn_vs_paper"] for r in tab2 if "knn_paper" in r)
        )

    def test_files(self):
        for name, entry in self.results["experiments"].items():
            for table in entry["tables"]:
                path = os.path.join(self.workdir, "tables", f"{name}_{table}.csv")
                with open(path) as f:
                    self.assertLen(list(csv.DictReader(f)), len(entry["tables"][table]))
            for fig in entry["figures"].values():
                with open(os.path.join(self.workdir, fig), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open(os.path.join(self.workdir, "report.md")) as f:
            report = f.read()
        with open(os.path.join(self.workdir, "config.json")) as f:
            self.assertEqual(json.load(f)["models"], self.results["config"]["models"])
        self.assertIn("RANDOM WEIGHTS", report.splitlines()[0])
        for name in EXPERIMENTS:
            self.assertIn(f"## {name}", report)
        self.assertNotIn(".tmp", " ".join(os.listdir(self.workdir)))

    def test_second_run_recomputes_nothing(self):
        calls = []
        registry = {
            name: (lambda fn, n: lambda ctx, cfg: calls.append(n) or fn(ctx, cfg))(
                experiments.get(name), name
            )
            for name in EXPERIMENTS
        }
        with (
            mock.patch.dict(experiments._REGISTRY, registry),
            mock.patch.object(extract, "extract", side_effect=AssertionError("extracted")),
        ):
            again = run.run(demo.get_config("test"), self.workdir)
        self.assertEqual(calls, [])
        for name in EXPERIMENTS:
            self.assertTrue(again["experiments"][name]["cached"])
            self.assertEqual(
                again["experiments"][name]["tables"],
                self.results["experiments"][name]["tables"],
            )


class EntryPointTest(absltest.TestCase):
    def test_default_workdir_is_named_after_the_config(self):
        self.assertEqual(main.default_workdir("configs/fair1m.py"), os.path.join("runs", "fair1m"))
        self.assertEqual(
            main.default_workdir("/x/configs/demo.py:test"), os.path.join("runs", "demo_test")
        )

    def test_config_arg_is_read_from_argv(self):
        self.assertEqual(
            main._config_arg(["m", "--config=configs/mot17.py:runlocal"]),
            "configs/mot17.py:runlocal",
        )
        self.assertEqual(main._config_arg(["m", "--config", "a.py"]), "a.py")
        self.assertEqual(main._config_arg(["m"]), main._DEMO_CONFIG)

    def test_unknown_experiment_lists_the_known_ones(self):
        with self.assertRaisesRegex(Exception, "fewshot"):
            experiments.get("no_such_experiment")

    def _cli(self, *args):
        env = dict(os.environ, PYTHONPATH=REPO)
        return subprocess.run(
            [sys.executable, "-m", "vitjax.main", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_misspelt_field_is_one_line_with_the_valid_names(self):
        config = f"--config={os.path.join(REPO, 'configs', 'demo.py')}:test"
        done = self._cli(config, "--config.knn.kk=3", "--workdir=/nonexistent/never")
        self.assertEqual(done.returncode, 2)
        self.assertEqual(done.stdout, "")
        (line,) = done.stderr.strip().splitlines()
        self.assertIn("--config.knn.kk", line)
        self.assertIn("did you mean --config.knn.k?", line)
        self.assertIn("compute_dtype, db_block, exclude_ignore, k, metric", line)
        self.assertNotIn("Traceback", done.stderr)

    def test_config_imports_from_the_repo_and_from_another_folder(self):
        # Only vitjax is importable (a folder holding a link to it): `configs` must be found
        # beside the config file, from the repository root and from any other folder.
        folder = tempfile.mkdtemp(prefix="vitjax_main_cwd_")
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        os.makedirs(os.path.join(folder, "site"))
        os.symlink(os.path.join(REPO, "vitjax"), os.path.join(folder, "site", "vitjax"))
        env = dict(os.environ, PYTHONPATH=os.path.join(folder, "site"))
        absolute = os.path.join(REPO, "configs", "demo.py")
        for cwd, config in ((REPO, "configs/demo.py"), (folder, absolute)):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "vitjax.main",
                    f"--config={config}:test",
                    "--config.experiments=no_such_experiment",
                    f"--workdir={folder}/w",
                ],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            # The config loaded (its `from configs import common` worked): the error is ours.
            self.assertEqual(done.returncode, 1, done.stderr)
            self.assertIn("unknown experiment 'no_such_experiment'", done.stderr)

    def test_importing_main_leaves_the_import_path_alone(self):
        code = "import sys; before = list(sys.path); import vitjax.main; print(sys.path == before)"
        done = subprocess.run(
            [sys.executable, "-c", code, "--config=/elsewhere/configs/demo.py"],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO),
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(done.stdout.strip(), "True", done.stderr)

    def test_override_problem_names_section_and_suggestion(self):
        c = demo.get_config("test")
        self.assertIsNone(main.override_problem(c, "fewshot.shots"))
        self.assertIn("config.fewshot has no field 'kk'", main.override_problem(c, "fewshot.kk"))
        self.assertIn("did you mean --config.fewshot?", main.override_problem(c, "fewshots.k"))
        self.assertIn("is a value", main.override_problem(c, "seed.x"))

    def test_help_lists_configs_and_conversion(self):
        text = main.usage_text(os.path.join(REPO, "configs"))
        for name in ("demo", "cityscapes", "ade20k", "fair1m", "bdd100k", "mot17", "scalemae"):
            self.assertIn(f"configs/{name}.py: ", text)
        self.assertNotIn("configs/common.py", text)
        self.assertIn("python -m checkpoints_convert", text)
        self.assertIn("Demo: every experiment end to end", text)
        done = self._cli("--help")  # absl exits 1 after --help
        self.assertIn("configs/fair1m.py: FAIR1M", done.stdout)
        self.assertIn("python -m checkpoints_convert", done.stdout)

    def test_vitjax_error_prints_one_line_without_traceback(self):
        path = os.path.join(tempfile.mkdtemp(prefix="vitjax_main_file_"), "f")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), ignore_errors=True)
        with open(path, "w") as f:
            f.write("x")
        argv = [
            "main",
            f"--config={os.path.join(REPO, 'configs', 'demo.py')}:test",
            f"--workdir={path}",
        ]
        err = io.StringIO()
        with (
            flagsaver.flagsaver(),
            mock.patch.object(sys, "argv", argv),
            mock.patch.object(sys, "stderr", err),
            self.assertRaises(SystemExit) as exited,
        ):
            flags.FLAGS(argv)
            main.main(["main"])
        self.assertEqual(exited.exception.code, 1)
        (line,) = err.getvalue().strip().splitlines()
        self.assertRegex(line, r"^error: --workdir=.*is a file")


if __name__ == "__main__":
    absltest.main()
