"""Imports in vitjax and checkpoints_convert only run down the floors (read from the source).

Every `import` statement is checked, those inside functions too: a lazy import that runs back up
is still a cycle, only a hidden one.
"""

import ast
import os
import shutil
import tempfile

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest floor first. A module may import from its own floor or a lower one. Prefixes: the longest
# matching one decides (`vitjax.data` covers every dataset module).
# Names of modules that other branches are adding (sharding, pretrain, report_trained) are listed
# already, so a merge does not have to edit this table.
LAYERS = (
    ("vitjax.errors", "vitjax.__init__"),
    (
        "vitjax.fileio",
        "vitjax.progress",
        "vitjax.canonical",
        "vitjax.provenance",
        "vitjax.sharding",
    ),
    ("vitjax.paper_numbers",),
    ("vitjax.data", "vitjax.models"),
    ("vitjax.store", "vitjax.extract", "checkpoints_convert", "vitjax.pretrain"),
    ("vitjax.metrics", "vitjax.knn", "vitjax.probes", "vitjax.corruptions", "vitjax.roi_align"),
    ("vitjax.plotting",),
    ("vitjax.experiments",),
    ("vitjax.report", "vitjax.report_trained"),
    # validate checks a config against what run will do: the two call each other.
    ("vitjax.run", "vitjax.validate"),
    ("vitjax.main",),
)


def layer_of(module: str) -> int | None:
    """Floor of a dotted module name (None for modules outside the project)."""
    best, best_len = None, -1
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    return best


def module_files(package: str) -> dict[str, str]:
    """Dotted module name -> path of every .py file of `package` (under ROOT)."""
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
                if dotted.endswith(".__init__") and dotted != "vitjax.__init__":
                    dotted = dotted[: -len(".__init__")]
                out[dotted] = path
    return out


def imported_modules(path: str, module: str, files: dict[str, str]) -> list[tuple[int, str]]:
    """(line, dotted name) of every project module imported anywhere in the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    is_package = path.endswith("__init__.py")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            # `from vitjax import store` imports the module vitjax.store; `from vitjax.errors
            # import X` imports vitjax.errors.
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.append((node.lineno, name if name in files else base))
    return [(line, name) for line, name in found if layer_of(name) is not None]


def violations(files: dict[str, str]) -> list[str]:
    """One line per import that runs up a floor (or from a module on no floor)."""
    out = []
    for module, path in sorted(files.items()):
        level = layer_of(module)
        if level is None:
            out.append(f"{module}: on no floor of LAYERS; add it there")
            continue
        for line, name in imported_modules(path, module, files):
            target = layer_of(name)
            if target > level:
                rel = os.path.relpath(path, ROOT)
                out.append(
                    f"{rel}:{line}: {module} (floor {level}) imports {name} (floor {target})"
                )
    return out


class LayeringTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.files = {**module_files("vitjax"), **module_files("checkpoints_convert")}

    def test_every_module_is_found_and_on_a_floor(self):
        for expected in ("vitjax.main", "vitjax.data.ade20k", "vitjax.experiments.common"):
            self.assertIn(expected, self.files)
        self.assertEqual([m for m in self.files if layer_of(m) is None], [])

    def test_imports_only_run_down(self):
        self.assertEqual(violations(self.files), [])

    def test_an_upward_import_is_reported(self):
        # The check itself must catch a ground-floor module importing an experiment.
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        path = os.path.join(folder, "fileio.py")
        with open(path, "w") as f:
            f.write("import os\n\n\ndef f():\n    from vitjax.experiments import common\n")
        found = violations({"vitjax.fileio": path, "vitjax.experiments.common": path})
        self.assertLen(found, 1)
        self.assertIn(
            "vitjax.fileio (floor 1) imports vitjax.experiments.common (floor 7)", found[0]
        )


if __name__ == "__main__":
    absltest.main()
