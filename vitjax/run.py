"""Runs the experiments named in a config and writes results.json, CSVs, figures and report.md.

`run(config, workdir)` is what `python -m vitjax.main` calls; tests and notebooks call it directly.
Under `jax.distributed.initialize()` every process calls it with the same config and a shared
workdir: all of them compute (extraction and the k-NN searches run on one mesh over every device),
only process 0 writes results.json, cache/, tables/, figures/ and report.md, and the others wait
for it at a barrier before returning.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
import time
import zlib
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from vitjax import errors, experiments, fileio, models, progress, provenance, report, validate
from vitjax.pretrain import shipped
from vitjax.store import FeatureStore

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
# Folders of the workdir that hold caches, not outputs of one run: never cleared.
_CACHE_DIRS = ("cache", "features")
_NO_CHECKPOINT = ("", "none", "random", "null")
_VERSIONED_PACKAGES = (
    "vitjax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "ml-collections",
    "numpy",
    "scipy",
    "matplotlib",
)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One `config.models` entry: `family:size:patch[:checkpoint_dir]`."""

    family: str
    size: str
    patch_size: int
    checkpoint: str | None


def split_names(value: str | Sequence[str]) -> list[str]:
    """The entries of a list-valued config field, whitespace stripped, empty ones dropped.

    The one place where the short command-line form is parsed: ml_collections turns
    `--config.models=a,b` on a tuple field into the 1-tuple `("a,b",)`, so an entry holding commas
    is split here (a plain comma string, as older configs wrote, is read the same way).

    Examples:
      >>> split_names(("dino:b:16:none,mae:b:16:none", " ibot:b:16:none"))
      ['dino:b:16:none', 'mae:b:16:none', 'ibot:b:16:none']
    """
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def expand_models_flag(argv: Sequence[str]) -> list[str]:
    """Rewrites the short form `--config.models=dino:b:16:ckpt,mae:b:16:none` of the command line
    into the tuple `--config.models=('dino:b:16:ckpt', 'mae:b:16:none')`.

    ml_collections parses a tuple field's value as Python; a comma list of model strings (':' and
    '/' in it) is not, and would be refused. Other fields need no help: an unquoted `a,b` of plain
    names arrives as `('a,b',)` and `normalize_lists` splits it.
    """
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name == "--config.models" and eq and "," in value and value.strip()[:1] not in "([":
            arg = f"{name}={tuple(split_names(value))!r}"
        out.append(arg)
    return out


def normalize_lists(config: ml_collections.ConfigDict) -> None:
    """Splits, in place, comma-joined command-line entries of every tuple-of-strings field of
    `config` (`--config.fewshot.methods=knn,linear` -> ("knn", "linear")); see `split_names`."""
    for key in list(config.keys()):
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            normalize_lists(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
            names = tuple(split_names(value))
            if names != value:
                config[key] = names


def parse_models(models: str | Sequence[str]) -> list[ModelEntry]:
    """Parses `config.models`, a tuple of `family:size:patch[:checkpoint]` strings.

    A checkpoint of `none` (or nothing) means random weights. `known:<kind>[:patch]` names a
    hand-built known-answer model (`vitjax.models.known`; family 'known', size = the kind).
    Comma-joined entries (the command line's short form) are split first (`split_names`).

    Examples:
      >>> parse_models(("dino:b:16:/ckpt/dino_vitb16", "mae:ti:16:none"))[1]
      ModelEntry(family='mae', size='ti', patch_size=16, checkpoint=None)

    Raises:
      ConfigError: on an entry that does not have that form.
    """
    entries = []
    for raw in split_names(models):
        parts = raw.split(":", 3)
        if parts[0].strip() == "known" and len(parts) == 2:
            parts.append("16")  # known-answer model `known:<kind>[:patch]` (vitjax.models.known)
        if len(parts) < 3 or not parts[2].isdigit():
            raise errors.ConfigError(
                f"config.models entry {raw!r}: expected 'family:size:patch[:checkpoint_dir|none]', "
                "e.g. 'dino:b:16:none'"
            )
        ckpt = parts[3].strip() if len(parts) == 4 else ""
        entries.append(
            ModelEntry(
                parts[0].strip(),
                parts[1].strip(),
                int(parts[2]),
                None if ckpt.lower() in _NO_CHECKPOINT else ckpt,
            )
        )
    if not entries:
        raise errors.ConfigError("config.models is empty; expected e.g. ('dino:b:16:none',)")
    return entries


def load_models(config: ml_collections.ConfigDict) -> list[experiments.ModelHandle]:
    """Builds one ModelHandle per `config.models` entry (checkpoint, or random weights).

    Random models use `config.model_depth` blocks when it is > 0 (small demo variants) and are
    seeded from `config.seed`.
    """
    handles: list[experiments.ModelHandle] = []
    depth = config.model_depth
    for entry in parse_models(config.models):
        known = entry.family == models.known.KNOWN
        if known:
            if entry.checkpoint is not None:
                raise errors.ConfigError(
                    f"config.models: {entry.family}:{entry.size}:{entry.patch_size} is a "
                    f"hand-built known-answer model and takes no checkpoint (got "
                    f"{entry.checkpoint!r}); write it as 'known:<kind>[:<patch>]'"
                )
            module, params, spec = models.known_model(entry.size, entry.patch_size)
        elif entry.checkpoint is not None:
            module, params, spec = models.load(shipped.resolve(entry.checkpoint))
            held = (spec.family, spec.size, int(spec.patch_size))
            named = (entry.family, entry.size, int(entry.patch_size))
            if held != named:
                raise errors.ConfigError(
                    f"config.models: checkpoint {entry.checkpoint} holds "
                    "{}:{}:{}, but the entry says {}:{}:{}".format(*held, *named)
                )
        else:
            module, params, spec = _random_model(entry, depth, config.seed)
        name = spec.name
        taken = {h.name for h in handles}
        suffix = 2
        while name in taken:
            name, suffix = f"{spec.name}-{suffix}", suffix + 1
        handles.append(
            experiments.ModelHandle(
                name, module, params, spec, entry.checkpoint is None and not known, entry.checkpoint
            )
        )
        logging.info(
            "model %s: %s", name, "known-answer" if known else entry.checkpoint or "random weights"
        )
    return handles


def random_seed(entry: ModelEntry, seed: int) -> int:
    """Weight seed of a random model: the run seed mixed with the variant's name, so that two
    families with the same shapes (dino, ibot, torchvision) do not get identical weights."""
    return (
        seed * 1000 + zlib.crc32(f"{entry.family}:{entry.size}:{entry.patch_size}".encode()) % 1000
    )


def _random_model(entry: ModelEntry, depth: int, seed: int):
    seed = random_seed(entry, seed)
    overrides = {"depth": depth} if depth > 0 else {}
    return models.random_model(
        entry.family, entry.size, seed, patch_size=entry.patch_size, **overrides
    )


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["vitjax_source_sha256"] = provenance.source_digest()
    return versions


def experiment_names(config: ml_collections.ConfigDict) -> list[str]:
    """The experiments of `config.experiments` (a tuple of names), each checked to exist."""
    names = split_names(config.experiments)
    for name in names:
        experiments.get(name)  # raises with the known names
    return names


def cache_key(
    name: str, config: ml_collections.ConfigDict, handles: list[experiments.ModelHandle]
) -> str:
    """Hash of everything that shapes experiment `name`'s result.

    That is its own section `config.<name>`, every shared section (all fields that are not another
    experiment's section, nor the experiment list or logging), the models' identities and a digest
    of vitjax's source files (a change of code must not serve results made by the old code).
    """
    listed = set(split_names(config.experiments))
    skip = set(experiments.known()) | listed | {"experiments", "log_every_s"}
    shared = {k: v for k, v in config.to_dict().items() if k not in skip}
    own = config[name].to_dict() if name in config else {}
    models = [h.describe() for h in handles]
    return experiments.stable_hash(
        {
            "name": name,
            "own": own,
            "shared": shared,
            "models": models,
            "code": provenance.source_digest(),
        }
    )


def device_mesh() -> Mesh | None:
    """One-axis ("data") mesh over every device of every process, as extraction builds by
    default; None on a single device (the k-NN search then runs unsharded)."""
    devices = jax.devices()
    if len(devices) == 1:
        return None
    return Mesh(np.asarray(devices), ("data",))


def is_writer() -> bool:
    """Whether this process writes the run's outputs (process 0 only)."""
    return jax.process_index() == 0


def _barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name` (nothing to wait for in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _agree(flag: bool) -> bool:
    """Process 0's `flag` on every process, so that all take the same branch."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.asarray(multihost_utils.broadcast_one_to_all(np.int32(bool(flag)))))


def prepare_workdir(workdir: str, create: bool = True) -> str:
    """The absolute `workdir`, created when `create`; checked to be (or become) a folder.

    Raises:
      ConfigError: `workdir` or a folder above it is a file, or it cannot be created.
    """
    path = os.path.abspath(os.path.expanduser(workdir))
    node = path
    while node and not os.path.lexists(node):
        node = os.path.dirname(node) if os.path.dirname(node) != node else ""
    if node and not os.path.isdir(node):
        which = "is a file" if node == path else f"cannot be created: {node} is a file"
        raise errors.ConfigError(
            f"--workdir={workdir}: {path} {which}, not a folder; name a folder (created if "
            "missing) for the results, caches and report"
        )
    if create:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise errors.ConfigError(f"--workdir={workdir}: cannot create {path} ({e})") from e
    return path


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs every experiment of `config.experiments` and writes the outputs under `workdir`.

    The whole config (experiments, enums, data roots, every checkpoint) is checked first
    (`vitjax.validate`), so a mistake fails before any work. Outputs: `config.json` (the config),
    `results.json` (every number with the config, seed, package versions, model weight hashes,
    warnings and the list of output files), `tables/<experiment>_<table>.csv`, `figures/*.png`,
    `report.md`, and the caches `cache/` (one JSON per finished experiment) and `features/` (the
    FeatureStore). Files that the previous run in `workdir` listed as its outputs and this run
    does not write are removed, so the folder matches its results.json; other files are never
    touched. Only process 0 writes them (every process writes its rows of `features/`); the
    others draw their figures in a scratch folder that is removed, and return once process 0 has
    written.

    Args:
      config: the run config (see configs/common.py).
      workdir: output folder, created if needed.

    Returns:
      The results dict also written to results.json.

    Raises:
      ConfigError: on any problem `vitjax.validate.check_config` finds, or a workdir that is a
        file (before any work).
    """
    normalize_lists(config)
    validate.check_config(config)
    writer = is_writer()
    workdir = prepare_workdir(workdir, create=writer)
    names = experiment_names(config)
    handles = load_models(config)
    store = FeatureStore(os.path.join(workdir, "features"))
    scratch = None if writer else tempfile.mkdtemp(prefix=f"vitjax-p{jax.process_index()}-")
    base_ctx = experiments.Context(
        handles, store, workdir, config.seed, config, mesh=device_mesh(), figure_dir=scratch
    )

    results: dict[str, Any] = {
        "config": experiments.to_jsonable(config.to_dict()),
        "seed": config.seed,
        "versions": package_versions(),
        "models": [
            dict(h.describe(), training_warnings=shipped.training_warnings(h.checkpoint))
            for h in handles
        ],
        "random_weights": any(h.random_weights for h in handles),
        "experiments": {},
        "inactive_config_fields": validate.inactive_fields(config),
    }
    for model in results["models"]:
        for warning in model["training_warnings"]:
            logging.warning("model %s: its training warned: %s", model["name"], warning)
    for field in results["inactive_config_fields"]:
        logging.info("config: %s", field)
    previous = previous_outputs(workdir) if writer else set()
    if writer:
        fileio.atomic_write_text(
            os.path.join(workdir, CONFIG_FILE), json.dumps(results["config"], indent=1) + "\n"
        )
    try:
        # Lines at every experiment boundary (not rate-limited): the meter only keeps the time.
        meter = progress.Progress(len(names), "experiments", interval_s=float("inf"))
        for i, name in enumerate(names, 1):
            logging.info("experiment %d/%d %s: starting (%s)", i, len(names), name, meter.timing())
            results["experiments"][name] = _run_one(name, config, handles, base_ctx, writer)
            meter.update(1)
            logging.info("experiment %d/%d %s: finished; %s", i, len(names), name, _timing(meter))
        if writer:
            results["outputs"] = sorted(outputs_of(results))
            report.write_results(workdir, results)
            remove_stale_outputs(workdir, previous, set(results["outputs"]))
        _barrier("vitjax-run-written")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return results


def _timing(meter: progress.Progress) -> str:
    """`meter.timing()`, without the ETA once every experiment has finished."""
    return meter.timing() if meter.done < meter.total else meter.timing().split(",")[0]


def outputs_of(results: dict[str, Any]) -> set[str]:
    """Workdir-relative paths of the files a run with these results wrote: results.json,
    config.json, report.md, one CSV per table and every figure (caches excluded)."""
    out = {RESULTS_FILE, CONFIG_FILE, report.REPORT_FILE}
    for name, entry in results.get("experiments", {}).items():
        out.update(report.csv_name(name, table) for table in entry.get("tables", {}))
        out.update(str(p) for p in entry.get("figures", {}).values())
    return {os.path.normpath(p) for p in out}


def previous_outputs(workdir: str) -> set[str]:
    """The outputs recorded by the previous run's results.json in `workdir` (empty if none).

    Its `outputs` list when present; for results.json files written before that list existed,
    the tables and figures its experiments name.
    """
    path = results_path(workdir)
    if not os.path.exists(path):
        return set()
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if "outputs" in old:
            return {os.path.normpath(str(p)) for p in old["outputs"]}
        return outputs_of(old)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        logging.warning("%s: unreadable (%s); no previous outputs are removed", path, e)
        return set()


def remove_stale_outputs(workdir: str, previous: set[str], current: set[str]) -> list[str]:
    """Removes the files of `previous` (workdir-relative) that are not in `current`.

    Only regular files inside `workdir`, outside its cache folders, are removed (a path that
    leaves the workdir, a link or a folder is left alone): the previous run listed them as its own
    outputs, so nothing the user put there is touched. Returns the removed paths.
    """
    root = os.path.realpath(workdir)
    removed = []
    for rel in sorted(previous - current):
        if os.path.isabs(rel) or rel.split(os.sep)[0] in (os.pardir, *_CACHE_DIRS):
            continue
        path = os.path.join(root, rel)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            continue
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        os.remove(path)
        removed.append(rel)
    if removed:
        logging.info("removed %d outputs of the previous run: %s", len(removed), removed)
    return removed


def _run_one(
    name: str,
    config: ml_collections.ConfigDict,
    handles: list[experiments.ModelHandle],
    base_ctx: experiments.Context,
    writer: bool,
) -> dict[str, Any]:
    """Runs experiment `name` (or reuses its cached result); its entry of results.json."""
    workdir = base_ctx.workdir
    key = cache_key(name, config, handles)
    cache_file = os.path.join(workdir, "cache", f"{name}-{key}.json")
    result, seconds = _load_cached(cache_file, workdir)
    # Every process must run the experiment (its collectives need all of them) or none.
    cached = _agree(result is not None)
    if not cached:
        logging.info("experiment %s: running (cache key %s)", name, key)
        ctx = base_ctx.for_experiment(name)
        cfg = config[name] if name in config else ml_collections.ConfigDict()
        start = time.monotonic()
        result = experiments.get(name)(ctx, cfg)
        seconds = time.monotonic() - start
        result = _relative_figures(result, workdir)
        warnings = list(result.warnings) + [w for w in ctx.warnings if w not in result.warnings]
        result = dataclasses.replace(result, warnings=warnings)
        # A result that skipped inputs which may appear later (e.g. another dataset's root not yet
        # on disk) is reported but not cached, so the next run picks those inputs up.
        if writer and not result.scalars.get(experiments.SKIPPED_INPUTS):
            fileio.atomic_write_text(
                cache_file,
                json.dumps({"result": result.to_dict(), "seconds": seconds}, indent=1),
            )
        logging.info("experiment %s: done in %.1f s", name, seconds)
    elif result is None:
        # Process 0 holds a cached result this process cannot read (workdir not shared).
        result, seconds = experiments.Result(), 0.0
    else:
        logging.info("experiment %s: reused cached result %s", name, cache_file)
        for warning in result.warnings:
            logging.warning("[%s] %s (cached result)", name, warning)
    entry = result.to_dict()
    entry.update({"cache_key": key, "cached": cached, "seconds": seconds})
    return entry


def _relative_figures(result: experiments.Result, workdir: str) -> experiments.Result:
    figures = {k: os.path.relpath(os.path.abspath(v), workdir) for k, v in result.figures.items()}
    return dataclasses.replace(result, figures=figures)


def _load_cached(path: str, workdir: str) -> tuple[experiments.Result | None, float]:
    """The cached (Result, seconds) at `path`; (None, 0) if absent, unreadable or missing a figure."""
    if not os.path.exists(path):
        return None, 0.0
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
        result = experiments.Result.from_dict(payload["result"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        logging.warning("ignoring unreadable result cache %s: %s", path, e)
        return None, 0.0
    if not all(os.path.exists(os.path.join(workdir, p)) for p in result.figures.values()):
        return None, 0.0
    return result, float(payload.get("seconds", 0.0))


def results_path(workdir: str) -> str:
    return os.path.join(workdir, RESULTS_FILE)


def load_results(workdir: str) -> dict[str, Any]:
    """Reads `<workdir>/results.json`."""
    path = results_path(workdir)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise errors.VitjaxError(f"{path}: cannot read results ({e})") from e


__all__ = [
    "run",
    "parse_models",
    "split_names",
    "normalize_lists",
    "expand_models_flag",
    "load_models",
    "cache_key",
    "load_results",
    "ModelEntry",
    "device_mesh",
    "is_writer",
]
