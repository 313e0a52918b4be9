r"""Command line of the pretraining loop.

  python -m vitjax.pretrain --config=configs/pretrain_mae.py --workdir=runs/pretrain_mae
  python -m vitjax.pretrain --config=configs/pretrain_dino.py --workdir=runs/pretrain_dino \
      --config.train.steps=2000 --config.export_dir=/ckpt/my_dino

Re-running the same command after an interruption resumes from the last checkpoint in workdir.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from vitjax import errors
from vitjax.pretrain.train import train as run_training


def _define_flags() -> tuple:
    # Defined when run as a program, not on import: importing this module beside vitjax.main (a
    # test that imports every module, or a notebook) must not define `--config` twice.
    config = config_flags.DEFINE_config_file(
        "config",
        None,
        "Path to a pretraining config (configs/pretrain_*.py[:arg]).",
        lock_config=True,
    )
    workdir = flags.DEFINE_string(
        "workdir", None, "Folder of the resumable state and outputs (default: runs/<config name>)."
    )
    return config, workdir


def _put_config_root_on_path(argv: list[str]) -> None:
    # Configs import `from configs import ...`: put the folder holding configs/ on the path.
    for a in argv:
        if a.startswith("--config="):
            path = a.split("=", 1)[1].split(":", 1)[0]
            root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
            if root not in sys.path:
                sys.path.insert(0, root)


def main(argv, config_flag, workdir_flag):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if config_flag.value is None:
        raise app.UsageError("--config is required, e.g. --config=configs/pretrain_mae.py")
    config_arg = config_flags.get_config_filename(flags.FLAGS["config"])
    stem = os.path.splitext(os.path.basename(config_arg))[0]
    workdir = workdir_flag.value or os.path.join("runs", stem)
    try:
        info = run_training(config_flag.value, workdir)
    except errors.VitjaxError as e:
        # The user's mistake (a config value, a folder in the way): one line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"model: {info['export_dir']}")


if __name__ == "__main__":
    _put_config_root_on_path(sys.argv)
    _config_flag, _workdir_flag = _define_flags()
    app.run(lambda argv: main(argv, _config_flag, _workdir_flag))
