"""DINOv2 (facebookresearch/dinov2): timm-style names plus LayerScale `ls1/ls2.gamma`."""

from checkpoints_convert.layouts.base import BlockNames, Layout, register_layout

DINOV2_BLOCK = BlockNames(prefix="blocks.{i}.", ls1="ls1.gamma", ls2="ls2.gamma")
DINOV2_IGNORABLE = (
    (r"mask_token", "DINOv2 mask token"),
    (r"(dino_head|ibot_head|head)\..*", "DINOv2 training heads"),
)

LAYOUT = register_layout(Layout(name="dinov2", block=DINOV2_BLOCK, ignorable=DINOV2_IGNORABLE))
