"""Numbers reported in the paper, shown beside the measured ones when real checkpoints are used.

Vanyan et al., "Analyzing Local Representations of Self-supervised Vision Transformers" (2024),
Tab. 2: few-shot patch classification on Cityscapes (4 images per city), mIoU of the 1-NN k-NN
classifier and of a linear probe, ViT-B backbones (DINOv2: ViT-B/14, the others ViT-B/16).
"MAE-200" is MAE with its 200 highest-variance feature dimensions removed. None = not reported.
"""

from __future__ import annotations

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
