"""torchvision.models.vit_*: `encoder.layers.encoder_layer_{i}.*`, nn.MultiheadAttention."""

import re

from checkpoints_convert.layouts.base import BlockNames, Layout, register_layout

TORCHVISION_BLOCK = BlockNames(
    prefix="encoder.layers.encoder_layer_{i}.",
    norm1="ln_1",
    qkv_weight="self_attention.in_proj_weight",
    qkv_bias="self_attention.in_proj_bias",
    proj="self_attention.out_proj",
    norm2="ln_2",
    fc1="mlp.0",
    fc2="mlp.3",
)
_TORCHVISION_OLD_MLP = re.compile(
    r"^(encoder\.layers\.encoder_layer_\d+\.mlp\.)linear_([12])\.(.*)$"
)


def _rename(name: str) -> str:
    if match := _TORCHVISION_OLD_MLP.match(name):
        # The released vit_b_16 file predates torchvision PR #6053 (mlp.linear_1 -> mlp.0).
        name = f"{match.group(1)}{'0' if match.group(2) == '1' else '3'}.{match.group(3)}"
    return name


LAYOUT = register_layout(
    Layout(
        name="torchvision",
        block=TORCHVISION_BLOCK,
        model_names=("class_token", "conv_proj", "encoder.pos_embedding", "encoder.ln"),
        ignorable=((r"heads\..*", "ImageNet classification head"),),
        rename=_rename,
        # torchvision's own names start with `encoder.`.
        strip_encoder_prefix=False,
    )
)
