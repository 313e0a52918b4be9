"""CLIP in open_clip's state-dict layout (OpenAI weights converted by open_clip, OpenCLIP weights).

Image tower keys (`visual.` prefix): conv1.weight (no bias), class_embedding [D],
positional_embedding [1 + N, D], ln_pre, transformer.resblocks.{i}.{ln_1, attn.in_proj_weight,
attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_post, proj [D, E]. The text
tower and the logit scale are ignored (vitjax encodes images); conversion.json lists them.
"""

from collections.abc import Mapping

import numpy as np

from checkpoints_convert.layouts.base import (
    BlockNames,
    EncoderDims,
    Layout,
    Rule,
    block_rules,
    conv_kernel,
    one_rule,
    register_layout,
    square_side,
)

V = "visual."
OPEN_CLIP_BLOCK = BlockNames(
    prefix=V + "transformer.resblocks.{i}.",
    norm1="ln_1",
    qkv_weight="attn.in_proj_weight",
    qkv_bias="attn.in_proj_bias",
    proj="attn.out_proj",
    norm2="ln_2",
    fc1="mlp.c_fc",
    fc2="mlp.c_proj",
)
TEXT_TOWER = "CLIP text tower (vitjax encodes images only)"
CLIP_IGNORABLE = (
    (r"(transformer\.resblocks\..*|token_embedding\.weight|positional_embedding)", TEXT_TOWER),
    (r"(ln_final\..*|text_projection|text\..*)", TEXT_TOWER),
    (r"logit_scale|logit_bias", "contrastive logit scale/bias (image-text scoring only)"),
    (r"attn_mask", "text tower causal attention mask (buffer)"),
    (r"input_resolution|context_length|vocab_size", "OpenAI model metadata, not weights"),
)


def _cls(x: np.ndarray) -> np.ndarray:
    return x.reshape(1, 1, -1)


def _pos(x: np.ndarray) -> np.ndarray:
    return x[None]


def _rules(dims: EncoderDims) -> list[Rule]:
    d, p = dims.width, dims.patch_size
    rows, cols = dims.grid
    rules = [
        one_rule(("cls_token",), V + "class_embedding", (d,), _cls),
        one_rule(("patch_embed", "kernel"), V + "conv1.weight", (d, 3, p, p), conv_kernel),
        one_rule(("pos_embed",), V + "positional_embedding", (1 + rows * cols, d), _pos),
        one_rule(("norm_pre", "scale"), V + "ln_pre.weight", (d,)),
        one_rule(("norm_pre", "bias"), V + "ln_pre.bias", (d,)),
        one_rule(("norm", "scale"), V + "ln_post.weight", (d,)),
        one_rule(("norm", "bias"), V + "ln_post.bias", (d,)),
        one_rule(("proj",), V + "proj", (d, dims.proj_dim)),
    ]
    for i in range(dims.depth):
        rules.extend(block_rules(OPEN_CLIP_BLOCK, i, d, dims.mlp_dim, "block_", dims.mlp))
    return rules


def _infer(tensors: Mapping[str, np.ndarray]) -> dict:
    """Native grid from the [1 + N, D] position table; E from proj [D, E]."""
    out = {}
    pos = tensors.get(V + "positional_embedding")
    if pos is not None and pos.ndim == 2 and (side := square_side(pos.shape[0] - 1)):
        out["grid"] = (side, side)
    proj = tensors.get(V + "proj")
    if proj is not None and proj.ndim == 2:
        out["spec_fields"] = (("proj_dim", int(proj.shape[1])),)
    return out


LAYOUT = register_layout(
    Layout(
        name="open_clip",
        block=OPEN_CLIP_BLOCK,
        model_names=(V + "class_embedding", V + "conv1", V + "positional_embedding", V + "ln_post"),
        ignorable=CLIP_IGNORABLE,
        rules=_rules,
        strip_encoder_prefix=False,
        infer=_infer,
    )
)
