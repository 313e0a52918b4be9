"""iBOT (bytedance/ibot): timm-style names; the student carries a mask embedding."""

from checkpoints_convert.layouts.base import TIMM_BLOCK, Layout, register_layout

LAYOUT = register_layout(
    Layout(
        name="ibot",
        block=TIMM_BLOCK,
        ignorable=(
            (r"head\..*", "iBOT projection head"),
            (r"masked_embed", "iBOT student mask embedding"),
            (r"fc_norm\..*", "fine-tuning pooled-feature norm"),
        ),
    )
)
