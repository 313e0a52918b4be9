r"""Entry point: runs the experiments of a config and writes the report.

  python -m vitjax.main --config=configs/demo.py --workdir=runs/demo
  python -m vitjax.main --config=configs/fair1m.py        # workdir defaults to runs/fair1m
  python -m vitjax.main --config=configs/cityscapes.py:accelerator --workdir=runs/cs \
      --config.data.root=/data/cityscapes --config.models=dino:b:16:ckpts/dino_vitb16

Any config field can be overridden with `--config.<field>=<value>`; the config is locked, so a
misspelt field is an error. The whole config (enums, data roots, checkpoints) is checked before
any work. See `vitjax/run.py` for what is written to the workdir (the config goes to
`<workdir>/config.json`). Errors print one line; `--verbose` adds tracebacks and debug logs.
"""

import ast
import difflib
import glob
import importlib.util
import os
import sys

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from vitjax import errors, run

# The demo config of a source checkout (configs/ beside the vitjax package).
_DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "demo.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEMO_CONFIG, "Path to a config file (configs/*.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for results, caches and the report (default: runs/<config name>)."
)
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Debug logs (full extraction plans, the config) and tracebacks on errors."
)


def _config_arg(argv: list[str]) -> str:
    """The `--config` value on the command line (`path[:arg]`), or the demo config."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return _DEMO_CONFIG


def _put_config_root_on_path(argv: list[str]) -> None:
    # Configs import their shared pieces as `from configs import common`; make that work from any
    # working directory by putting the folder that holds `configs/` on the import path.
    root = os.path.dirname(os.path.dirname(os.path.abspath(_config_arg(argv).split(":", 1)[0])))
    if root not in sys.path:
        sys.path.insert(0, root)


def default_workdir(config_arg: str) -> str:
    """`runs/<config file stem>[_<arg>]` for a `--config` value such as `configs/demo.py:test`."""
    path, _, arg = config_arg.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0]
    suffix = "_" + "".join(ch if ch.isalnum() else "_" for ch in arg) if arg else ""
    return os.path.join("runs", stem + suffix)


def config_listing(config_dir: str) -> str:
    """One line per runnable config of `config_dir` (`configs/<name>.py: <docstring line>`)."""
    lines = []
    for path in sorted(glob.glob(os.path.join(config_dir, "*.py"))):
        name = os.path.basename(path)
        if name.startswith("_") or name == "common.py":
            continue
        try:
            with open(path, encoding="utf-8") as f:
                doc = ast.get_docstring(ast.parse(f.read())) or ""
        except (OSError, SyntaxError, ValueError):
            doc = ""
        lines.append(f"  configs/{name}: {doc.strip().splitlines()[0] if doc.strip() else ''}")
    return "\n".join(lines)


def usage_text(config_dir: str) -> str:
    """The module docstring plus the available configs and the checkpoint conversion step."""
    listing = config_listing(config_dir) or "  (no configs/ folder beside the vitjax package)"
    return (
        f"{__doc__}\nConfigs (`--config=configs/<name>.py[:arg]`):\n{listing}\n\n"
        "Pretrained weights are converted once from the official PyTorch files, e.g.\n"
        "  python -m checkpoints_convert --family=dino --input=dino_vitbase16_pretrain.pth "
        "--output=checkpoints/dino_vitb16\n"
        "(`python -m checkpoints_convert --help` lists the families); `none` as the checkpoint "
        "of a `config.models` entry means random weights.\n"
    )


def _load_config(config_arg: str) -> ml_collections.ConfigDict | None:
    """The config a `--config` value names, loaded as config_flags does; None if it fails."""
    path, _, arg = config_arg.partition(":")
    try:
        spec = importlib.util.spec_from_file_location("_vitjax_config_check", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config(arg) if arg else module.get_config()
    except Exception:  # noqa: BLE001 -- the caller reports the original parsing error instead
        return None


def override_problem(config: ml_collections.ConfigDict, field: str) -> str | None:
    """The one-line error for `--config.<field>` when `field` names no config field, else None.

    The line names the field, the valid names of the section it points into and the closest one.
    """
    node, section = config, "config"
    for part in field.split("."):
        if isinstance(node, ml_collections.ConfigDict | ml_collections.FrozenConfigDict):
            if part in node:
                node, section = node[part], f"{section}.{part}"
                continue
            names = sorted(node.keys())
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.5)
            hint = f" (did you mean --{section}.{close[0]}?)" if close else ""
            return (
                f"--config.{field}: {section} has no field {part!r}{hint}; valid names in "
                f"{section}: {', '.join(names)}"
            )
        return f"--config.{field}: {section} is a value ({node!r}), not a section with fields"
    return None


def _overrides(argv: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0][len("config.") :] for a in argv if a.startswith("--config.")]


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors for a bad config instead of a traceback.

    A misspelt `--config.<field>` fails inside ml_collections with a long traceback and no
    suggestion; here it becomes one line naming the field, the section's names and the closest
    one. Any other error while loading the config file prints one line too (`--verbose`: the
    traceback).
    """
    # Here, not at import: importing vitjax.main must not change the import path.
    _put_config_root_on_path(argv)
    argv = run.expand_models_flag(argv)  # the short form `--config.models=a:b:16:x,c:d:14:y`
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        if "--verbose" in argv:
            raise
        lines = [line for line in str(e).splitlines() if line.strip()]
        if "Traceback" in str(e):
            # A config file that raised while loading: absl would print its whole traceback.
            print(f"error: --config={_config_arg(argv)}: {lines[-1].strip()}", file=sys.stderr)
        else:
            print(
                f"error: {e}\nPass --helpshort or --helpfull to see help on flags.", file=sys.stderr
            )
        sys.exit(2)
    except Exception as e:
        if "--verbose" in argv:
            raise
        config = _load_config(_config_arg(argv))
        problems = [override_problem(config, f) for f in _overrides(argv)] if config else []
        message = next((p for p in problems if p), None)
        if message is None:
            message = f"--config={_config_arg(argv)}: {type(e).__name__}: {e}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _VERBOSE.value:
        logging.set_verbosity(logging.DEBUG)
        _run(argv)
        return
    try:
        _run(argv)
    except errors.VitjaxError as e:
        # The user's mistake, not vitjax's: one message, no traceback (--verbose shows it).
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def _run(argv):
    del argv
    if os.environ.get("VITJAX_DISTRIBUTED", "") == "1":
        # Multi-host (TPU VM pods, GPU clusters): one process per host, all running this command.
        jax.distributed.initialize()
    workdir = _WORKDIR.value or default_workdir(
        config_flags.get_config_filename(flags.FLAGS["config"])
    )
    logging.debug("config:\n%s", _CONFIG.value)
    results = run.run(_CONFIG.value, workdir)
    logging.info("config: %s", os.path.join(workdir, run.CONFIG_FILE))
    logging.info(
        "wrote %s (%d experiments)", run.results_path(workdir), len(results["experiments"])
    )
    print(f"report: {os.path.join(workdir, 'report.md')}")


if __name__ == "__main__":
    # absl's --help prints the main module's docstring: add the configs and the conversion step.
    __doc__ = usage_text(os.path.dirname(_DEMO_CONFIG))
    app.run(main, flags_parser=parse_flags)
