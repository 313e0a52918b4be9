"""Every config default has one source: the experiment modules' defaults() and the library.

The configs compose `vitjax.experiments.<name>.defaults()` (and the shared sections of
`vitjax.experiments.common`); a config may change a field only by assigning it in its own file
(or in the demo sections of the configs it imports), never by redefining a section. List fields
are typed tuples, and the command line's comma form is split in one place (`run.split_names`).
"""

import ast
import dataclasses
import importlib
import inspect
import os
import pkgutil

import ml_collections
from absl import flags
from absl.testing import absltest, parameterized
from ml_collections import config_flags

from configs import common as common_config
from vitjax import errors, experiments, extract, knn, probes, run, validate
from vitjax.experiments import common

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
CONFIGS = (
    "ade20k",
    "bdd100k",
    "cityscapes",
    "demo",
    "fair1m",
    "mae_reconstruction",
    "mot17",
    "scalemae",
)


def experiment_modules() -> dict[str, object]:
    """Every module of vitjax/experiments that exports defaults(), by config section name."""
    out = {}
    for info in pkgutil.iter_modules(experiments.__path__):
        module = importlib.import_module(f"vitjax.experiments.{info.name}")
        if hasattr(module, "defaults"):
            out[info.name] = module
    return out


def section_defaults() -> dict[str, ml_collections.ConfigDict]:
    out = {name: m.defaults() for name, m in experiment_modules().items()}
    out.update(
        knn=common.knn_defaults(), probe=common.probe_defaults(), extract=common.extract_defaults()
    )
    return out


def differing(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted paths where the nested dicts `a` and `b` differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differing(va, vb, f"{prefix}{key}.")
        elif va != vb or type(va) is not type(vb):
            out.append(prefix + key)
    return out


def assigned_fields(config_name: str) -> set[str]:
    """Field names assigned (`x.field = ...`) in configs/<config_name>.py and in the configs it
    imports, except configs/common.py (which only composes the defaults)."""
    names, todo, seen = set(), [config_name], set()
    while todo:
        name = todo.pop()
        if name in seen or name == "common":
            continue
        seen.add(name)
        with open(os.path.join(CONFIG_DIR, f"{name}.py")) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "configs":
                todo += [alias.name for alias in node.names]
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute):
                        names.add(target.attr)
    return names


class ConfigDefaultsTest(parameterized.TestCase):
    def test_every_experiment_has_defaults(self):
        modules = experiment_modules()
        self.assertContainsSubset(common_config.ALL_EXPERIMENTS, modules)
        self.assertContainsSubset(
            ("tracking", "fair1m_retrieval", "scalemae_knn", "mae_reconstruction"), modules
        )
        for name, module in modules.items():
            self.assertIsInstance(module.defaults(), ml_collections.ConfigDict, name)
            # A fresh ConfigDict per call: a config editing its copy cannot change the default.
            self.assertIsNot(module.defaults(), module.defaults())

    @parameterized.parameters(*[(n, None) for n in CONFIGS], ("demo", "test"))
    def test_sections_are_defaults_except_assigned_fields(self, name, arg):
        config = importlib.import_module(f"configs.{name}").get_config(arg)
        assigned = assigned_fields(name)
        checked = 0
        for section, defaults in section_defaults().items():
            if section not in config:
                continue
            checked += 1
            for path in differing(config[section].to_dict(), defaults.to_dict()):
                self.assertIn(
                    path.rsplit(".", 1)[-1],
                    assigned,
                    f"configs/{name}.py: config.{section}.{path} differs from "
                    f"{section}.defaults() but no config assigns it",
                )
        self.assertGreaterEqual(checked, 4)

    def test_base_config_is_the_defaults(self):
        base = common_config.get_base()
        for section, defaults in section_defaults().items():
            if section in base:
                self.assertEqual(base[section].to_dict(), defaults.to_dict(), section)

    def test_library_defaults_agree_with_the_config(self):
        base = common_config.get_base()
        for field in dataclasses.fields(probes.ProbeConfig):
            if field.name in base.probe:
                self.assertEqual(base.probe[field.name], field.default, f"probe.{field.name}")
        search = inspect.signature(knn.search).parameters
        for name in ("k", "metric", "query_block", "db_block"):
            self.assertEqual(base.knn[name], search[name].default, f"knn.{name}")
        options = extract.ExtractOptions()
        self.assertEqual(base.extract.batch_size, options.batch_size)
        self.assertEqual(base.extract.store_dtype, options.dtype)
        self.assertEqual(base.extract.compute_dtype, options.compute_dtype)

    @parameterized.parameters(*CONFIGS)
    def test_list_fields_are_tuples_not_comma_strings(self, name):
        config = importlib.import_module(f"configs.{name}").get_config()

        def walk(section, prefix):
            for key, value in section.items():
                if isinstance(value, ml_collections.ConfigDict):
                    walk(value, f"{prefix}{key}.")
                elif isinstance(value, (str, tuple)):
                    for item in (value,) if isinstance(value, str) else value:
                        if isinstance(item, str):
                            self.assertNotIn(",", item, f"configs/{name}.py: {prefix}{key}")
                elif isinstance(value, list):
                    self.fail(f"configs/{name}.py: {prefix}{key} is a list, expected a tuple")

        walk(config, "config.")
        self.assertIsInstance(config.models, tuple)
        self.assertIsInstance(config.experiments, tuple)


class CommandLineTest(absltest.TestCase):
    def parse(self, *overrides: str) -> ml_collections.ConfigDict:
        values = flags.FlagValues()
        argv = ["prog", f"--config={os.path.join(CONFIG_DIR, 'demo.py')}:test", *overrides]
        argv = run.expand_models_flag(argv)  # as vitjax.main.parse_flags
        # As vitjax.main: the override flags come from the config named on the command line.
        config_flags.DEFINE_config_file(
            "config", flag_values=values, lock_config=True, sys_argv=argv
        )
        values(argv)
        return values.config

    def test_tuple_syntax_and_comma_short_form(self):
        config = self.parse(
            "--config.models=dino:ti:16:none,known:colour",
            "--config.fewshot.shots=(1,2,4)",
            "--config.fewshot.methods=knn",
            "--config.robustness.methods=('knn','linear')",
            "--config.variance.overlap_datasets=synthetic,synthetic_aerial",
            "--config.layerwise.layers=(0,-1)",
        )
        self.assertEqual(config.models, ("dino:ti:16:none", "known:colour"))
        # ml_collections keeps a comma string of plain names on a tuple field as one entry ...
        self.assertEqual(config.variance.overlap_datasets, ("synthetic,synthetic_aerial",))
        run.normalize_lists(config)
        # ... which the one parser splits.
        self.assertEqual(
            [(e.family, e.size) for e in run.parse_models(config.models)],
            [("dino", "ti"), ("known", "colour")],
        )
        self.assertEqual(config.fewshot.shots, (1, 2, 4))
        self.assertEqual(config.fewshot.methods, ("knn",))
        self.assertEqual(config.robustness.methods, ("knn", "linear"))
        self.assertEqual(config.variance.overlap_datasets, ("synthetic", "synthetic_aerial"))
        self.assertEqual(config.layerwise.layers, (0, -1))
        self.assertEqual(validate.problems(config), [])

    def test_one_model_and_tuple_syntax_for_models(self):
        self.assertEqual(self.parse("--config.models=dino:ti:16:none").models, ("dino:ti:16:none",))
        config = self.parse("--config.models=('dino:ti:16:none','mae:ti:16:none')")
        self.assertEqual(config.models, ("dino:ti:16:none", "mae:ti:16:none"))

    def test_wrong_element_type_is_a_problem(self):
        with self.assertRaises(flags.IllegalFlagValueError):
            self.parse("--config.fewshot.table_shots=two")
        # ml_collections checks a tuple field's type, not its elements': validation does.
        config = self.parse("--config.fewshot.shots=two", "--config.probe.learning_rates=(1,)")
        found = validate.problems(config)
        self.assertLen(found, 1, found)
        self.assertIn("config.fewshot.shots", found[0])

    def test_unknown_method_is_named(self):
        config = self.parse("--config.fewshot.methods=knn,svm")
        run.normalize_lists(config)
        found = validate.problems(config)
        self.assertLen(found, 1)
        self.assertIn("config.fewshot.methods", found[0])
        self.assertIn("svm", found[0])
        with self.assertRaises(errors.ConfigError):
            validate.check_config(config)


class InactiveFieldsTest(absltest.TestCase):
    def test_knn_k_is_inactive_only_under_1nn(self):
        config = common_config.get_base()
        self.assertTrue(
            any(f.startswith("config.knn.k:") for f in validate.inactive_fields(config))
        )
        config.knn.rule = "majority"
        self.assertFalse(
            any(f.startswith("config.knn.k:") for f in validate.inactive_fields(config))
        )

    def test_fair1m_levels_not_perturbed(self):
        config = importlib.import_module("configs.fair1m").get_config()
        fields = validate.inactive_fields(config)
        self.assertIn("config.fair1m_retrieval.levels.blur", "\n".join(fields))
        self.assertNotIn("config.fair1m_retrieval.levels.noise", "\n".join(fields))


if __name__ == "__main__":
    absltest.main()
