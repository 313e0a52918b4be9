"""CLIP in the transformers layout (`CLIPVisionModel`, `CLIPVisionModelWithProjection`, `CLIPModel`).

Keys: vision_model.embeddings.{class_embedding [D], patch_embedding.weight (no bias),
position_embedding.weight [1 + N, D]}, vision_model.pre_layrnorm [sic],
vision_model.encoder.layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1,
mlp.fc2}, vision_model.post_layernorm, and optionally visual_projection.weight [E, D] (without it
the global output is post_layernorm(CLS), transformers' pooler_output). The text model, its
projection and the logit scale are ignored.
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
    linear_kernel,
    one_rule,
    register_layout,
    square_side,
)

E = "vision_model.embeddings."
HF_CLIP_BLOCK = BlockNames(
    prefix="vision_model.encoder.layers.{i}.",
    norm1="layer_norm1",
    qkv_weight="self_attn.qkv.weight",  # not a file key: replaced by the q/k/v rules below
    proj="self_attn.out_proj",
    norm2="layer_norm2",
    fc1="mlp.fc1",
    fc2="mlp.fc2",
)
TEXT_TOWER = "CLIP text tower (vitjax encodes images only)"


def _qkv_kernel(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Separate (out, in) projections -> one Flax (in, 3 * out) kernel, columns [q | k | v].
    return linear_kernel(np.concatenate([q, k, v], axis=0))


def _qkv_bias(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.concatenate([q, k, v])


def _block(i: int, dims: EncoderDims) -> list[Rule]:
    d = dims.width
    rules = [
        r
        for r in block_rules(HF_CLIP_BLOCK, i, d, dims.mlp_dim, "block_", dims.mlp)
        if r.target[1:3] != ("attn", "qkv")
    ]
    p = HF_CLIP_BLOCK.prefix.format(i=i) + "self_attn."
    t = f"block_{i}"
    names = tuple(f"{p}{x}_proj" for x in "qkv")
    rules.append(
        Rule(
            (t, "attn", "qkv", "kernel"),
            tuple(f"{n}.weight" for n in names),
            ((d, d),) * 3,
            _qkv_kernel,
        )
    )
    rules.append(
        Rule((t, "attn", "qkv", "bias"), tuple(f"{n}.bias" for n in names), ((d,),) * 3, _qkv_bias)
    )
    return rules


def _rules(dims: EncoderDims) -> list[Rule]:
    d, p = dims.width, dims.patch_size
    rows, cols = dims.grid
    rules = [
        one_rule(("cls_token",), E + "class_embedding", (d,), lambda x: x.reshape(1, 1, -1)),
        one_rule(
            ("patch_embed", "kernel"), E + "patch_embedding.weight", (d, 3, p, p), conv_kernel
        ),
        one_rule(
            ("pos_embed",), E + "position_embedding.weight", (1 + rows * cols, d), lambda x: x[None]
        ),
        one_rule(("norm_pre", "scale"), "vision_model.pre_layrnorm.weight", (d,)),
        one_rule(("norm_pre", "bias"), "vision_model.pre_layrnorm.bias", (d,)),
        one_rule(("norm", "scale"), "vision_model.post_layernorm.weight", (d,)),
        one_rule(("norm", "bias"), "vision_model.post_layernorm.bias", (d,)),
    ]
    if dims.proj_dim:
        rules.append(
            one_rule(("proj",), "visual_projection.weight", (dims.proj_dim, d), linear_kernel)
        )
    for i in range(dims.depth):
        rules.extend(_block(i, dims))
    return rules


def _infer(tensors: Mapping[str, np.ndarray]) -> dict:
    """Native grid from the position table; E from visual_projection (absent: no projection)."""
    out = {}
    pos = tensors.get(E + "position_embedding.weight")
    if pos is not None and pos.ndim == 2 and (side := square_side(pos.shape[0] - 1)):
        out["grid"] = (side, side)
    proj = tensors.get("visual_projection.weight")
    if proj is None:
        out["spec_fields"] = (("proj_dim", 0), ("global_pool", "cls"))
    elif proj.ndim == 2:
        out["spec_fields"] = (("proj_dim", int(proj.shape[0])),)
    return out


LAYOUT = register_layout(
    Layout(
        name="clip_hf",
        block=HF_CLIP_BLOCK,
        model_names=(
            E + "class_embedding",
            E + "patch_embedding",
            E + "position_embedding.weight",
            "vision_model.post_layernorm",
        ),
        ignorable=(
            (r"text_model\..*|text_projection\.weight", TEXT_TOWER),
            (r"logit_scale", "contrastive logit scale (image-text scoring only)"),
            (r"vision_model\.embeddings\.position_ids", "position id buffer (0..N, recomputed)"),
        ),
        rules=_rules,
        strip_encoder_prefix=False,
        infer=_infer,
    )
)
