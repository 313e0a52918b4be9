r"""Entry point: runs the experiments of a config and writes the report.

  python -m vitjax.main --config=configs/demo.py --workdir=runs/demo
  python -m vitjax.main --config=configs/fair1m.py        # workdir defaults to runs/fair1m
  python -m vitjax.main --config=configs/cityscapes.py:accelerator --workdir=runs/cs \
      --config.data.root=/data/cityscapes --config.models=dino:b:16:ckpts/dino_vitb16

Any config field can be overridden with `--config.<field>=<value>`; the config is locked, so a
misspelt field is an error. See `vitjax/run.py` for what is written to the workdir.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vitjax import run

# The demo config of a source checkout (configs/ beside the vitjax package).
_DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "demo.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEMO_CONFIG, "Path to a config file (configs/*.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for results, caches and the report (default: runs/<config name>)."
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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if os.environ.get("VITJAX_DISTRIBUTED", "") == "1":
        # Multi-host (TPU VM pods, GPU clusters): one process per host, all running this command.
        import jax

        jax.distributed.initialize()
    workdir = _WORKDIR.value or default_workdir(
        config_flags.get_config_filename(flags.FLAGS["config"])
    )
    logging.info("config:\n%s", _CONFIG.value)
    results = run.run(_CONFIG.value, workdir)
    logging.info(
        "wrote %s (%d experiments)", run.results_path(workdir), len(results["experiments"])
    )
    print(f"report: {os.path.join(workdir, 'report.md')}")


_put_config_root_on_path(sys.argv)

if __name__ == "__main__":
    app.run(main)
