"""report.md and the paper comparison: protocol fields, datasets read, summary, CSV links, file modes."""

import csv
import io
import os
import shutil
import stat
import tempfile

from absl.testing import absltest, parameterized

from configs import cityscapes as cityscapes_config
from configs import demo as demo_config
from vitjax import fileio, paper_numbers, report


def tempdir(test):
    path = tempfile.mkdtemp(prefix="vitjax_report_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def model(family="dino", size="b", patch=16, weights_hash="ab" * 32, random_weights=False):
    return {
        "name": f"{family}_{size}{patch}",
        "family": family,
        "size": size,
        "patch_size": patch,
        "weights_hash": weights_hash,
        "random_weights": random_weights,
    }


def paper_protocol(config=None, n_eval_images=30, shots=4):
    return paper_numbers.run_protocol(
        config or cityscapes_config.get_config(),
        train_per_group=shots,
        n_train_images=18 * shots,
        n_eval_images=n_eval_images,
    )


class PaperComparisonTest(parameterized.TestCase):
    def test_the_cityscapes_config_repeats_the_papers_protocol(self):
        for record in paper_numbers.TAB2_PROTOCOL.values():
            self.assertEqual(paper_numbers.protocol_differences(paper_protocol(), record), [])

    def test_three_eval_images_are_not_comparable(self):
        # The run: 3 evaluation images instead of 30 was shown beside knn_paper 0.345.
        line = paper_numbers.paper_comparison(
            model(), paper_protocol(n_eval_images=3), "knn", paper_numbers.TAB2_PROTOCOL["knn"]
        )
        self.assertEqual(line, "not comparable: n_eval_images 3 != 30")
        self.assertFalse(paper_numbers.is_comparable(line))

    def test_every_differing_field_is_named(self):
        config = demo_config.get_config("test")
        config.knn.k = 5
        differences = paper_numbers.protocol_differences(
            paper_protocol(config, n_eval_images=4, shots=1), paper_numbers.TAB2_PROTOCOL["knn"]
        )
        self.assertEqual(
            differences,
            [
                "dataset synthetic != cityscapes",
                "train_per_group 1 != 4",
                "n_train_images 18 != 72",
                "n_eval_images 4 != 30",
                "tiling 112px tiles -> 112px != 256px tiles -> 224px",
                "knn_k 5 != 10",
            ],
        )
        # k-NN fields do not rule out the linear probe's number.
        linear = paper_numbers.protocol_differences(
            paper_protocol(config, n_eval_images=4, shots=1),
            paper_numbers.TAB2_PROTOCOL["linear"],
        )
        self.assertNotIn("knn_k 5 != 10", linear)

    def test_layer_and_label_rule(self):
        protocol = paper_protocol()
        protocol.update(layer=5, patch_label_rule="majority")
        self.assertEqual(
            paper_numbers.protocol_differences(protocol, paper_numbers.TAB2_PROTOCOL["linear"]),
            ["patch_label_rule majority != centre", "layer 5 != -1"],
        )

    def test_matching_protocol_shows_the_paper_number(self):
        # Published digest prefix (torchvision's file name): identified, plainly comparable.
        tv = model("torchvision", weights_hash="c867db91" + "0" * 56)
        line = paper_numbers.paper_comparison(
            tv, paper_protocol(), "linear", paper_numbers.TAB2_PROTOCOL["linear"]
        )
        self.assertEqual(line, "comparable")
        # No published digest: comparable setting, but the column says the file is unproven.
        line = paper_numbers.paper_comparison(
            model("dino"), paper_protocol(), "knn", paper_numbers.TAB2_PROTOCOL["knn"]
        )
        self.assertTrue(paper_numbers.is_comparable(line))
        self.assertIn("checkpoint not identified", line)

    def test_checkpoint_and_backbone_fields(self):
        other = model("torchvision", weights_hash="deadbeef" + "0" * 56)
        line = paper_numbers.paper_comparison(
            other, paper_protocol(), "knn", paper_numbers.TAB2_PROTOCOL["knn"]
        )
        self.assertEqual(line, "not comparable: checkpoint sha256 deadbeef != official c867db91")
        line = paper_numbers.paper_comparison(
            model("dino", "s", random_weights=True),
            paper_protocol(),
            "knn",
            paper_numbers.TAB2_PROTOCOL["knn"],
        )
        self.assertEqual(
            line,
            "not comparable: weights random != official checkpoint; "
            "backbone dino s/16 != dino b/16",
        )


def results(entries, models=None):
    return {
        "config": {"dataset": "cityscapes"},
        "seed": 0,
        "versions": {"vitjax": "0"},
        "models": models or [dict(model(), name="m1", random_weights=True)],
        "experiments": entries,
    }


def fair1m_rows(n):
    """n rows x 22 columns, the shape of the demo's FAIR1M outcomes table."""
    out = []
    for i in range(n):
        mode = ("identification", "retrieval")[i // 2 % 2]
        row = {
            "model": f"m{i % 2 + 1}",
            "family": "dino",
            "mode": mode,
            "perturbation": "shift" if i % 3 else "clean",
            "level": float(i % 3),
            "removed": 0,
            "same_patch_frac": 0.5,
            "at_least_fine_frac": 0.25,
        }
        row.update({f"extra{j}": j for j in range(14)})
        out.append(row)
    return out


class ReportTest(parameterized.TestCase):
    def test_each_experiment_names_the_dataset_it_read(self):
        text = report.build_report(
            results(
                {
                    "fewshot": {"tables": {}, "scalars": {"datasets": ["cityscapes"]}},
                    "fair1m_retrieval": {"tables": {}, "scalars": {"datasets": ["fair1m"]}},
                    "tracking": {"tables": {}, "scalars": {"datasets": ["bdd100k"]}},
                    "scalemae_knn": {
                        "tables": {},
                        "scalars": {"datasets": ["ucmerced", "resisc45"]},
                    },
                }
            )
        )
        self.assertNotIn("Dataset: `cityscapes`", text)
        summary = text[: text.index("## Models")]
        self.assertIn("| [fair1m_retrieval](#fair1m_retrieval) | `fair1m` |", summary)
        self.assertIn("| [tracking](#tracking) | `bdd100k` |", summary)
        self.assertIn("| [scalemae_knn](#scalemae_knn) | `ucmerced`, `resisc45` |", summary)
        self.assertIn("## tracking\n\nDatasets read: `bdd100k`.", text)

    def test_summary_first_and_large_tables_linked(self):
        big = fair1m_rows(354)
        small = [{"model": "m1", "knn_miou": 0.4, "knn_paper": None, "linear_miou": 0.5}]
        text = report.build_report(
            results(
                {
                    "fair1m_retrieval": {"tables": {"outcomes": big}, "scalars": {}},
                    "fewshot": {"tables": {"tab2": small}, "scalars": {}},
                }
            )
        )
        lines = text.splitlines()
        self.assertLess(len(lines), 120)
        # The 354-row table is a link with its size, not 354 table lines.
        self.assertIn(
            "Full table (354 rows x 22 columns): "
            "[`tables/fair1m_retrieval_outcomes.csv`](tables/fair1m_retrieval_outcomes.csv)",
            text,
        )
        self.assertEqual(sum(line.startswith("| m1 | dino | identification") for line in lines), 0)
        # Headline per model before the models and the full sections: mean over perturbations.
        summary = text[: text.index("## Models")]
        self.assertIn("| model | identification same_patch | retrieval at_least_fine |", summary)
        self.assertIn("| m1 | 0.500 | 0.250 |", summary)
        self.assertIn(
            "| model | knn_miou | linear_miou |\n|---|---|---|\n| m1 | 0.400 | 0.500 |", summary
        )
        # The small table stays inline in its section.
        self.assertIn("| model | knn_miou | knn_paper | linear_miou |", text)

    def test_outputs_respect_the_umask(self):
        workdir = tempdir(self)
        entry = {"tables": {"t": [{"a": 1}]}, "scalars": {"datasets": ["synthetic"]}}
        for mask, mode in ((0o022, 0o644), (0o027, 0o640)):
            old = os.umask(mask)
            try:
                report.write_results(workdir, results({"e": entry}))
            finally:
                os.umask(old)
            for name in ("results.json", "report.md", os.path.join("tables", "e_t.csv")):
                got = stat.S_IMODE(os.stat(os.path.join(workdir, name)).st_mode)
                self.assertEqual(got, mode, f"{name} under umask {mask:o}")
        with open(os.path.join(workdir, "tables", "e_t.csv")) as f:
            self.assertEqual(list(csv.DictReader(io.StringIO(f.read()))), [{"a": "1"}])


class FileioTest(absltest.TestCase):
    def test_atomic_writes_and_modes(self):
        folder = tempdir(self)
        path = os.path.join(folder, "sub", "x.bin")
        old = os.umask(0o002)
        try:
            fileio.atomic_write_bytes(path, b"one")
            fileio.atomic_write_text(path, "two\u00e9")
        finally:
            os.umask(old)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), "two\u00e9")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o664)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["x.bin"])

    def test_replace_dir(self):
        parent = tempdir(self)
        final = os.path.join(parent, "out")
        for content in ("first", "second"):
            old = os.umask(0o022)
            try:
                tmp = fileio.make_temp_dir(final)
                with open(os.path.join(tmp, "f.txt"), "w") as f:
                    f.write(content)
                fileio.replace_dir(tmp, final, allowed=("f.txt",))
            finally:
                os.umask(old)
            with open(os.path.join(final, "f.txt")) as f:
                self.assertEqual(f.read(), content)
            self.assertEqual(stat.S_IMODE(os.stat(final).st_mode), 0o755)
        self.assertEqual(os.listdir(parent), ["out"])  # no temporary or old folder left


if __name__ == "__main__":
    absltest.main()
