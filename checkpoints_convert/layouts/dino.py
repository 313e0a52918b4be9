"""DINO (facebookresearch/dino): timm-style `blocks.{i}.*` names, teacher/student wrappers."""

from checkpoints_convert.layouts.base import TIMM_BLOCK, Layout, register_layout

LAYOUT = register_layout(
    Layout(
        name="dino",
        block=TIMM_BLOCK,
        ignorable=(
            (r"head\..*", "DINO projection head"),
            (r"fc_norm\..*", "fine-tuning pooled-feature norm"),
        ),
    )
)
