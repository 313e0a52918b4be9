"""Checkpoints shipped inside the package (`vitjax/assets/pretrained/<name>/`).

A `config.models` entry names one as `family:size:patch:pretrained:<name>`, e.g.
`mae:ti:16:pretrained:demo_mae`; `resolve` turns that checkpoint field into the directory.
Each directory is a `models.save` checkpoint plus `train_info.json` (config, seed, command,
images/s) and `loss_curve.csv` from the run that made it.
"""

from __future__ import annotations

import json
import os

from vitjax import errors

PREFIX = "pretrained:"
INFO_FILE = "train_info.json"  # written by vitjax.pretrain.train beside the checkpoint
ASSETS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "pretrained"
)


def names() -> list[str]:
    """Names of the shipped checkpoints (sorted)."""
    if not os.path.isdir(ASSETS_DIR):
        return []
    return sorted(
        d
        for d in os.listdir(ASSETS_DIR)
        if os.path.isfile(os.path.join(ASSETS_DIR, d, "spec.json"))
    )


def resolve(checkpoint: str) -> str:
    """`pretrained:<name>` -> the shipped directory; any other path is returned unchanged.

    Raises:
      CheckpointError: `<name>` is not shipped (the message lists the shipped names).
    """
    if not checkpoint.startswith(PREFIX):
        return checkpoint
    name = checkpoint[len(PREFIX) :]
    if name not in names():
        raise errors.CheckpointError(
            f"config.models: {checkpoint!r}: no shipped checkpoint {name!r}; shipped: {names()} "
            f"(in {ASSETS_DIR}); or give a checkpoint directory"
        )
    return os.path.join(ASSETS_DIR, name)


def training_warnings(checkpoint_dir: str | None) -> list[str]:
    """The warnings its training run recorded in `<checkpoint_dir>/train_info.json` (e.g. a
    collapsed DINO teacher); [] for random weights or a checkpoint not trained by vitjax.

    A file that cannot be read is reported as a warning of its own rather than failing the run.
    """
    if checkpoint_dir is None:
        return []
    path = os.path.join(resolve(checkpoint_dir), INFO_FILE)
    if not os.path.isfile(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            warnings = json.load(f).get("warnings", [])
    except (OSError, ValueError, AttributeError) as e:
        return [f"{path}: unreadable ({e}); its training warnings are unknown"]
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return [f"{path}: 'warnings' is not a list of strings; its training warnings are unknown"]
    return warnings
