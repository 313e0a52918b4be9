"""timm's `Eva` class: its DINOv3 ports (`vit_*_patch16_dinov3[_qkvb]`) onto the dinov3 model.

timm's DINOv3 port is an `Eva` with `rope_type='dinov3'` (`RotaryEmbeddingDinoV3`: 0.5-centred
patch coordinates normalised per axis to [-1, 1], 'ij' order, periods `100 ** (2 j / (hd / 2))`,
rotate-half layout, class and register tokens not rotated), no absolute position table, a class
token then `reg_token` (DINOv3's storage tokens), LayerScale `gamma_1/gamma_2`, a fused `attn.qkv`
without bias plus, for the `_qkvb` variants, `q_bias`/`v_bias` (the k bias is a zero buffer that is
not saved), an exact-GELU `Mlp` or a `SwiGLU` (`fc1_g`, `fc1_x`, `fc2`), one LayerNorm eps and the
final norm. That is exactly vitjax's RoPE (`vit.rope_tables`, `apply_rope`), so these models
convert onto the `dinov3` family. Every other Eva (EVA-02: sub-LayerNorms, interleaved or
'cat'/'mixed' RoPE, absolute positions; post-norm blocks; q/k norm; gated attention...) is refused
with the complete list of what differs.

timm's train-time RoPE coordinate augmentations (shift/jitter/rescale) run only in training mode,
as upstream: they do not change evaluation. timm's head pooling (`global_pool`, 'avg' by default
for these ports) is not converted: the vitjax `global` output is the normed class token, as
upstream DINOv3's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from checkpoints_convert.layouts.base import (
    BlockNames,
    EncoderDims,
    Rule,
    block_rules,
    conv_kernel,
    linear_kernel,
    one_rule,
)
from vitjax.models import families, posembed, vit

SPEC_FAMILY = "dinov3"


def module_name(module) -> str:
    """The class name of a torch module ("PatchEmbed", "Identity")."""
    return type(module).__name__


def _is_identity(module) -> bool:
    return module is None or module_name(module) == "Identity"


def _check_rope(model, unsupported: list[str]) -> None:
    """Appends every way timm's rotary embedding differs from DINOv3's (vitjax's)."""
    rope = getattr(model, "rope", None)
    if rope is None:
        unsupported.append(
            "no rotary position embedding (use_rot_pos_emb=False): only timm's DINOv3 ports "
            "(rope_type='dinov3') are mapped for Eva"
        )
        return
    if module_name(rope) != "RotaryEmbeddingDinoV3":
        unsupported.append(
            f"rotary position embedding {module_name(rope)} (only timm's DINOv3 RoPE, "
            "rope_type='dinov3', RotaryEmbeddingDinoV3)"
        )
        return
    if rope.min_period is not None and rope.max_period is not None:
        unsupported.append(
            f"RoPE min_period/max_period {rope.min_period}/{rope.max_period} (only base-"
            f"{vit.ROPE_BASE:g} periods)"
        )
    elif rope.temperature != vit.ROPE_BASE:
        unsupported.append(
            f"rope_temperature={rope.temperature:g} (only DINOv3's base {vit.ROPE_BASE:g})"
        )
    if rope.normalize_coords != "separate":
        unsupported.append(f"RoPE normalize_coords={rope.normalize_coords!r} ('separate' only)")
    if float(rope.grid_offset) != 0.0:
        unsupported.append(f"rope_grid_offset={rope.grid_offset} (0 only)")
    if rope.grid_indexing != "ij":
        unsupported.append(f"rope_grid_indexing={rope.grid_indexing!r} ('ij' only)")
    if not rope.rotate_half:
        unsupported.append("interleaved RoPE layout (rope_rotate_half=False; rotate-half only)")


def _check_model_level(model, unsupported: list[str]) -> None:
    _check_rope(model, unsupported)
    if model.cls_token is None:
        unsupported.append("class_token=False (DINOv3 has a class token)")
    if model.pos_embed is not None:
        unsupported.append("absolute position table (use_abs_pos_emb=True) next to RoPE")
    if not _is_identity(model.norm_pre):
        unsupported.append("norm_pre (use_pre_transformer_norm)")
    if _is_identity(model.norm):
        unsupported.append("no final norm (use_post_transformer_norm=False / fc_norm instead)")
    if not _is_identity(model.fc_norm):
        unsupported.append("fc_norm (pooled-feature norm)")
    if getattr(model, "attn_pool", None) is not None:
        unsupported.append("attention pooling head (global_pool='map')")
    embed = model.patch_embed
    if module_name(embed) != "PatchEmbed":
        unsupported.append(f"embed_layer={module_name(embed)} (hybrid or custom patch embedding)")
    else:
        if not _is_identity(getattr(embed, "norm", None)):
            unsupported.append("patch_embed norm")
        if embed.proj.bias is None:
            unsupported.append("patch embedding without bias")


def _mlp_kind(where: str, mlp, unsupported: list[str]) -> str | None:
    """'gelu' | 'swiglu' (SwiGLU: fc1_g/fc1_x) | 'swiglu_packed' (GluMlp), or None (appended)."""
    import torch  # the timm route is the only one that needs torch modules

    if not _is_identity(getattr(mlp, "norm", None)):
        unsupported.append(f"{where}: sub-LayerNorm in the MLP (scale_mlp)")
        return None
    kind, linears = None, ()
    if module_name(mlp) == "Mlp" and not getattr(mlp, "use_conv", False):
        if isinstance(mlp.act, torch.nn.GELU) and mlp.act.approximate == "none":
            kind, linears = "gelu", (mlp.fc1, mlp.fc2)
        else:
            unsupported.append(f"{where}: MLP activation {mlp.act!r} (exact GELU only)")
    elif module_name(mlp) == "SwiGLU" and isinstance(mlp.act, torch.nn.SiLU):
        kind, linears = "swiglu", (mlp.fc1_g, mlp.fc1_x, mlp.fc2)
    elif module_name(mlp) == "GluMlp" and isinstance(mlp.act, torch.nn.SiLU) and not mlp.gate_last:
        kind, linears = "swiglu_packed", (mlp.fc1, mlp.fc2)
    else:
        unsupported.append(f"{where}: mlp_layer={module_name(mlp)}")
    if any(layer.bias is None for layer in linears):
        unsupported.append(f"{where}: MLP linear layers without bias")
        return None
    return kind


def _check_block(i: int, block, model, unsupported: list[str]) -> dict[str, Any] | None:
    """One block's facts (MLP kind, qkv bias, LayerScale, norms), or None (appended)."""
    where = f"blocks.{i}"
    if module_name(block) != "EvaBlock":
        unsupported.append(f"{where}: {module_name(block)} (use_post_norm; pre-norm EvaBlock only)")
        return None
    attn = block.attn
    if module_name(attn) != "EvaAttention":
        unsupported.append(f"{where}: attention {module_name(attn)} (attn_type='eva' only)")
        return None
    if getattr(attn, "qkv", None) is None:
        unsupported.append(f"{where}: separate q/k/v projections (qkv_fused=False)")
    if not _is_identity(attn.norm):
        unsupported.append(f"{where}: sub-LayerNorm in attention (scale_attn_inner)")
    for name in ("q_norm", "k_norm"):
        if not _is_identity(getattr(attn, name)):
            unsupported.append(f"{where}.attn.{name} (qk_norm)")
    if getattr(attn, "gate", None) is not None:
        unsupported.append(f"{where}: gated attention (gated_attn)")
    if attn.head_dim * attn.num_heads != model.embed_dim:
        unsupported.append(f"{where}: attn_head_dim={attn.head_dim} (embed_dim / num_heads only)")
    if not getattr(attn, "rotate_half", False):
        unsupported.append(f"{where}: interleaved RoPE in attention (rotate-half only)")
    if attn.num_prefix_tokens != model.num_prefix_tokens:
        unsupported.append(f"{where}: RoPE skips {attn.num_prefix_tokens} prefix tokens, not all")
    if attn.proj.bias is None:
        unsupported.append(f"{where}: attention output projection without bias")
    layerscale = (block.gamma_1 is not None, block.gamma_2 is not None)
    if layerscale == (True, False):
        unsupported.append(f"{where}: LayerScale on the attention branch only")
    return {
        "mlp": _mlp_kind(where, block.mlp, unsupported),
        "qkv_bias": getattr(attn, "q_bias", None) is not None,
        "layerscale": layerscale[0],
        "norms": [(f"{where}.norm1", block.norm1), (f"{where}.norm2", block.norm2)],
    }


def _dinov3_size(fields: dict[str, Any]) -> str:
    """The dinov3 size of the same block shape, else 'custom' (a width timm's DINOv3 lacks)."""
    keys = ("width", "num_heads", "mlp_dim", "mlp")
    for variant in families.get_family(SPEC_FAMILY).variants:
        spec_fields = {
            "width": variant.width,
            "num_heads": variant.num_heads,
            "mlp_dim": variant.mlp_dim,
            "mlp": dict(variant.overrides).get("mlp", "gelu"),
        }
        if all(spec_fields[k] == fields[k] for k in keys):
            return variant.size
    return "custom"


def inspect_eva(model, unsupported: list[str], norm_eps) -> tuple[dict[str, Any], dict[str, Any]]:
    """Spec fields and layout options of a timm DINOv3 port; appends every unsupported option.

    Args:
      model: a timm `Eva` (built on the meta device).
      unsupported: list the reasons are appended to.
      norm_eps: (named norms, unsupported) -> set of LayerNorm eps (the VisionTransformer rule).

    Returns:
      (spec fields incl. `family='dinov3'` and `size`, layout options), or ({}, {}) when
      anything is unsupported.
    """
    _check_model_level(model, unsupported)
    facts = [_check_block(i, b, model, unsupported) for i, b in enumerate(model.blocks)]
    norms = [("norm", model.norm)] if not _is_identity(model.norm) else []
    for fact in facts:
        norms += fact["norms"] if fact else []
    eps = norm_eps(norms, unsupported)
    if len(eps) > 1:
        unsupported.append(f"LayerNorm eps differ between norms: {sorted(eps)}")
    facts = [f for f in facts if f is not None]
    for key, what in (("mlp", "MLP kinds"), ("qkv_bias", "qkv bias"), ("layerscale", "LayerScale")):
        values = {f[key] for f in facts} - {None}
        if len(values) > 1:
            unsupported.append(f"{what} differ between blocks: {sorted(values, key=str)}")
    if unsupported or not facts or facts[0]["mlp"] is None:
        return {}, {}
    first, block = facts[0], model.blocks[0]
    mlp_layer = block.mlp.fc2
    fields: dict[str, Any] = dict(
        width=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(block.attn.num_heads),
        mlp_dim=int(mlp_layer.in_features),
        native_grid=tuple(int(g) for g in model.patch_embed.grid_size),
        num_registers=int(model.num_prefix_tokens) - 1,
        pos_embed="rope",
        pos_interp=posembed.POS_INTERP_ROPE,
        layerscale=first["layerscale"],
        pre_norm=False,
        patch_bias=True,
        mlp="gelu" if first["mlp"] == "gelu" else "swiglu",
        norm_eps=eps.pop(),
        # timm's `_qkvb` ports: q and v biases, a zero k bias (DINOv3's masked k bias).
        qkv_bias="qv" if first["qkv_bias"] else "none",
        class_token=True,
        global_pool="cls",
    )
    fields.update(family=SPEC_FAMILY, size=_dinov3_size(fields))
    options = {"eva_mlp": first["mlp"], "layerscale": first["layerscale"]}
    return fields, options


def eva_rules(dims: EncoderDims) -> list[Rule]:
    """timm DINOv3-port names -> vitjax dinov3 parameters."""
    o = dict(dims.options)
    d, p, m = dims.width, dims.patch_size, dims.mlp_dim
    rules = [
        one_rule(("patch_embed", "kernel"), "patch_embed.proj.weight", (d, 3, p, p), conv_kernel),
        one_rule(("patch_embed", "bias"), "patch_embed.proj.bias", (d,)),
        one_rule(("norm", "scale"), "norm.weight", (d,)),
        one_rule(("norm", "bias"), "norm.bias", (d,)),
        one_rule(("cls_token",), "cls_token", (1, 1, d)),
    ]
    if dims.num_registers:
        rules.append(one_rule(("register_tokens",), "reg_token", (1, dims.num_registers, d)))
    layerscale = o.get("layerscale", True)
    names = BlockNames(
        prefix="blocks.{i}.",
        qkv_bias=None,  # q_bias and v_bias, a zero k third
        ls1="gamma_1" if layerscale else None,
        ls2="gamma_2" if layerscale else None,
        w12="mlp.fc1",  # GluMlp (gate_last=False) packs [gate; x] as DINOv2's w12
        w3="mlp.fc2",
    )
    mlp = o.get("eva_mlp", "gelu")
    for i in range(dims.depth):
        block = block_rules(names, i, d, m, "block_", dims.mlp)
        if dims.qkv_bias == "none":
            block = [r for r in block if r.target[1:] != ("attn", "qkv", "bias")]
        if mlp == "swiglu":  # timm's SwiGLU: silu(fc1_g x) * fc1_x x -> w12 = [fc1_g; fc1_x]
            t, s = f"block_{i}", f"blocks.{i}.mlp."
            block = [r for r in block if r.target[1:3] != ("mlp", "w12")]
            block += [
                Rule(
                    (t, "mlp", "w12", "kernel"),
                    (s + "fc1_g.weight", s + "fc1_x.weight"),
                    ((m, d), (m, d)),
                    lambda g, x: linear_kernel(np.concatenate([g, x])),
                ),
                Rule(
                    (t, "mlp", "w12", "bias"),
                    (s + "fc1_g.bias", s + "fc1_x.bias"),
                    ((m,), (m,)),
                    lambda g, x: np.concatenate([g, x]),
                ),
            ]
        rules.extend(block)
    return rules
