"""Numbers reported in the paper, and the setting they were measured in.

Vanyan et al., "Analyzing Local Representations of Self-supervised Vision Transformers" (2024),
Tab. 2: few-shot patch classification on Cityscapes (4 images per city), mIoU of the 1-NN k-NN
classifier and of a linear probe, ViT-B backbones (DINOv2: ViT-B/14, the others ViT-B/16).
"MAE-200" is MAE with its 200 highest-variance feature dimensions removed. None = not reported.

A paper number stands beside a measured one only when the run repeats the paper's setting:
`paper_comparison` compares the run's protocol record (`run_protocol`) field by field with the
paper's (`TAB2_PROTOCOL`) and says which fields differ; the checkpoint must moreover be the
official file (its sha256, where the authors published one; otherwise the comparison says
"checkpoint not identified").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (family, size) -> {"knn": 1-NN mIoU, "linear": linear-probe mIoU}
CITYSCAPES_TAB2: dict[tuple[str, str], dict[str, float | None]] = {
    ("dino", "b"): {"knn": 0.345, "linear": 0.383},
    ("dinov2", "b"): {"knn": 0.496, "linear": 0.590},
    ("mae", "b"): {"knn": 0.058, "linear": 0.375},
    ("simmim", "b"): {"knn": 0.075, "linear": 0.156},
    ("torchvision", "b"): {"knn": 0.310, "linear": 0.33},
}

# MAE with the top-200 variance dimensions removed (k-NN only).
CITYSCAPES_MAE_REMOVED_200: dict[str, float | None] = {"knn": 0.295, "linear": None}

# Tab. 2 was measured with 4 train images per city.
TAB2_SHOTS = 4

# The paper's backbones are ViT-B/16, except DINOv2 (ViT-B/14).
PAPER_SIZE = "b"
PAPER_PATCH_SIZE: dict[str, int] = {"dinov2": 14}
DEFAULT_PATCH_SIZE = 16

# The official ViT-B file of each family and the sha256 its authors published (a prefix where
# only a prefix is published: torchvision puts the first 8 hex digits of the sha256 in the file
# name and torch.hub checks them). None: no published digest, so a run cannot prove that its
# checkpoint is that file.
OFFICIAL_FILES: dict[str, tuple[str, str | None]] = {
    "dino": ("dino_vitbase16_pretrain.pth", None),
    "dinov2": ("dinov2_vitb14_pretrain.pth", None),
    "mae": ("mae_pretrain_vit_base.pth", None),
    "simmim": ("simmim_pretrain__vit_base__img224__800ep.pth", None),
    "torchvision": ("vit_b_16-c867db91.pth", "c867db91"),
}

# The setting of Tab. 2 (the research code's protocol, see configs/common.py): one record per
# method; k-NN fields only for k-NN. Keys are the fields of `run_protocol`.
_TAB2_COMMON: dict[str, Any] = {
    "dataset": "cityscapes",
    "splits": "paper",  # the research code's image lists
    "train_per_group": TAB2_SHOTS,  # few-shot list: 4 images per train city
    "n_train_images": 72,  # 18 train cities x 4
    "n_eval_images": 30,  # 10 per val city (frankfurt, lindau, munster)
    "patch_label_rule": "centre",
    "score_level": "pixel",
    "miou_convention": "present",
    "layer": -1,  # last block, final LayerNorm
    "tiling": "256px tiles -> 224px",
    "resize_hw": (0, 0),
}
TAB2_PROTOCOL: dict[str, dict[str, Any]] = {
    "knn": {
        **_TAB2_COMMON,
        "knn_k": 10,
        "knn_rule": "1nn",
        "knn_metric": "dot",
        "knn_exclude_ignore": False,
    },
    "linear": dict(_TAB2_COMMON),
}
# "MAE-200": Tab. 2's k-NN setting with the 200 highest-variance dimensions removed.
MAE_REMOVED_200_PROTOCOL: dict[str, Any] = {**TAB2_PROTOCOL["knn"], "removed_dims": 200}

NOT_IDENTIFIED = "checkpoint not identified"


def is_paper_backbone(family: str, size: str, patch_size: int) -> bool:
    """Whether (family, size, patch) is the variant the paper reports (e.g. dino b 16)."""
    return (
        (family, size) in CITYSCAPES_TAB2
        and size == PAPER_SIZE
        and int(patch_size) == PAPER_PATCH_SIZE.get(family, DEFAULT_PATCH_SIZE)
    )


def cityscapes_tab2(family: str, size: str, method: str) -> float | None:
    """The paper's Tab. 2 mIoU for a backbone and method ('knn' or 'linear'), or None."""
    return CITYSCAPES_TAB2.get((family, size), {}).get(method)


def run_protocol(
    config: Any,
    *,
    train_per_group: int,
    n_train_images: int,
    n_eval_images: int,
    layer: int = -1,
) -> dict[str, Any]:
    """The protocol record of a run's segmentation scores, in `TAB2_PROTOCOL`'s fields.

    Args:
      config: the run config (reads `dataset`, `data`, `knn`).
      train_per_group: few-shot size of the scores (train images per city/class).
      n_train_images, n_eval_images: images the scores were really computed on.
      layer: block of the features (-1 = last).

    Returns:
      field -> value (JSON-able; tuples for pairs).
    """
    data, knn_cfg = config.data, config.knn
    return {
        "dataset": str(config.dataset),
        "splits": str(data.splits),
        "train_per_group": int(train_per_group),
        "n_train_images": int(n_train_images),
        "n_eval_images": int(n_eval_images),
        "patch_label_rule": str(data.patch_label_rule),
        "score_level": str(data.score_level),
        "miou_convention": str(data.miou_convention),
        "layer": int(layer),
        "tiling": f"{int(data.tile_size)}px tiles -> {int(data.tile_out)}px",
        "resize_hw": tuple(int(v) for v in data.resize_hw),
        "knn_k": int(knn_cfg.k),
        "knn_rule": str(knn_cfg.rule),
        "knn_metric": str(knn_cfg.metric),
        "knn_exclude_ignore": bool(knn_cfg.exclude_ignore),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "x".join(str(v) for v in value)
    return str(value)


def protocol_differences(run: Mapping[str, Any], paper: Mapping[str, Any]) -> list[str]:
    """The fields of the paper's protocol record that the run does not repeat.

    Args:
      run: the run's record (`run_protocol`).
      paper: the paper's record (e.g. `TAB2_PROTOCOL["knn"]`).

    Returns:
      One "field run != paper" string per differing field ("field missing != paper" when the run
      does not record it), in the paper record's order; empty when every field matches.
    """
    out = []
    for field, want in paper.items():
        have = run.get(field, "missing")
        if isinstance(want, tuple | list) and isinstance(have, tuple | list):
            same = tuple(have) == tuple(want)
        else:
            same = have == want and type(have) is type(want)
        if not same:
            out.append(f"{field} {_fmt(have)} != {_fmt(want)}")
    return out


def checkpoint_differences(model: Mapping[str, Any]) -> tuple[list[str], bool]:
    """Whether a model (`ModelHandle.describe()`) is the paper's backbone and official file.

    Returns:
      (differences, identified): the backbone/weights fields that rule a comparison out, and
      whether the checkpoint's sha256 matches the published digest of the official file (False
      when none is published or the weights are random).
    """
    family, size, patch = model.get("family"), model.get("size"), model.get("patch_size")
    out = []
    if model.get("random_weights"):
        out.append("weights random != official checkpoint")
    if not is_paper_backbone(str(family), str(size), int(patch or 0)):
        paper_patch = PAPER_PATCH_SIZE.get(str(family), DEFAULT_PATCH_SIZE)
        out.append(f"backbone {family} {size}/{patch} != {family} {PAPER_SIZE}/{paper_patch}")
    published = OFFICIAL_FILES.get(str(family), ("", None))[1]
    digest = str(model.get("weights_hash") or "").lower()
    identified = False
    if published and not model.get("random_weights"):
        if digest.startswith(published):
            identified = True
        else:
            out.append(f"checkpoint sha256 {digest[:8] or 'unknown'} != official {published}")
    return out, identified


def paper_comparison(
    model: Mapping[str, Any], protocol: Mapping[str, Any], method: str, paper: Mapping[str, Any]
) -> str:
    """One line saying whether a score may stand beside the paper's, and if not, why.

    Args:
      model: `ModelHandle.describe()` of the scored model.
      protocol: the run's protocol record (`run_protocol`).
      method: "knn" or "linear".
      paper: the paper's protocol record for `method`.

    Returns:
      "comparable", "comparable protocol; checkpoint not identified (...)" or
      "not comparable: <field> <run> != <paper>; ...".
    """
    differences, identified = checkpoint_differences(model)
    differences = protocol_differences(protocol, paper) + differences
    if differences:
        return "not comparable: " + "; ".join(differences)
    if identified:
        return "comparable"
    name = OFFICIAL_FILES.get(str(model.get("family")), ("the official file", None))[0]
    return f"comparable protocol; {NOT_IDENTIFIED} (no published sha256 of {name})"


def is_comparable(comparison: str) -> bool:
    """Whether a `paper_comparison` line allows showing the paper's number."""
    return not comparison.startswith("not comparable")
