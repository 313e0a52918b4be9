r"""Entry point: runs the experiments of a config and writes the report.

  python -m vitjax.main --workdir=/tmp/vitjax_demo        # the demo (configs/demo.py) by default
  python -m vitjax.main --config=configs/demo.py --workdir=/tmp/vitjax_demo
  python -m vitjax.main --config=configs/cityscapes.py:accelerator --workdir=runs/cs \
      --config.data.root=/data/cityscapes --config.models=dino:b:16:ckpts/dino_vitb16

Any config field can be overridden with `--config.<field>=<value>`; the config is locked, so a
misspelt field is an error. See `vitjax/run.py` for what is written to the workdir.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from vitjax import run

# The demo config of a source checkout (configs/ beside the vitjax package).
_DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "demo.py")

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEMO_CONFIG, "Path to a config file (configs/*.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for results, caches and the report.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required (the folder for results and the report)")
    logging.info("config:\n%s", _CONFIG.value)
    results = run.run(_CONFIG.value, _WORKDIR.value)
    logging.info(
        "wrote %s (%d experiments)", run.results_path(_WORKDIR.value), len(results["experiments"])
    )


if __name__ == "__main__":
    app.run(main)
