"""Checks a whole run config before any work: every problem is reported at once, up front.

A typo in an enum (`--config.knn.metric=cosin`), a missing data root or checkpoint would otherwise
surface only when the experiment that reads it starts, possibly hours into a run. `check_config`
runs the same parsers and checks the experiments use, for every section that will run, plus the
checkpoints of every model, and raises one ConfigError that lists every problem found.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

# Every other vitjax import is inside the check that needs it, on purpose: run imports this module
# (so `run` cannot be imported here), and an experiment module is imported only when its section
# will run (the experiments load lazily everywhere: matplotlib, dataset readers).
from vitjax import errors

# The experiments that read `config.dataset` / `config.data` (the Cityscapes-protocol ones).
DATA_EXPERIMENTS = (
    "fewshot",
    "variance",
    "layerwise",
    "robustness",
    "global_context",
    "tiling_vs_full",
    "mae_reconstruction",
)
# Experiments that run a patch k-NN / linear probe with the shared `knn` / `probe` sections.
KNN_EXPERIMENTS = DATA_EXPERIMENTS + ("fair1m_retrieval",)
PROBE_EXPERIMENTS = ("fewshot", "variance", "robustness", "tiling_vs_full")
BLUR_KINDS = ("box_blur", "blur")
SPLIT_CHOICES = ("paper", "seeded")
SCORE_LEVELS = ("pixel", "patch")
PATCH_LABEL_RULES = ("centre", "mode")
FAIR1M_EXCLUDE = ("tile", "image")


def did_you_mean(value: Any, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `choices` to `value`, or ''."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def enum_problem(field: str, value: Any, choices: Sequence[str]) -> str | None:
    """The message for `field=value` outside `choices`, or None when it is one of them."""
    if str(value) in choices:
        return None
    return f"{field}={value!r}: expected one of {', '.join(choices)}{did_you_mean(value, choices)}"


class _Problems:
    """Collects messages; `check(fn)` records a VitjaxError raised by `fn` instead of stopping."""

    def __init__(self):
        self.messages: list[str] = []

    def add(self, message: str | None) -> None:
        if message and message not in self.messages:
            self.messages.append(message)

    def enum(self, section: ml_collections.ConfigDict, prefix: str, field: str, choices) -> None:
        if field in section:
            self.add(enum_problem(f"{prefix}.{field}", section[field], choices))

    def check(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except errors.VitjaxError as e:
            self.add(str(e))
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            # A mistyped value (e.g. a string where a number goes) fails in int()/float().
            self.add(f"{type(e).__name__}: {e}")
        return None


def _section(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    return config[name] if name in config else ml_collections.ConfigDict()


def _check_models(config: ml_collections.ConfigDict, problems: _Problems) -> None:
    """Every checkpoint of `config.models` exists, holds a spec and matches its entry."""
    from vitjax import models, run
    from vitjax.pretrain import shipped

    entries = problems.check(lambda: run.parse_models(config.models))
    for entry in entries or ():
        checkpoint = getattr(entry, "checkpoint", None)
        if checkpoint is None:
            continue
        try:
            spec = models.load_spec(shipped.resolve(checkpoint))
        except errors.VitjaxError as e:
            problems.add(
                f"config.models entry {entry.family}:{entry.size}:{entry.patch_size}: {e} "
                "(convert it with `python -m checkpoints_convert`, or write `none` for random "
                "weights)"
            )
            continue
        held = (spec.family, spec.size, int(spec.patch_size))
        named = (entry.family, entry.size, int(entry.patch_size))
        if held != named:
            problems.add(
                f"config.models: checkpoint {checkpoint} holds "
                "{}:{}:{}, but the entry says {}:{}:{}".format(*held, *named)
            )


def _check_shared(config: ml_collections.ConfigDict, names: list[str], p: _Problems) -> None:
    from vitjax import experiments, extract, knn, probes

    extract_cfg = _section(config, "extract")
    p.enum(extract_cfg, "config.extract", "store_dtype", extract.STORE_DTYPES)
    p.enum(extract_cfg, "config.extract", "compute_dtype", ("float32", "bfloat16"))
    if any(n in KNN_EXPERIMENTS for n in names):
        knn_cfg = _section(config, "knn")
        p.enum(knn_cfg, "config.knn", "metric", knn.METRICS)
        p.enum(knn_cfg, "config.knn", "rule", knn.RULES)
        p.enum(knn_cfg, "config.knn", "compute_dtype", experiments.KNN_COMPUTE_DTYPES)
        if "k" in knn_cfg and not (isinstance(knn_cfg.k, int) and knn_cfg.k > 0):
            p.add(f"config.knn.k={knn_cfg.k!r}: expected a positive integer")
    if any(n in PROBE_EXPERIMENTS for n in names):
        probe_cfg = _section(config, "probe")
        p.enum(probe_cfg, "config.probe", "optimizer", probes.OPTIMIZERS)
        p.enum(probe_cfg, "config.probe", "schedule", probes.SCHEDULES)
        if "val_fraction" in probe_cfg and not 0.0 <= probe_cfg.val_fraction < 1.0:
            p.add(f"config.probe.val_fraction={probe_cfg.val_fraction!r}: expected in [0, 1)")
    if any(n in DATA_EXPERIMENTS for n in names):
        _check_data(config, p)


def _check_data(config: ml_collections.ConfigDict, p: _Problems) -> None:
    """`config.dataset`, the `data` enums, and the dataset root."""
    from vitjax import metrics
    from vitjax.data import registry

    p.add(enum_problem("config.dataset", config.dataset, _names(registry.SEGMENTATION)))
    data_cfg = _section(config, "data")
    p.enum(data_cfg, "config.data", "splits", SPLIT_CHOICES)
    p.enum(data_cfg, "config.data", "score_level", SCORE_LEVELS)
    p.enum(data_cfg, "config.data", "miou_convention", metrics.CONVENTIONS)
    p.enum(data_cfg, "config.data", "patch_label_rule", PATCH_LABEL_RULES)
    _check_root(registry.SEGMENTATION, config.dataset, data_cfg.root, "config.data.root", p)


def _names(kind: str) -> tuple[str, ...]:
    from vitjax.data import registry

    return tuple(registry.list_datasets(kind))


def _check_root(kind: str, name: Any, root: Any, field: str, p: _Problems) -> None:
    """The registry's root check of dataset `name` of `kind`, if it is one read from a folder."""
    from vitjax.data import registry

    if name in _names(kind):
        spec = registry.get_dataset(name, kind)
        if spec.needs_root:
            p.check(lambda: spec.check_root(root, field))


def _check_methods(section, prefix: str, p: _Problems) -> None:
    from vitjax.experiments import common

    if "methods" in section:
        p.check(lambda: common.methods(section.methods, f"{prefix}.methods"))


def _check_experiment(name: str, config: ml_collections.ConfigDict, p: _Problems) -> None:
    """The checks of one experiment's own section `config.<name>`."""
    cfg = _section(config, name)
    prefix = f"config.{name}"
    if name in ("fewshot", "robustness", "tiling_vs_full"):
        _check_methods(cfg, prefix, p)
    if name == "robustness":
        p.enum(cfg, prefix, "blur_kind", BLUR_KINDS)
        if cfg.blur_kind == "blur":
            even = [v for v in cfg.blur_levels if v % 2 == 0]
            if even:
                p.add(
                    f"{prefix}.blur_levels={tuple(cfg.blur_levels)}: the Gaussian 'blur' "
                    f"takes odd kernel sizes, got {even} (or set {prefix}.blur_kind=box_blur)"
                )
    elif name == "global_context":
        from vitjax.experiments import global_context

        p.enum(cfg, prefix, "target", global_context.TARGETS)
    elif name == "variance":
        from vitjax.experiments import variance

        p.check(lambda: variance.overlap_plan(config, list(cfg.overlap_datasets)))
    elif name == "layerwise":
        from vitjax.experiments import layerwise

        # Any depth >= the largest index would do; a wrong index is checked per model later.
        p.check(lambda: layerwise.resolve_layers(cfg.layers, 10_000))
    elif name == "tracking":
        _check_tracking(cfg, p)
    elif name == "fair1m_retrieval":
        _check_fair1m(cfg, p)
    elif name == "scalemae_knn":
        _check_scalemae(cfg, p)
    elif name == "mae_reconstruction":
        from vitjax.experiments import mae_reconstruction

        p.check(lambda: mae_reconstruction._check(cfg))


def _check_tracking(cfg, p: _Problems) -> None:
    from vitjax.data import registry
    from vitjax.experiments import tracking

    p.check(lambda: tracking._check(cfg))
    p.enum(cfg, "config.tracking", "dataset", _names(registry.TRACKING))
    p.check(lambda: tracking.geometries(cfg))
    gaps = cfg.gaps
    if not gaps or any(g <= 0 for g in gaps):
        p.add(f"config.tracking.gaps={tuple(gaps)!r}: expected positive frame gaps, e.g. (1, 5)")
    _check_root(registry.TRACKING, cfg.dataset, cfg.root, "config.tracking.root", p)


def _check_fair1m(cfg, p: _Problems) -> None:
    from vitjax import knn
    from vitjax.data import registry
    from vitjax.experiments import fair1m_retrieval

    p.check(lambda: fair1m_retrieval._check(cfg))
    p.enum(cfg, "config.fair1m_retrieval", "dataset", _names(registry.OBJECT_TILES))
    p.enum(cfg, "config.fair1m_retrieval", "metric", knn.METRICS)
    p.enum(cfg, "config.fair1m_retrieval", "exclude", FAIR1M_EXCLUDE)
    p.enum(cfg, "config.fair1m_retrieval", "patch_label_rule", PATCH_LABEL_RULES)
    p.check(lambda: fair1m_retrieval.perturbation_cases(cfg))
    field = "config.fair1m_retrieval.root"
    _check_root(registry.OBJECT_TILES, cfg.dataset, cfg.root, field, p)


def _check_scalemae(cfg, p: _Problems) -> None:
    from vitjax import knn
    from vitjax.data import registry
    from vitjax.experiments import scalemae_knn

    p.check(lambda: scalemae_knn._check(cfg))
    p.enum(cfg, "config.scalemae_knn", "metric", knn.METRICS)
    for name in cfg.datasets:
        if name not in _names(registry.SCENES):
            field = "config.scalemae_knn.datasets entry"
            p.add(enum_problem(field, name, _names(registry.SCENES)))
        elif name not in cfg:
            p.add(f"config.scalemae_knn has no section {name!r}")
        elif "tfds_data_dir" in cfg[name] and cfg[name].tfds_data_dir:
            data_dir = os.path.expanduser(str(cfg[name].tfds_data_dir))
            if not os.path.isdir(data_dir):
                p.add(
                    f"config.scalemae_knn.{name}.tfds_data_dir={data_dir!r} is not a folder: set "
                    "it to a TFDS data_dir that holds the prepared dataset (or clear it and set "
                    f"config.scalemae_knn.{name}.root)"
                )
        else:
            field = f"config.scalemae_knn.{name}.root"
            _check_root(registry.SCENES, name, cfg[name].get("root"), field, p)


def section_defaults() -> dict[str, ml_collections.ConfigDict]:
    """Every section that has defaults: the shared ones and each registered experiment's
    `defaults()`, by name."""
    from vitjax import experiments
    from vitjax.experiments import common

    out = {
        "extract": common.extract_defaults(),
        "knn": common.knn_defaults(),
        "probe": common.probe_defaults(),
    }
    for name in experiments.known():
        module = sys.modules[experiments.get(name).__module__]
        if hasattr(module, "defaults"):
            out[name] = module.defaults()
    return out


def _element_type_problems(value: Any, default: Any, field: str) -> list[str]:
    """Tuple fields whose elements have another type than the default's (ml_collections checks
    that a tuple is a tuple, not what it holds); ints are taken where floats are expected."""
    if isinstance(default, ml_collections.ConfigDict) and isinstance(
        value, ml_collections.ConfigDict
    ):
        out = []
        for key in default.keys():
            if key in value:
                out += _element_type_problems(value[key], default[key], f"{field}.{key}")
        return out
    if not (isinstance(default, tuple) and default and isinstance(value, tuple)):
        return []
    kind = type(default[0])

    def fits(v: Any) -> bool:
        if isinstance(v, bool):
            return kind is bool
        return isinstance(v, (int, float) if kind is float else kind)

    if all(fits(v) for v in value):
        return []
    shown = repr(default).replace(" ", "")
    return [f"{field}={value!r}: expected a tuple of {kind.__name__}, e.g. --{field}='{shown}'"]


def problems(config: ml_collections.ConfigDict) -> list[str]:
    """Every problem of `config` found without loading data or weights (messages, in order)."""
    from vitjax import experiments, run

    p = _Problems()
    names = run.split_names(config.experiments)
    if not names:
        p.add("config.experiments is empty; expected e.g. ('fewshot', 'variance')")
    known = experiments.known()
    for name in names:
        if p.check(lambda name=name: experiments.get(name)) is None:
            p.messages[-1] += did_you_mean(name, known)
    names = [n for n in names if n in known]
    for section, default in section_defaults().items():
        if section in config:
            for message in _element_type_problems(config[section], default, f"config.{section}"):
                p.add(message)
    _check_models(config, p)
    _check_shared(config, names, p)
    for name in names:
        _check_experiment(name, config, p)
    return p.messages


def inactive_fields(config: ml_collections.ConfigDict) -> list[str]:
    """Fields of `config` that take no part in the chosen mode, each with the reason.

    They stay in config.json (the config is written whole); results.json lists them under
    `inactive_config_fields` and the run logs them, so they are not read as if they acted.
    """
    out = []
    names = set(_experiment_names(config))
    if names & set(KNN_EXPERIMENTS) and config.knn.rule == "1nn":
        out.append("config.knn.k: unused, config.knn.rule='1nn' takes the single nearest neighbour")
    if names & set(PROBE_EXPERIMENTS) and config.probe.optimizer != "sgd":
        out.append(
            f"config.probe.momentum: unused, config.probe.optimizer={config.probe.optimizer!r} "
            "(sgd only)"
        )
    if "tracking" in names and config.tracking.dataset != "mot17":
        for field in ("detector", "min_visibility"):
            out.append(
                f"config.tracking.{field}: unused, MOT17 only "
                f"(config.tracking.dataset={config.tracking.dataset!r})"
            )
    if "fair1m_retrieval" in names:
        cfg = config.fair1m_retrieval
        for level in cfg.levels.keys():
            if level not in cfg.perturbations:
                out.append(
                    f"config.fair1m_retrieval.levels.{level}: unused, {level!r} is not in "
                    "config.fair1m_retrieval.perturbations"
                )
    return out


def _experiment_names(config: ml_collections.ConfigDict) -> list[str]:
    from vitjax import run  # run imports this module

    return run.split_names(config.experiments)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises one ConfigError listing every problem of `config` (see `problems`).

    Raises:
      ConfigError: the message holds one line per problem.
    """
    found = problems(config)
    if found:
        lines = "\n".join(f"  - {m}" for m in found)
        raise errors.ConfigError(
            f"the config has {len(found)} problem{'s' if len(found) > 1 else ''} "
            f"(nothing was run):\n{lines}"
        )
