"""Any timm `VisionTransformer`, or an `Eva` DINOv3 port, given as the Hub pair config.json +
model.safetensors (the DINOv3 ports: `timm_eva`, converted onto the dinov3 model).

The model is rebuilt from the config (`architecture`, `model_args`) by timm itself on the meta
device (no memory, no weights), and its modules are inspected: every option the one Flax
VisionTransformer can express becomes a spec field; anything else is refused with the complete
list of unsupported options. Preprocessing comes from `pretrained_cfg` (mean, std, input_size,
interpolation, crop_pct).

Expressible: class token, learned absolute position table (with or without the class row:
`no_embed_class`), register tokens after the class token without positions, patch-embedding bias
or not, `norm_pre`, qkv bias or none (`qkv_bias=False` in every block: spec `qkv_bias='none'`),
LayerScale, MLP with exact GELU, QuickGELU or packed SwiGLU (`SwiGLUPacked`), LayerNorm (one eps),
final norm, `global_pool='token'`, and no class token with `global_pool='map'` (timm's SigLIP
definitions: an `AttentionPoolLatent` with one latent of width D, no pool positions, no q/k norm,
an MLP of the blocks' hidden width and activation -> the vitjax MAP head, spec
`class_token=False, global_pool='map'`, position table without a class row). Timm's
position-table resampling (`resample_abs_pos_embed`: bicubic, size=, antialias) is the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from checkpoints_convert.layouts import timm_eva
from checkpoints_convert.layouts.base import (
    BlockNames,
    EncoderDims,
    Layout,
    Rule,
    block_rules,
    conv_kernel,
    one_rule,
    register_layout,
)
from checkpoints_convert.layouts.siglip import timm_map_head_rules
from vitjax.errors import CheckpointError
from vitjax.models import families

CONFIG_FILE = "config.json"


def _with_zero_cls_row(pos: np.ndarray) -> np.ndarray:
    # no_embed_class: the table covers patches only; the class token gets no position, which
    # the vitjax table (1 + N rows) expresses as a zero class row.
    return np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)


def _rules(dims: EncoderDims) -> list[Rule]:
    o = dict(dims.options)
    if "eva_mlp" in o:  # a timm DINOv3 port (Eva)
        return timm_eva.eva_rules(dims)
    d, p = dims.width, dims.patch_size
    rows, cols = dims.grid
    class_token = o.get("class_token", True)
    rules = [
        one_rule(("patch_embed", "kernel"), "patch_embed.proj.weight", (d, 3, p, p), conv_kernel),
        one_rule(("norm", "scale"), "norm.weight", (d,)),
        one_rule(("norm", "bias"), "norm.bias", (d,)),
    ]
    if o.get("patch_bias", True):
        rules.append(one_rule(("patch_embed", "bias"), "patch_embed.proj.bias", (d,)))
    if class_token:
        rules.append(one_rule(("cls_token",), "cls_token", (1, 1, d)))
    if not class_token:
        # No class token: the table covers the patches only, as the vitjax one then does.
        rules.append(one_rule(("pos_embed",), "pos_embed", (1, rows * cols, d)))
    elif o.get("no_embed_class", False):
        rules.append(one_rule(("pos_embed",), "pos_embed", (1, rows * cols, d), _with_zero_cls_row))
    else:
        rules.append(one_rule(("pos_embed",), "pos_embed", (1, 1 + rows * cols, d)))
    if dims.num_registers:
        rules.append(one_rule(("register_tokens",), "reg_token", (1, dims.num_registers, d)))
    if o.get("pre_norm", False):
        rules.append(one_rule(("norm_pre", "scale"), "norm_pre.weight", (d,)))
        rules.append(one_rule(("norm_pre", "bias"), "norm_pre.bias", (d,)))
    layerscale = o.get("layerscale", False)
    names = BlockNames(
        prefix="blocks.{i}.",
        ls1="ls1.gamma" if layerscale else None,
        ls2="ls2.gamma" if layerscale else None,
        w12="mlp.fc1",  # timm's SwiGLUPacked stores [w1; w2] in fc1, as DINOv2's w12
        w3="mlp.fc2",
    )
    for i in range(dims.depth):
        block = block_rules(names, i, d, dims.mlp_dim, "block_", dims.mlp)
        if dims.qkv_bias == "none":  # qkv_bias=False: the qkv Linear has no bias tensor
            block = [r for r in block if r.target[1:] != ("attn", "qkv", "bias")]
        rules.extend(block)
    if o.get("map_pool", False):
        rules.extend(timm_map_head_rules(d, dims.mlp_dim))
    return rules


def _is_identity(module) -> bool:
    import torch  # the timm route is the only one that needs torch modules

    return isinstance(module, torch.nn.Identity)


def _check_model_level(model, unsupported: list[str]) -> None:
    """Appends the model-level options (pooling, tokens, positions, embedding) not expressible."""
    pool = getattr(model, "global_pool", "token")
    if model.cls_token is None and pool != "map":
        unsupported.append(
            f"class_token=False with global_pool={pool!r} (without a CLS token only the "
            "attention pooling head global_pool='map' is expressible)"
        )
    if pool not in ("token", "", "map"):
        unsupported.append(f"global_pool={pool!r} (only 'token' and 'map' are expressible)")
    if pool == "map" and model.cls_token is not None:
        # timm's map head pools the patch tokens only; the vitjax one pools every token.
        unsupported.append("global_pool='map' with a class token (timm pools without it)")
    if pool != "map" and getattr(model, "attn_pool", None) is not None:
        unsupported.append(f"attention pooling head with global_pool={pool!r}")
    if not _is_identity(model.fc_norm):
        unsupported.append("fc_norm (pooled-feature norm)")
    if int(getattr(model, "num_reg_tokens", 0)) and not getattr(model, "no_embed_class", False):
        unsupported.append("reg_tokens with position embeddings on the prefix tokens")
    if model.pos_embed is None:
        unsupported.append("pos_embed='none' (no absolute position table)")
    if getattr(model, "rope", None) is not None:
        unsupported.append("rotary position embedding")
    embed = model.patch_embed
    if timm_eva.module_name(embed) != "PatchEmbed":
        unsupported.append(
            f"embed_layer={timm_eva.module_name(embed)} (hybrid or custom patch embedding)"
        )
    elif getattr(embed, "norm", None) is not None and not _is_identity(embed.norm):
        unsupported.append("patch_embed norm (embed_norm_layer)")


def _mlp_kind(where: str, mlp, unsupported: list[str]) -> str | None:
    """The block MLP's kind ('gelu' | 'quick_gelu' | 'swiglu'), or None (appended unsupported)."""
    import torch  # the timm route is the only one that needs torch modules

    if getattr(mlp, "norm", None) is not None and not _is_identity(mlp.norm):
        unsupported.append(f"{where}.mlp.norm (scale_mlp_norm)")
    if timm_eva.module_name(mlp) == "Mlp" and not getattr(mlp, "use_conv", False):
        act = mlp.act
        if isinstance(act, torch.nn.GELU) and act.approximate == "none":
            return "gelu"
        if timm_eva.module_name(act) == "QuickGELU":
            return "quick_gelu"
        unsupported.append(f"{where}: MLP activation {act!r}")
        return None
    if timm_eva.module_name(mlp) == "GluMlp" and isinstance(mlp.act, torch.nn.SiLU):
        if getattr(mlp, "gate_last", True):
            unsupported.append(f"{where}: GluMlp with gate_last=True")
        return "swiglu"
    unsupported.append(f"{where}: mlp_layer={timm_eva.module_name(mlp)}")
    return None


def _check_block(i: int, block, unsupported: list[str]) -> tuple[str | None, set[str], list]:
    """One block's MLP kind, LayerScale module names and named norms; appends what is unsupported."""
    where = f"blocks.{i}"
    if timm_eva.module_name(block) != "Block":
        unsupported.append(f"{where}: block_fn={timm_eva.module_name(block)}")
        return None, set(), []
    attn = block.attn
    if timm_eva.module_name(attn) != "Attention":
        unsupported.append(f"{where}: attn_layer={timm_eva.module_name(attn)}")
    else:
        for name in ("q_norm", "k_norm", "norm"):
            if getattr(attn, name, None) is not None and not _is_identity(getattr(attn, name)):
                unsupported.append(f"{where}.attn.{name} (qk_norm / scale_attn_norm)")
    layerscale = {timm_eva.module_name(getattr(block, name)) for name in ("ls1", "ls2")}
    norms = [(f"{where}.norm1", block.norm1), (f"{where}.norm2", block.norm2)]
    return _mlp_kind(where, block.mlp, unsupported), layerscale, norms


def _check_map_pool(model, mlp_dim: int, unsupported: list[str]) -> tuple[str | None, list]:
    """The MLP kind and named norm of timm's `attn_pool` (global_pool='map'); appends every way
    it differs from the vitjax MAP head (one latent query of width D, q/kv/proj with biases, no
    pool positions, no q/k norm, LayerNorm then an MLP of the blocks' hidden width)."""
    pool = model.attn_pool
    if timm_eva.module_name(pool) != "AttentionPoolLatent":
        unsupported.append(f"attn_pool={timm_eva.module_name(pool)} (AttentionPoolLatent only)")
        return None, []
    d = int(model.embed_dim)
    if int(pool.latent_len) != 1:
        unsupported.append(f"attn_pool: latent_len={pool.latent_len} (one latent query only)")
    if int(pool.latent_dim) != d or _is_identity(pool.q) or pool.q.bias is None:
        unsupported.append("attn_pool: latent_dim / q_proj / qkv_bias differ from the MAP head")
    elif pool.kv.bias is None or pool.kv.out_features != 2 * d:
        unsupported.append("attn_pool: kv projection without bias or not of width 2 * embed_dim")
    if int(pool.num_heads) != int(model.blocks[0].attn.num_heads):
        unsupported.append(f"attn_pool: num_heads={pool.num_heads} differs from the blocks'")
    if getattr(pool, "pos_embed", None) is not None:
        unsupported.append("attn_pool: pos_embed (pool position embedding)")
    for name in ("q_norm", "k_norm"):
        if not _is_identity(getattr(pool, name)):
            unsupported.append(f"attn_pool.{name} (qk_norm)")
    if pool.pool != "token":
        unsupported.append(f"attn_pool: pool_type={pool.pool!r} ('token' only)")
    if pool.mlp is None or _is_identity(pool.proj) or pool.proj.out_features != d:
        unsupported.append("attn_pool: out_features differs from embed_dim (no proj/norm/mlp)")
        return None, []
    if int(pool.mlp.fc1.out_features) != mlp_dim:
        unsupported.append(
            f"attn_pool.mlp hidden width {pool.mlp.fc1.out_features} differs from the blocks' "
            f"mlp_dim {mlp_dim}"
        )
    if int(getattr(model, "num_prefix_tokens", 0)) and not getattr(
        model, "pool_include_prefix", False
    ):
        unsupported.append("global_pool='map' with register tokens (timm pools without them)")
    return _mlp_kind("attn_pool", pool.mlp, unsupported), [("attn_pool.norm", pool.norm)]


def _norm_eps(norms: list, unsupported: list[str]) -> set[float]:
    """The eps of every LayerNorm in `norms`; appends every norm that is not an affine LayerNorm."""
    import torch  # the timm route is the only one that needs torch modules

    eps = set()
    for where, norm in norms:
        if not isinstance(norm, torch.nn.LayerNorm):
            unsupported.append(f"{where}: norm_layer={timm_eva.module_name(norm)} (LayerNorm only)")
            continue
        eps.add(float(norm.eps))
        if norm.bias is None or norm.weight is None:
            unsupported.append(f"{where}: LayerNorm without affine weight or bias")
    return eps


def _inspect_vit(model, unsupported: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Spec fields and layout options of a timm VisionTransformer; appends what is unsupported."""
    _check_model_level(model, unsupported)
    registers = int(getattr(model, "num_reg_tokens", 0))
    no_embed_class = bool(getattr(model, "no_embed_class", False))
    norms = [("norm", model.norm)]
    pre_norm = not _is_identity(model.norm_pre)
    if pre_norm:
        norms.append(("norm_pre", model.norm_pre))
    kinds, layerscale, qkv_bias = set(), set(), set()
    for i, block in enumerate(model.blocks):
        kind, block_layerscale, block_norms = _check_block(i, block, unsupported)
        kinds |= {kind} - {None}
        layerscale |= block_layerscale
        norms += block_norms
        if (
            timm_eva.module_name(block) == "Block"
            and timm_eva.module_name(block.attn) == "Attention"
        ):
            qkv_bias.add(block.attn.qkv.bias is not None)
    map_pool = getattr(model, "global_pool", "token") == "map" and model.attn_pool is not None
    if map_pool:
        # The vitjax MAP head's MLP is the blocks' (same kind and hidden width).
        mlp_dim = int(getattr(getattr(model.blocks[0].mlp, "fc2", None), "in_features", 0))
        pool_kind, pool_norms = _check_map_pool(model, mlp_dim, unsupported)
        norms += pool_norms
        if pool_kind is not None and kinds and pool_kind not in kinds:
            unsupported.append(
                f"attn_pool.mlp activation {pool_kind!r} differs from the blocks' {sorted(kinds)}"
            )
    eps = _norm_eps(norms, unsupported)
    if len(eps) > 1:
        unsupported.append(f"LayerNorm eps differ between norms: {sorted(eps)}")
    if len(kinds) > 1:
        unsupported.append(f"MLP kinds differ between blocks: {sorted(kinds)}")
    if len(qkv_bias) > 1:
        unsupported.append("qkv_bias differs between blocks (all with a qkv bias or none)")
    if layerscale - {"LayerScale", "Identity"} or len(layerscale) > 1:
        unsupported.append(f"LayerScale modules {sorted(layerscale)} (all LayerScale or none)")
    if unsupported:
        return {}, {}
    block, embed = model.blocks[0], model.patch_embed
    grid = tuple(int(g) for g in embed.grid_size)
    pos_rows = model.pos_embed.shape[1]
    class_token = model.cls_token is not None
    if pos_rows != grid[0] * grid[1] + (1 if class_token and not no_embed_class else 0):
        unsupported.append(
            f"pos_embed rows {pos_rows} do not match the patch grid {grid} (+ class row)"
        )
    fields = dict(
        width=int(model.embed_dim),
        depth=len(model.blocks),
        num_heads=int(block.attn.num_heads),
        mlp_dim=int(block.mlp.fc2.in_features),
        native_grid=grid,
        num_registers=registers,
        layerscale="LayerScale" in layerscale,
        pre_norm=pre_norm,
        patch_bias=embed.proj.bias is not None,
        mlp=kinds.pop(),
        norm_eps=eps.pop(),
        qkv_bias="full" if qkv_bias.pop() else "none",
        class_token=class_token,
        global_pool="map" if map_pool else "cls",
    )
    options = {
        "class_token": class_token,
        "map_pool": map_pool,
        "no_embed_class": no_embed_class,
        "patch_bias": fields["patch_bias"],
        "pre_norm": pre_norm,
        "layerscale": fields["layerscale"],
    }
    return fields, options


def _preprocessing(pretrained: Mapping[str, Any], unsupported: list[str]) -> dict[str, Any]:
    """Preprocessing fields from timm's pretrained_cfg (timm's eval transform: resize the short side
    to floor(input / crop_pct), centre-crop input)."""
    out: dict[str, Any] = {}
    for key in ("mean", "std"):
        if key in pretrained:
            out[key] = tuple(float(v) for v in pretrained[key])
    size = pretrained.get("input_size")
    if size is not None:
        _, height, width = (int(v) for v in size)
        if height != width:
            unsupported.append(f"pretrained_cfg.input_size={list(size)} (square crops only)")
        crop_pct = float(pretrained.get("crop_pct", 0.875))
        out.update(crop=height, resize=int(math.floor(height / crop_pct)))
    interpolation = pretrained.get("interpolation", "bicubic")
    if interpolation not in families.INTERPOLATIONS:
        unsupported.append(f"pretrained_cfg.interpolation={interpolation!r}")
    else:
        out["interpolation"] = interpolation
    crop_mode = pretrained.get("crop_mode", "center")
    if crop_mode != "center":
        unsupported.append(f"pretrained_cfg.crop_mode={crop_mode!r} (centre crop only)")
    return out


def from_config(config: Mapping[str, Any], source: str) -> tuple[dict, dict, list[str]]:
    """(spec fields, layout options, unsupported options) of a timm Hub config.json.

    Raises:
      CheckpointError: the config lacks `architecture`, or timm cannot build it.
    """
    import timm  # optional: needed only to read a timm Hub config (pip install timm)
    import torch  # the timm route is the only one that needs torch modules

    if not isinstance(config, Mapping) or "architecture" not in config:
        raise CheckpointError(
            f"{source}: expected timm's Hub config.json with an 'architecture' entry (and "
            f"optionally 'model_args', 'pretrained_cfg'); got keys "
            f"{sorted(config) if isinstance(config, Mapping) else type(config).__name__}"
        )
    arch = str(config["architecture"])
    # The head's size matters only to build the model (its weights are ignored).
    model_args = {"num_classes": config.get("num_classes", 0), **(config.get("model_args") or {})}
    try:
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False, **model_args)
    except Exception as err:  # timm raises RuntimeError/TypeError/KeyError for bad names or args
        raise CheckpointError(
            f"{source}: timm cannot build architecture {arch!r} with model_args {model_args}: {err}"
        ) from err
    unsupported: list[str] = []
    kind = type(model).__name__
    fields: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if kind == "VisionTransformer":
        fields, options = _inspect_vit(model, unsupported)
    elif kind == "Eva":
        fields, options = timm_eva.inspect_eva(model, unsupported, _norm_eps)
    else:
        unsupported.append(f"model class {kind} (only timm VisionTransformer and Eva)")
    pretrained = dict(config.get("pretrained_cfg") or {})
    prep = _preprocessing(pretrained, unsupported)
    if unsupported:
        return {}, {}, unsupported
    fields["preprocessing"] = families.Preprocessing(**prep)
    tag = pretrained.get("tag")
    fields["name"] = f"timm_{arch}" + (f".{tag}" if tag else "")
    return fields, options, []


def _infer(tensors: Mapping[str, np.ndarray]) -> dict:
    # The native grid comes from the config's model (no_embed_class tables have no class row).
    return {"grid": None}


LAYOUT = register_layout(
    Layout(
        name="timm",
        block=BlockNames(prefix="blocks.{i}."),
        ignorable=(
            (r"head\..*", "classification head"),
            (r"head_drop\..*", "classification head"),
        ),
        rules=_rules,
        infer=_infer,
        config_file=CONFIG_FILE,
        from_config=from_config,
    )
)
