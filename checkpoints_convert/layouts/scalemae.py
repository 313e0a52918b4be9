"""Scale-MAE: timm-style names; the stored sin-cos table is recomputed from the GSD, not read."""

from checkpoints_convert.layouts.base import (
    TIMM_BLOCK,
    TIMM_MODEL_NAMES,
    Layout,
    register_layout,
)

LAYOUT = register_layout(
    Layout(
        name="scalemae",
        block=TIMM_BLOCK,
        # Scale-MAE recomputes its position encoding; the stored copy is unused.
        model_names=(*TIMM_MODEL_NAMES[:2], None, TIMM_MODEL_NAMES[3]),
        ignorable=(
            (
                r"pos_embed",
                "fixed sin-cos position embedding (Scale-MAE recomputes it from the GSD)",
            ),
            (r"mask_token(_decoder)?", "Scale-MAE mask tokens"),
            (r"decoder(_|\.).*", "Scale-MAE decoder"),
            (r"(fpn|fcn|fcn_high|fcn_low)\..*", "Scale-MAE FPN/FCN reconstruction heads"),
            (r"pos_emb_projection\..*", "Scale-MAE decoder position projection"),
        ),
    )
)
