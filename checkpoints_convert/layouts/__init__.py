"""Official checkpoint layouts, one module per family, registered against the family names.

`base` holds what the layouts share (rules, block names, unwrapping and canonical names); each
`<layout>.py` registers one `Layout`, the one its family record (vitjax/models/families.py) names.
Adding a family's layout = one module here plus its import below.
"""

# Every layout module registers itself on import.
from checkpoints_convert.layouts import (  # noqa: F401
    clip_hf,
    dino,
    dinov2,
    dinov2_reg,
    dinov3,
    ibot,
    mae,
    open_clip,
    scalemae,
    siglip,
    simmim,
    timm_vit,
    torchvision,
)
from checkpoints_convert.layouts.base import (
    BRANCHES,
    MAE_DECODER_BLOCK,
    MAE_DECODER_TOP_KEYS,
    TIMM_BLOCK,
    WRAPPER_KEYS,
    BlockNames,
    DecoderDims,
    EncoderDims,
    Layout,
    Rule,
    SelectedState,
    block_names,
    canonical_name,
    canonicalize,
    convertible_families,
    decoder_rules,
    encoder_rules,
    expected_relative_position_index,
    get_layout,
    has_mae_decoder,
    ignorable_reason,
    layout_names,
    model_names,
    register_layout,
    select_state_dict,
    square_side,
)

# The convertible families at import, in registry order (the CLI's --family choices).
FAMILIES = convertible_families()

__all__ = [
    "BRANCHES",
    "FAMILIES",
    "MAE_DECODER_BLOCK",
    "MAE_DECODER_TOP_KEYS",
    "TIMM_BLOCK",
    "WRAPPER_KEYS",
    "BlockNames",
    "DecoderDims",
    "EncoderDims",
    "Layout",
    "Rule",
    "SelectedState",
    "block_names",
    "canonical_name",
    "canonicalize",
    "convertible_families",
    "decoder_rules",
    "encoder_rules",
    "expected_relative_position_index",
    "get_layout",
    "has_mae_decoder",
    "ignorable_reason",
    "layout_names",
    "model_names",
    "register_layout",
    "select_state_dict",
    "square_side",
]
