"""SigLIP / SigLIP 2 image towers in their four official layouts.

* big_vision `.npz` (read with numpy, `params/` stripped): `img/embedding/{kernel [P,P,3,D],bias}`,
  `img/pos_embedding [1,N,D]`, `img/Transformer/encoderblock_{i}/{LayerNorm_0,
  MultiHeadDotProductAttention_0/{query,key,value} [D,H,hd] + out [H,hd,D], LayerNorm_1,
  MlpBlock_0/Dense_{0,1}}`, `img/Transformer/encoder_norm`, `img/MAPHead_0/{probe,
  MultiHeadDotProductAttention_0,LayerNorm_0,MlpBlock_0}`. Text tower `txt/`, `t`, `b` ignored.
  Position table resampled like big_vision's `resample_posemb` (scipy zoom, order 1).
* HF `SiglipVisionModel` / `SiglipModel` safetensors (`vision_model.` stripped): `embeddings.
  {patch_embedding (conv), position_embedding [N,D]}`, `encoder.layers.{i}.{layer_norm1,
  self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1/fc2}`, `post_layernorm`, `head.{probe,
  attention.in_proj_*, attention.out_proj, layernorm, mlp}`. Resampling: HF's bicubic.
* HF `Siglip2VisionModel` (NaFlex): as above with a Linear patch embedding [D, P*P*3] over patches
  flattened as (row, col, channel); the table resized per grid bilinearly with antialias.
* timm `vit_*_siglip_*`: `pos_embed [1,N,D]`, `patch_embed.proj`, `blocks.{i}.*`, `norm`,
  `attn_pool.{latent,q,kv,proj,norm,mlp}`. Resampling: timm's bicubic with antialias; MLP: timm's
  SigLIP 1 definitions' exact GELU (its SigLIP 2 definitions, with `act_layer='gelu_tanh'`, are
  the big_vision/HF numerics: convert their HF or .npz files instead).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from checkpoints_convert.layouts.base import (
    TIMM_BLOCK,
    EncoderDims,
    Layout,
    Rule,
    one_rule,
    register_layout,
)
from vitjax.models import posembed

FLAVOURS = ("big_vision", "hf", "hf_naflex", "timm")
# The position resampling rule of each flavour's own code.
POS_INTERP = {
    "big_vision": posembed.POS_INTERP_BILINEAR_ZOOM,
    "hf": posembed.POS_INTERP_SIZE,
    "hf_naflex": posembed.POS_INTERP_BILINEAR_ANTIALIAS,
    "timm": posembed.POS_INTERP_SIZE_ANTIALIAS,
}
_HF_PREFIXES = ("embeddings.", "encoder.layers.", "post_layernorm.", "head.")
_TIMM_PREFIXES = ("blocks.", "attn_pool.", "patch_embed.", "pos_embed", "norm.")
_HF_PATCH = "embeddings.patch_embedding.weight"


def _linear(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


def _conv(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _fused_kernel(*weights: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(weights, axis=0).T)


def _concat(*arrays: np.ndarray) -> np.ndarray:
    return np.concatenate(arrays)


def _dense_general_in(*kernels: np.ndarray) -> np.ndarray:
    # Flax DenseGeneral [D, H, hd] kernels -> one Dense kernel [D, n * H * hd], heads contiguous.
    return np.concatenate([k.reshape(k.shape[0], -1) for k in kernels], axis=1)


def _dense_general_bias(*biases: np.ndarray) -> np.ndarray:
    return np.concatenate([b.reshape(-1) for b in biases])


def _dense_general_out(kernel: np.ndarray) -> np.ndarray:
    # [H, hd, D] -> [H * hd, D].
    return kernel.reshape(-1, kernel.shape[-1])


def _table(w: np.ndarray) -> np.ndarray:
    # HF nn.Embedding [N, D] -> [1, N, D].
    return w[None]


def flavour(keys) -> str:
    """Which official layout the canonical keys follow (the one most keys belong to)."""
    keys = list(keys)
    counts = {
        "big_vision": sum(k.startswith("img/") for k in keys),
        "hf": sum(k.startswith(_HF_PREFIXES) for k in keys),
        "timm": sum(k.startswith(_TIMM_PREFIXES) for k in keys),
    }
    best = max(counts, key=counts.get)
    return best if counts[best] else "big_vision"


def _flavour(tensors: Mapping[str, np.ndarray]) -> str:
    found = flavour(tensors)
    if found == "hf" and getattr(tensors.get(_HF_PATCH), "ndim", 4) == 2:
        return "hf_naflex"
    return found


def _norm(target: tuple[str, ...], scale: str, bias: str, d: int) -> list[Rule]:
    return [one_rule((*target, "scale"), scale, (d,)), one_rule((*target, "bias"), bias, (d,))]


def _torch_norm(target: tuple[str, ...], prefix: str, d: int) -> list[Rule]:
    return _norm(target, f"{prefix}.weight", f"{prefix}.bias", d)


def _torch_dense(target: tuple[str, ...], prefix: str, out: int, inp: int) -> list[Rule]:
    return [
        one_rule((*target, "kernel"), f"{prefix}.weight", (out, inp), _linear),
        one_rule((*target, "bias"), f"{prefix}.bias", (out,)),
    ]


def _flax_dense(target: tuple[str, ...], prefix: str, inp: int, out: int) -> list[Rule]:
    return [
        one_rule((*target, "kernel"), f"{prefix}/kernel", (inp, out)),
        one_rule((*target, "bias"), f"{prefix}/bias", (out,)),
    ]


def _big_vision_rules(dims: EncoderDims) -> list[Rule]:
    d, m, p, h = dims.width, dims.mlp_dim, dims.patch_size, dims.num_heads
    hd = d // h
    rows, cols = dims.grid

    def attention(target: tuple[str, ...], prefix: str, q_target: str, kv: bool) -> list[Rule]:
        names = [f"{prefix}/{n}" for n in ("query", "key", "value")]
        kernels = tuple(f"{n}/kernel" for n in names)
        biases = tuple(f"{n}/bias" for n in names)
        rules = [
            Rule(
                (*target, "proj", "kernel"),
                (f"{prefix}/out/kernel",),
                ((h, hd, d),),
                _dense_general_out,
            ),
            one_rule((*target, "proj", "bias"), f"{prefix}/out/bias", (d,)),
        ]
        groups = [(q_target, slice(0, 1)), ("kv", slice(1, 3))] if kv else [("qkv", slice(0, 3))]
        for name, part in groups:
            n = part.stop - part.start
            rules += [
                Rule(
                    (*target, name, "kernel"), kernels[part], ((d, h, hd),) * n, _dense_general_in
                ),
                Rule((*target, name, "bias"), biases[part], ((h, hd),) * n, _dense_general_bias),
            ]
        return rules

    rules = [
        one_rule(("patch_embed", "kernel"), "img/embedding/kernel", (p, p, 3, d)),
        one_rule(("patch_embed", "bias"), "img/embedding/bias", (d,)),
        one_rule(("pos_embed",), "img/pos_embedding", (1, rows * cols, d)),
        *_norm(("norm",), *(f"img/Transformer/encoder_norm/{n}" for n in ("scale", "bias")), d),
    ]
    for i in range(dims.depth):
        s, t = f"img/Transformer/encoderblock_{i}/", f"block_{i}"
        rules += _norm((t, "norm1"), s + "LayerNorm_0/scale", s + "LayerNorm_0/bias", d)
        rules += _norm((t, "norm2"), s + "LayerNorm_1/scale", s + "LayerNorm_1/bias", d)
        rules += attention((t, "attn"), s + "MultiHeadDotProductAttention_0", "q", kv=False)
        rules += _flax_dense((t, "mlp", "fc1"), s + "MlpBlock_0/Dense_0", d, m)
        rules += _flax_dense((t, "mlp", "fc2"), s + "MlpBlock_0/Dense_1", m, d)
    s, t = "img/MAPHead_0/", "map_head"
    rules.append(one_rule((t, "probe"), s + "probe", (1, 1, d)))
    rules += attention((t,), s + "MultiHeadDotProductAttention_0", "q", kv=True)
    rules += _norm((t, "norm"), s + "LayerNorm_0/scale", s + "LayerNorm_0/bias", d)
    rules += _flax_dense((t, "mlp", "fc1"), s + "MlpBlock_0/Dense_0", d, m)
    rules += _flax_dense((t, "mlp", "fc2"), s + "MlpBlock_0/Dense_1", m, d)
    return rules


def _hf_rules(dims: EncoderDims, naflex: bool) -> list[Rule]:
    d, m, p = dims.width, dims.mlp_dim, dims.patch_size
    rows, cols = dims.grid
    e = "embeddings."
    if naflex:
        patch = [
            Rule(
                ("patch_embed", "kernel"),
                (e + "patch_embedding.weight",),
                ((d, p * p * 3),),
                lambda w: np.ascontiguousarray(w.T.reshape(p, p, 3, d)),
            )
        ]
    else:
        patch = [
            one_rule(("patch_embed", "kernel"), e + "patch_embedding.weight", (d, 3, p, p), _conv)
        ]
    rules = [
        *patch,
        one_rule(("patch_embed", "bias"), e + "patch_embedding.bias", (d,)),
        one_rule(("pos_embed",), e + "position_embedding.weight", (rows * cols, d), _table),
        *_torch_norm(("norm",), "post_layernorm", d),
    ]
    for i in range(dims.depth):
        s, t = f"encoder.layers.{i}.", f"block_{i}"
        a = s + "self_attn."
        rules += _torch_norm((t, "norm1"), s + "layer_norm1", d)
        rules += _torch_norm((t, "norm2"), s + "layer_norm2", d)
        rules += [
            Rule(
                (t, "attn", "qkv", "kernel"),
                tuple(f"{a}{n}_proj.weight" for n in "qkv"),
                ((d, d),) * 3,
                _fused_kernel,
            ),
            Rule(
                (t, "attn", "qkv", "bias"),
                tuple(f"{a}{n}_proj.bias" for n in "qkv"),
                ((d,),) * 3,
                _concat,
            ),
        ]
        rules += _torch_dense((t, "attn", "proj"), a + "out_proj", d, d)
        rules += _torch_dense((t, "mlp", "fc1"), s + "mlp.fc1", m, d)
        rules += _torch_dense((t, "mlp", "fc2"), s + "mlp.fc2", d, m)
    h, t = "head.", "map_head"
    w, b = h + "attention.in_proj_weight", h + "attention.in_proj_bias"
    rules += [
        one_rule((t, "probe"), h + "probe", (1, 1, d)),
        one_rule((t, "q", "kernel"), w, (3 * d, d), lambda x: _linear(x[:d])),
        one_rule((t, "q", "bias"), b, (3 * d,), lambda x: x[:d]),
        # in_proj_weight feeds q and kv: the same tensor is read by two rules.
        Rule((t, "kv", "kernel"), (w,), ((3 * d, d),), lambda x: _linear(x[d:])),
        Rule((t, "kv", "bias"), (b,), ((3 * d,),), lambda x: x[d:]),
        *_torch_dense((t, "proj"), h + "attention.out_proj", d, d),
        *_torch_norm((t, "norm"), h + "layernorm", d),
        *_torch_dense((t, "mlp", "fc1"), h + "mlp.fc1", m, d),
        *_torch_dense((t, "mlp", "fc2"), h + "mlp.fc2", d, m),
    ]
    return rules


def _timm_rules(dims: EncoderDims) -> list[Rule]:
    d, m, p = dims.width, dims.mlp_dim, dims.patch_size
    rows, cols = dims.grid
    rules = [
        one_rule(("patch_embed", "kernel"), "patch_embed.proj.weight", (d, 3, p, p), _conv),
        one_rule(("patch_embed", "bias"), "patch_embed.proj.bias", (d,)),
        one_rule(("pos_embed",), "pos_embed", (1, rows * cols, d)),
        *_torch_norm(("norm",), "norm", d),
    ]
    for i in range(dims.depth):
        s, t = f"blocks.{i}.", f"block_{i}"
        rules += _torch_norm((t, "norm1"), s + "norm1", d)
        rules += _torch_norm((t, "norm2"), s + "norm2", d)
        rules += _torch_dense((t, "attn", "qkv"), s + "attn.qkv", 3 * d, d)
        rules += _torch_dense((t, "attn", "proj"), s + "attn.proj", d, d)
        rules += _torch_dense((t, "mlp", "fc1"), s + "mlp.fc1", m, d)
        rules += _torch_dense((t, "mlp", "fc2"), s + "mlp.fc2", d, m)
    return rules + timm_map_head_rules(d, m)


def timm_map_head_rules(d: int, m: int) -> list[Rule]:
    """timm's `AttentionPoolLatent` (`attn_pool.*`, width d, MLP hidden m) onto the MAP head;
    also the timm layout's (checkpoints_convert/layouts/timm_vit.py) for global_pool='map'."""
    a, t = "attn_pool.", "map_head"
    return [
        one_rule((t, "probe"), a + "latent", (1, 1, d)),
        *_torch_dense((t, "q"), a + "q", d, d),
        *_torch_dense((t, "kv"), a + "kv", 2 * d, d),
        *_torch_dense((t, "proj"), a + "proj", d, d),
        *_torch_norm((t, "norm"), a + "norm", d),
        *_torch_dense((t, "mlp", "fc1"), a + "mlp.fc1", m, d),
        *_torch_dense((t, "mlp", "fc2"), a + "mlp.fc2", d, m),
    ]


def _rules(dims: EncoderDims, tensors: Mapping[str, np.ndarray]) -> list[Rule]:
    kind = _flavour(tensors)
    if kind == "big_vision":
        return _big_vision_rules(dims)
    if kind == "timm":
        return _timm_rules(dims)
    return _hf_rules(dims, naflex=kind == "hf_naflex")


def _rename(name: str) -> str:
    # big_vision trees are saved under `params/`; HF SiglipModel files nest the image tower
    # under `vision_model.`.
    for prefix in ("params/", "vision_model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _square(count: int) -> tuple[int, int] | None:
    side = math.isqrt(count)
    return (side, side) if side * side == count and side > 0 else None


def _infer(tensors: Mapping[str, np.ndarray]) -> dict:
    """Width, patch size, depth, native grid and the flavour's resampling rule."""
    kind = _flavour(tensors)
    fields = [("pos_interp", POS_INTERP[kind])]
    if kind == "timm":
        # timm's `vit_*_siglip_*` (SigLIP 1) definitions use the exact erf GELU where big_vision
        # trained with the tanh approximation; vitjax reproduces timm's numbers for timm files.
        fields.append(("mlp", "gelu"))
    out: dict = {"spec_fields": tuple(fields)}
    if kind == "big_vision":
        patch, pos = tensors.get("img/embedding/kernel"), tensors.get("img/pos_embedding")
        if patch is not None and patch.ndim == 4 and patch.shape[0] == patch.shape[1]:
            out.update(width=int(patch.shape[3]), patch_size=int(patch.shape[0]))
        block = re.compile(r"^img/Transformer/encoderblock_(\d+)/")
        table = pos[0] if pos is not None and pos.ndim == 3 else None
    elif kind == "timm":
        patch, pos = tensors.get("patch_embed.proj.weight"), tensors.get("pos_embed")
        if patch is not None and patch.ndim == 4 and patch.shape[2] == patch.shape[3]:
            out.update(width=int(patch.shape[0]), patch_size=int(patch.shape[2]))
        block = re.compile(r"^blocks\.(\d+)\.")
        table = pos[0] if pos is not None and pos.ndim == 3 else None
    else:
        patch = tensors.get(_HF_PATCH)
        if patch is not None and patch.ndim == 4 and patch.shape[2] == patch.shape[3]:
            out.update(width=int(patch.shape[0]), patch_size=int(patch.shape[2]))
        elif patch is not None and patch.ndim == 2:
            side = math.isqrt(patch.shape[1] // 3)
            if 3 * side * side == patch.shape[1]:
                out.update(width=int(patch.shape[0]), patch_size=side)
        block = re.compile(r"^encoder\.layers\.(\d+)\.")
        table = tensors.get("embeddings.position_embedding.weight")
    if table is not None and table.ndim == 2:
        out["grid"] = _square(table.shape[0])
    blocks = {int(m.group(1)) for k in tensors if (m := block.match(k))}
    out["depth"] = max(blocks) + 1 if blocks else None
    return out


LAYOUT = register_layout(
    Layout(
        name="siglip",
        block=TIMM_BLOCK,
        ignorable=(
            (r"txt/.*", "SigLIP text tower (only the image tower is converted)"),
            (r"text_model\..*", "SigLIP text tower (only the image tower is converted)"),
            (r"(t|b|logit_scale|logit_bias)", "sigmoid-loss temperature and bias"),
            (r"img/head/.*", "image projection head on top of the MAP output (not in HF/timm)"),
            (r"head\.(weight|bias)", "timm classification head"),
            (r"embeddings\.position_ids", "HF position-id buffer (arange)"),
        ),
        strip_encoder_prefix=False,
        keyed_rules=_rules,
        rename=_rename,
        infer=_infer,
    )
)
