"""DINOv3: the facebookresearch/dinov3 `.pth` names and the HF `DINOv3ViTModel` safetensors names.

Official (`dinov3_vit*_pretrain_*.pth`): `cls_token`, `storage_tokens`, `patch_embed.proj`,
`blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1/fc2 | mlp.w1/w2/w3,ls2.gamma}`,
`norm`, plus `attn.qkv.bias_mask` (the qkv bias is multiplied by it: its k third is zero),
`rope_embed.periods` (checked against base 100, then recomputed), `mask_token` and, for the 7B and
the satellite ViT-L, `local_cls_norm` (training only). The 7B has no qkv bias.
HF (`DINOv3ViTModel`): `embeddings.{cls_token,register_tokens,patch_embeddings}`,
`[model.]layer.{i}.{norm1,attention.{q,k,v,o}_proj,layer_scale1.lambda1,norm2,
mlp.{up,down}_proj | mlp.{gate,up,down}_proj,layer_scale2.lambda1}`, `norm`; k_proj has no bias.
SwiGLU: w1 (HF gate_proj) and w2 (up_proj) become the fused `w12` kernel [D, 2 * hidden].
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from checkpoints_convert.layouts.base import (
    BlockNames,
    EncoderDims,
    Layout,
    Rule,
    one_rule,
    register_layout,
)
from vitjax.models import vit

ROPE_BASE = vit.ROPE_BASE  # the model's default; files are checked against it
_HF_MARKERS = ("embeddings.", "layer.")


def _linear(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


def _conv(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _fused_kernel(*weights: np.ndarray) -> np.ndarray:
    # torch Linear weights (out, in) stacked along out, as one Flax kernel (in, sum of outs).
    return np.ascontiguousarray(np.concatenate(weights, axis=0).T)


def _concat(*arrays: np.ndarray) -> np.ndarray:
    return np.concatenate(arrays)


def _masked_bias(bias: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # LinearKMaskedBias: the stored k bias is multiplied by a zero mask.
    return bias * mask


def _qv_bias(q_bias: np.ndarray, v_bias: np.ndarray) -> np.ndarray:
    return np.concatenate([q_bias, np.zeros_like(q_bias), v_bias])


def is_hf(keys) -> bool:
    """Whether the canonical keys are mostly HF `DINOv3ViTModel` names."""
    keys = list(keys)
    hf = sum(k.startswith(_HF_MARKERS) for k in keys)
    return hf > len(keys) - hf


def _mlp_rules(dims: EncoderDims, t: str, names: dict[str, str]) -> list[Rule]:
    d, m = dims.width, dims.mlp_dim
    if dims.mlp == "swiglu":
        w1, w2, w3 = names["w1"], names["w2"], names["w3"]
        return [
            Rule(
                (t, "mlp", "w12", "kernel"),
                (f"{w1}.weight", f"{w2}.weight"),
                ((m, d),) * 2,
                _fused_kernel,
            ),
            Rule((t, "mlp", "w12", "bias"), (f"{w1}.bias", f"{w2}.bias"), ((m,),) * 2, _concat),
            one_rule((t, "mlp", "w3", "kernel"), f"{w3}.weight", (d, m), _linear),
            one_rule((t, "mlp", "w3", "bias"), f"{w3}.bias", (d,)),
        ]
    fc1, fc2 = names["fc1"], names["fc2"]
    return [
        one_rule((t, "mlp", "fc1", "kernel"), f"{fc1}.weight", (m, d), _linear),
        one_rule((t, "mlp", "fc1", "bias"), f"{fc1}.bias", (m,)),
        one_rule((t, "mlp", "fc2", "kernel"), f"{fc2}.weight", (d, m), _linear),
        one_rule((t, "mlp", "fc2", "bias"), f"{fc2}.bias", (d,)),
    ]


def _norm_rules(target: tuple[str, ...], prefix: str, d: int) -> list[Rule]:
    return [
        one_rule((*target, "scale"), f"{prefix}.weight", (d,)),
        one_rule((*target, "bias"), f"{prefix}.bias", (d,)),
    ]


def _official_rules(dims: EncoderDims) -> list[Rule]:
    d, p = dims.width, dims.patch_size
    rules = [
        one_rule(("cls_token",), "cls_token", (1, 1, d)),
        one_rule(("register_tokens",), "storage_tokens", (1, dims.num_registers, d)),
        one_rule(("patch_embed", "kernel"), "patch_embed.proj.weight", (d, 3, p, p), _conv),
        one_rule(("patch_embed", "bias"), "patch_embed.proj.bias", (d,)),
        *_norm_rules(("norm",), "norm", d),
    ]
    for i in range(dims.depth):
        s, t = f"blocks.{i}.", f"block_{i}"
        rules += _norm_rules((t, "norm1"), s + "norm1", d)
        rules += _norm_rules((t, "norm2"), s + "norm2", d)
        rules += [
            one_rule((t, "attn", "qkv", "kernel"), s + "attn.qkv.weight", (3 * d, d), _linear),
            one_rule((t, "attn", "proj", "kernel"), s + "attn.proj.weight", (d, d), _linear),
            one_rule((t, "attn", "proj", "bias"), s + "attn.proj.bias", (d,)),
            one_rule((t, "ls1", "gamma"), s + "ls1.gamma", (d,)),
            one_rule((t, "ls2", "gamma"), s + "ls2.gamma", (d,)),
        ]
        if dims.qkv_bias != "none":
            sources = (s + "attn.qkv.bias", s + "attn.qkv.bias_mask")
            rules.append(Rule((t, "attn", "qkv", "bias"), sources, ((3 * d,),) * 2, _masked_bias))
        names = {n: f"{s}mlp.{n}" for n in ("fc1", "fc2", "w1", "w2", "w3")}
        rules += _mlp_rules(dims, t, names)
    return rules


def _hf_rules(dims: EncoderDims) -> list[Rule]:
    d, p = dims.width, dims.patch_size
    e = "embeddings."
    rules = [
        one_rule(("cls_token",), e + "cls_token", (1, 1, d)),
        one_rule(("register_tokens",), e + "register_tokens", (1, dims.num_registers, d)),
        one_rule(("patch_embed", "kernel"), e + "patch_embeddings.weight", (d, 3, p, p), _conv),
        one_rule(("patch_embed", "bias"), e + "patch_embeddings.bias", (d,)),
        *_norm_rules(("norm",), "norm", d),
    ]
    for i in range(dims.depth):
        s, t = f"layer.{i}.", f"block_{i}"
        a = s + "attention."
        qkv = tuple(f"{a}{n}_proj.weight" for n in "qkv")
        rules += _norm_rules((t, "norm1"), s + "norm1", d)
        rules += _norm_rules((t, "norm2"), s + "norm2", d)
        rules += [
            Rule((t, "attn", "qkv", "kernel"), qkv, ((d, d),) * 3, _fused_kernel),
            one_rule((t, "attn", "proj", "kernel"), a + "o_proj.weight", (d, d), _linear),
            one_rule((t, "attn", "proj", "bias"), a + "o_proj.bias", (d,)),
            one_rule((t, "ls1", "gamma"), s + "layer_scale1.lambda1", (d,)),
            one_rule((t, "ls2", "gamma"), s + "layer_scale2.lambda1", (d,)),
        ]
        if dims.qkv_bias != "none":
            sources = (a + "q_proj.bias", a + "v_proj.bias")
            rules.append(Rule((t, "attn", "qkv", "bias"), sources, ((d,),) * 2, _qv_bias))
        m = s + "mlp."
        names = {
            "fc1": m + "up_proj",
            "fc2": m + "down_proj",
            "w1": m + "gate_proj",
            "w2": m + "up_proj",
            "w3": m + "down_proj",
        }
        rules += _mlp_rules(dims, t, names)
    return rules


def _rules(dims: EncoderDims, tensors: Mapping[str, np.ndarray]) -> list[Rule]:
    return _hf_rules(dims) if is_hf(tensors) else _official_rules(dims)


def _rename(name: str) -> str:
    # transformers 5 nests the blocks under `model.`; earlier files store `layer.{i}` at the top.
    return name[len("model.") :] if name.startswith("model.layer.") else name


def _infer(tensors: Mapping[str, np.ndarray]) -> dict:
    """Width, patch size, depth, storage-token count and MLP kind off either flavour's names."""
    hf = is_hf(tensors)
    patch = tensors.get("embeddings.patch_embeddings.weight" if hf else "patch_embed.proj.weight")
    tokens = tensors.get("embeddings.register_tokens" if hf else "storage_tokens")
    block = re.compile(r"^layer\.(\d+)\." if hf else r"^blocks\.(\d+)\.")
    blocks = {int(m.group(1)) for k in tensors if (m := block.match(k))}
    swiglu = any(k.endswith(("mlp.w1.weight", "mlp.gate_proj.weight")) for k in tensors)
    out = {
        "depth": max(blocks) + 1 if blocks else None,
        # S and S+ share a width: the MLP tensors tell them apart.
        "spec_fields": (("mlp", "swiglu" if swiglu else "gelu"),),
    }
    if patch is not None and patch.ndim == 4 and patch.shape[2] == patch.shape[3]:
        out.update(width=int(patch.shape[0]), patch_size=int(patch.shape[2]))
    if tokens is not None and tokens.ndim == 3:
        out["num_registers"] = int(tokens.shape[1])
    return out


def expected_periods(head_dim: int, base: float = ROPE_BASE) -> np.ndarray:
    """The official `rope_embed.periods` of a head width: base ** (2 j / (hd / 2)), j < hd / 4."""
    quarter = head_dim // 4
    return float(base) ** (2.0 * np.arange(quarter, dtype=np.float64) / (head_dim // 2))


def _check_dims(tensors: Mapping[str, np.ndarray], dims: EncoderDims) -> list[tuple[str, str]]:
    """RoPE periods must be base 100's for the head width; k-bias masks must be [1, 0, 1]."""
    problems = []
    head_dim = dims.width // dims.num_heads
    periods = tensors.get("rope_embed.periods")
    if periods is not None:
        want = expected_periods(head_dim)
        if periods.shape != want.shape or not np.allclose(periods, want, rtol=1e-5):
            problems.append(
                (
                    "rope_embed.periods",
                    f"expected base-{ROPE_BASE:g} periods for head width {head_dim} "
                    f"(shape {want.shape}), got shape {tuple(periods.shape)}; a model with "
                    "another RoPE base or min/max periods is not supported",
                )
            )
    d = dims.width
    want_mask = np.concatenate([np.ones(d), np.zeros(d), np.ones(d)])
    for key, value in tensors.items():
        if key.endswith("attn.qkv.bias_mask") and value.shape == want_mask.shape:
            if not np.array_equal(value, want_mask):
                problems.append((key, "expected ones for q and v and zeros for k (mask_k_bias)"))
    return problems


LAYOUT = register_layout(
    Layout(
        name="dinov3",
        block=BlockNames(prefix="blocks.{i}.", ls1="ls1.gamma", ls2="ls2.gamma"),
        ignorable=(
            (r"(embeddings\.)?mask_token", "DINOv3 mask token (masked-image training only)"),
            (
                r"rope_embed\.periods",
                f"RoPE periods (checked against base {ROPE_BASE:g}, recomputed by the model)",
            ),
            (
                r"local_cls_norm\.(weight|bias)",
                "local-crop CLS/storage norm (training only, untie_global_and_local_cls_norm)",
            ),
        ),
        keyed_rules=_rules,
        rename=_rename,
        infer=_infer,
        check_dims=_check_dims,
    )
)
