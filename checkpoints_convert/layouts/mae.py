"""MAE (facebookresearch/mae): timm-style encoder names, optionally with the pixel decoder."""

from checkpoints_convert.layouts.base import TIMM_BLOCK, Layout, register_layout

LAYOUT = register_layout(
    Layout(
        name="mae",
        block=TIMM_BLOCK,
        ignorable=((r"head\..*", "classification head"),),
        has_decoder=True,
    )
)
