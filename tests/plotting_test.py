"""Figures: distinct series styles, integer and plain ticks, units, clean points, random-weights mark.

The experiments' figure code is run on hand-made result rows; `plotting._save` is replaced by a
recorder so that the tests read the matplotlib Figure itself (lines, ticks, labels, texts).
"""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import os
import shutil
import stat
import tempfile
import types
from unittest import mock

import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from configs import common as common_config
from configs import fair1m as fair1m_config
from vitjax import experiments, plotting
from vitjax.experiments import fair1m_retrieval, robustness, tracking

FAMILIES = ("dino", "ibot", "mae", "simmim", "dinov2", "torchvision")


def handles(families=FAMILIES, random_weights=True):
    return [
        experiments.ModelHandle(
            f"{f}_m{i}", None, None, types.SimpleNamespace(family=f), random_weights
        )
        for i, f in enumerate(families)
    ]


class FigureRecorder:
    """Stands in for `plotting._save`: keeps each Figure instead of writing a PNG."""

    def __init__(self, test):
        self.figures = []
        patcher = mock.patch.object(plotting, "_save", self._save)
        patcher.start()
        test.addCleanup(patcher.stop)
        test.addCleanup(lambda: [plt.close(f) for f in self.figures])

    def _save(self, fig, path):
        fig.canvas.draw()  # tick labels exist only once drawn
        self.figures.append(fig)
        return path


def context(test, models, name):
    workdir = tempfile.mkdtemp(prefix="vitjax_plot_test_")
    test.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    return experiments.Context(models, None, workdir, 0, common_config.get_base(), name=name)


def styles(ax):
    return [(str(ln.get_color()), ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()]


def visible_tick_labels(ax):
    """Text of every labelled x tick (major and minor) inside the axis limits."""
    lo, hi = sorted(ax.get_xlim())
    out = []
    for tick in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks():
        if lo <= tick.get_loc() <= hi and tick.label1.get_visible() and tick.label1.get_text():
            out.append((tick.get_loc(), tick.label1.get_text()))
    return out


def fair1m_rows(models, levels):
    rows = []
    for m_index, model in enumerate(models):
        for mode in ("identification", "retrieval"):
            cases = [("clean", 0.0)] + [(p, lv) for p, lvs in levels.items() for lv in lvs]
            for i, (name, level) in enumerate(cases):
                value = 1.0 / (1 + i + m_index)
                rows.append(
                    {
                        "model": model.name,
                        "family": model.spec.family,
                        "mode": mode,
                        "perturbation": name,
                        "level": level,
                        "removed": 0,
                        "same_patch_frac": value,
                        "at_least_fine_frac": value,
                        "at_least_super_frac": value,
                    }
                )
    return rows


class SeriesStyleTest(parameterized.TestCase):
    def test_fair1m_twelve_series_are_told_apart_by_family_and_outcome(self):
        recorder = FigureRecorder(self)
        models = handles()
        cfg = fair1m_config.fair1m_retrieval_defaults()
        levels = {"shift": (1.0, 2.0), "scale": (0.8, 1.2)}
        rows = fair1m_rows(models, levels)
        tiles = mock.MagicMock(category=np.zeros(4, np.int64), fine_names=["bg", "car"])
        tiles.__len__.return_value = 4
        result = fair1m_retrieval._result(
            context(self, models, "fair1m_retrieval"), cfg, tiles, rows, []
        )
        fig = recorder.figures[0]  # identification
        ax = fig.axes[0]
        got = styles(ax)
        self.assertLen(got, 12)  # 6 models x 2 outcomes
        self.assertLen(set(got), 12, got)  # no two series look the same
        by_label = dict(zip([ln.get_label() for ln in ax.get_lines()], got))
        for model in models:
            solid = by_label[f"{model.name} same_patch"]
            dashed = by_label[f"{model.name} at_least_fine"]
            self.assertEqual(solid[0], dashed[0])  # colour = family
            self.assertNotEqual(solid[1], dashed[1])  # line style = outcome
        self.assertLen({s[0] for s in got}, 6)
        self.assertEqual(result.scalars["datasets"], ["fair1m"])  # not config.dataset

    def test_fair1m_curves_start_at_the_clean_point_with_units(self):
        recorder = FigureRecorder(self)
        models = handles(FAMILIES[:2])
        cfg = fair1m_config.fair1m_retrieval_defaults()
        levels = {"shift": (1.0, 2.0), "rotate": (5.0,), "scale": (0.8, 1.2), "noise": (10.0,)}
        tiles = mock.MagicMock(category=np.zeros(4, np.int64), fine_names=["bg", "car"])
        tiles.__len__.return_value = 4
        fair1m_retrieval._result(
            context(self, models, "fair1m_retrieval"), cfg, tiles, fair1m_rows(models, levels), []
        )
        clean = {"shift": 0.0, "rotate": 0.0, "scale": 1.0, "noise": 0.0}
        units = {"shift": "px", "rotate": "degrees", "scale": "1 = clean", "noise": "0-255"}
        for ax in recorder.figures[0].axes:
            name = ax.get_title()
            if name not in clean:
                continue
            self.assertIn(units[name], ax.get_xlabel())
            for line in ax.get_lines():
                x = np.asarray(line.get_xdata())
                self.assertIn(clean[name], x, f"{name}: {line.get_label()}")
                self.assertTrue(np.all(np.diff(x) > 0), x)  # drawn in level order
        self.assertIn("RANDOM WEIGHTS", " ".join(t.get_text() for t in recorder.figures[0].texts))

    def test_series_styles_stay_distinct_beyond_the_marker_count(self):
        # One family with more models than markers: every series gets its own colour.
        keys = {f"m{i}": ("dino", f"m{i}", "") for i in range(len(plotting.MARKERS) + 2)}
        got = plotting.series_styles(keys)
        triples = {(str(s["color"]), s["marker"], str(s["linestyle"])) for s in got.values()}
        self.assertLen(triples, len(keys))
        # 24 series without keys: 24 colours, none reused.
        panels = {"p": {f"s{i}": ([0, 1], [i, i]) for i in range(24)}}
        fig = plotting.line_figure(panels, "x", "y")
        self.addCleanup(plt.close, fig)
        self.assertLen({str(ln.get_color()) for ln in fig.axes[0].get_lines()}, 24)


class TicksAndLabelsTest(parameterized.TestCase):
    def test_tracking_gap_axis_has_plain_integer_ticks(self):
        recorder = FigureRecorder(self)
        models = handles(FAMILIES[:3])
        rows = [
            {
                "model": m.name,
                "family": m.spec.family,
                "geometry": "g",
                "gap": gap,
                "instance_acc": 0.5,
                "category_acc": 0.6,
            }
            for m in models
            for gap in (1, 2, 3, 5, 10, 20)
        ]
        cfg = ml_collections.ConfigDict(
            dict(dataset="mot17", roi_output=2, roi_pool="avg", metric="cosine")
        )
        videos = [types.SimpleNamespace(name="MOT17-02")]
        result = tracking._result(context(self, models, "tracking"), cfg, videos, rows, [])
        for ax in recorder.figures[0].axes[:2]:
            labels = visible_tick_labels(ax)
            self.assertNotEmpty(labels)
            for loc, text in labels:
                self.assertEqual(loc, round(loc))
                self.assertRegex(text, r"^\d+$")  # not 2x10^0
            self.assertIn("frames", ax.get_xlabel())
        self.assertEqual(result.scalars["datasets"], ["mot17"])
        self.assertIn("random weights", result.text["accuracy_vs_gap"])

    def test_integer_axis_on_a_linear_scale(self):
        fig = plotting.line_figure(
            {"p": {"a": ([1, 2], [0.1, 0.2])}}, "train images per city", "mIoU", integer_x=True
        )
        self.addCleanup(plt.close, fig)
        fig.canvas.draw()
        labels = visible_tick_labels(fig.axes[0])
        self.assertEqual([loc for loc, _ in labels], [1.0, 2.0])  # not 1.2, 1.4, ...

    def test_robustness_levels_with_units_and_clean_point(self):
        recorder = FigureRecorder(self)
        models = handles(FAMILIES[:2])
        cfg = common_config.get_base().robustness
        rows = []
        for m in models:
            cases = [("clean", 0.0)] + [
                (c, lv) for c in ("blur", "noise", "freq_noise") for lv in (1.0, 2.0)
            ]
            for c, lv in cases:
                rows.append(
                    {"model": m.name, "corruption": c, "level": lv, "method": "knn", "miou": 0.3}
                )
        robustness.figure(context(self, models, "robustness"), cfg, rows, ["knn"])
        axes = recorder.figures[0].axes
        labels = {ax.get_title(): ax.get_xlabel() for ax in axes}
        self.assertIn("px", labels["blur (knn)"])
        self.assertIn("0-255", labels["noise (knn)"])
        self.assertIn("band", labels["freq_noise (knn)"])
        for ax in axes:
            for line in ax.get_lines():
                x = list(line.get_xdata())
                self.assertEqual(x[0], 0.0)  # the clean images
                self.assertLen(set(x), 3)  # clean + two levels, none on top of another

    def test_heatmap_colour_bar_has_a_label(self):
        recorder = FigureRecorder(self)
        plotting.heatmaps(
            "unused.png",
            {"a": np.eye(2)},
            ["r0", "r1"],
            ["0", "1"],
            cbar_label="IoU (0-1)",
            mark=plotting.random_weights_mark(handles(FAMILIES[:1])),
        )
        fig = recorder.figures[0]
        bar_axes = [ax for ax in fig.axes if ax.get_ylabel() == "IoU (0-1)"]
        self.assertLen(bar_axes, 1)
        self.assertIn("RANDOM WEIGHTS", " ".join(t.get_text() for t in fig.texts))

    def test_mark_of_many_models_is_wrapped(self):
        trained = [
            experiments.ModelHandle(
                f"{f}_trained", None, None, types.SimpleNamespace(family=f), False
            )
            for f in FAMILIES[:2]
        ]
        models = [
            experiments.ModelHandle(f"{h.name}_vitti16-depth3", None, None, h.spec, True)
            for h in handles(FAMILIES)
        ] + trained
        mark = plotting.random_weights_mark(models)
        self.assertIn(f"({len(FAMILIES)} of {len(models)} models)", mark)
        self.assertLessEqual(max(len(line) for line in mark.splitlines()), 100)
        for m in models:
            self.assertEqual(m.name in mark.replace("\n", " "), m.random_weights, m.name)

    def test_no_mark_for_real_weights(self):
        self.assertIsNone(plotting.random_weights_mark(handles(random_weights=False)))
        mixed = handles(FAMILIES[:2], random_weights=False)
        mixed[1].random_weights = True
        self.assertEqual(
            plotting.random_weights_mark(mixed), "RANDOM WEIGHTS (1 of 2 models): ibot_m1"
        )


class CaptionTest(absltest.TestCase):
    def test_paper_finding_is_attributed_and_random_weights_said(self):
        text = plotting.caption("Measured X.", "that a few dimensions dominate", handles())
        self.assertEqual(
            text,
            "Measured X. The paper reports that a few dimensions dominate. These models have "
            "random weights, so the figure tests the pipeline only.",
        )
        self.assertEqual(plotting.caption("Measured X.", None, []), "Measured X.")


class PngModeTest(absltest.TestCase):
    def test_png_respects_the_umask(self):
        folder = tempfile.mkdtemp(prefix="vitjax_plot_mode_")
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, "f.png")
        old = os.umask(0o022)
        try:
            plotting.line_plot(path, {"p": {"a": ([0, 1], [0.0, 1.0])}}, "x (unit)", "y")
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertEqual(os.listdir(folder), ["f.png"])  # no temporary left behind


if __name__ == "__main__":
    absltest.main()
