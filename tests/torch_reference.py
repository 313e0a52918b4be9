"""PyTorch reference models with random weights, written in each family's official checkpoint layout.

Used by the converter and parity tests. Each family's reference is a PyPI model (timm, torchvision,
transformers) whose every parameter is randomised (default inits such as LayerNorm ones or
LayerScale 1e-5 would hide transposition and naming bugs), turned into the official file layout
(docs/checkpoints.md §9), and run to give per-block token outputs in the official token order
`[cls, registers, patches]`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("TIMM_FUSED_ATTN", "0")

import timm  # noqa: E402  (must see TIMM_FUSED_ATTN)

# Families whose stored position table is resampled with DINO's `scale_factor` (+0.1) rule.
OFFSET_FAMILIES = ("dino", "ibot", "dinov2")
TIMM_NAMES = {
    "dino": "vit_base_patch16_224",
    "ibot": "vit_base_patch16_224",
    "mae": "vit_base_patch16_224",
    "dinov2": "vit_base_patch14_dinov2",
    "dinov2_reg": "vit_base_patch14_reg4_dinov2",
    "scalemae": "vit_large_patch16_224",
}


# --------------------------------------------------------------------------------------------
# Randomisation.


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrites every parameter with seeded random values of a sensible scale; returns module."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            leaf = name.rsplit(".", 1)[-1]
            if re.search(r"(token|pos_embed|position_embeddings|pos_embedding)", name):
                value = 0.5 * noise
            elif "relative_position_bias_table" in name:
                value = 0.5 * noise
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                value = noise / math.sqrt(fan_in)
            elif leaf in ("gamma", "gamma_1", "gamma_2") or ".ls" in name:
                value = 0.5 + 0.3 * noise
            elif leaf == "weight":  # LayerNorm scale
                value = 1.0 + 0.2 * noise
            else:  # biases, q/v biases, LayerNorm shifts
                value = 0.1 * noise
            p.copy_(value.to(p.dtype))
    return module.eval()


def random_tensor(shape, seed: int, scale: float = 0.5) -> torch.Tensor:
    """Seeded normal tensor of the given shape."""
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(shape, generator=gen)


# --------------------------------------------------------------------------------------------
# Reference models.


def build_timm(
    family: str, depth: int, seed: int, timm_name: str | None = None, **kwargs
) -> torch.nn.Module:
    """A randomised timm model in the family's configuration (dynamic image size on).

    `timm_name` replaces the family's default timm model (e.g. the ViT-g of DINOv2).
    """
    if family == "simmim":
        model = timm.create_model(
            "beit_base_patch16_224",
            pretrained=False,
            num_classes=0,
            global_pool="",
            use_abs_pos_emb=False,
            use_rel_pos_bias=False,
            use_shared_rel_pos_bias=True,
            init_values=0.1,
            depth=depth,
            **kwargs,
        )
    else:
        model = timm.create_model(
            timm_name or TIMM_NAMES[family],
            pretrained=False,
            num_classes=0,
            depth=depth,
            dynamic_img_size=True,
            **kwargs,
        )
    return randomize_(model, seed)


def build_torchvision(depth: int, seed: int, width: int = 768, num_heads: int = 12):
    """A randomised torchvision ViT-B/16 layout (`vit_b_16` at reduced depth/width)."""
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        image_size=224,
        patch_size=16,
        num_layers=depth,
        num_heads=num_heads,
        hidden_dim=width,
        mlp_dim=4 * width,
    )
    return randomize_(model, seed)


def build_hf_mae(depth: int, decoder_depth: int, seed: int):
    """transformers ViTMAEForPreTraining with the official eps (1e-6) and random weights."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        num_hidden_layers=depth,
        decoder_num_hidden_layers=decoder_depth,
        layer_norm_eps=1e-6,
        mask_ratio=0.75,
        attn_implementation="eager",
    )
    return randomize_(ViTMAEForPreTraining(config), seed)


# --------------------------------------------------------------------------------------------
# Official layouts.


def official_state_dict(
    family: str, model: torch.nn.Module, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The model's weights under the family's official (released-file) names, flat.

    DINOv2 files carry `mask_token`; SimMIM gets `encoder.` plus its buffer index, mask token and
    decoder; DINOv2-reg converts timm's register/position storage back to the official one.
    """
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if family in ("dino", "ibot", "mae", "torchvision"):
        return sd
    if family == "dinov2":
        sd["mask_token"] = random_tensor((1, sd["cls_token"].shape[-1]), seed + 1)
        return sd
    if family == "dinov2_reg":
        width = sd["cls_token"].shape[-1]
        # timm folds pos[0] into cls and stores pos without the cls row. Choose a non-zero cls
        # row so that a model ignoring it would fail: official cls + pos0 == timm cls.
        pos0 = random_tensor((1, 1, width), seed + 2)
        out = {k: v for k, v in sd.items() if k not in ("cls_token", "reg_token", "pos_embed")}
        out["cls_token"] = sd["cls_token"] - pos0
        out["pos_embed"] = torch.cat([pos0, sd["pos_embed"]], dim=1)
        out["register_tokens"] = sd["reg_token"]
        out["mask_token"] = random_tensor((1, width), seed + 1)
        return out
    if family == "simmim":
        width = sd["cls_token"].shape[-1]
        out = {f"encoder.{k}": v for k, v in sd.items() if not k.endswith("k_bias")}
        index = model.rel_pos_bias.relative_position_index.detach().clone()
        out["encoder.rel_pos_bias.relative_position_index"] = index
        out["encoder.mask_token"] = random_tensor((1, 1, width), seed + 3)
        out["decoder.0.weight"] = random_tensor((16 * 16 * 3, width, 1, 1), seed + 4)
        out["decoder.0.bias"] = random_tensor((16 * 16 * 3,), seed + 5)
        return out
    if family == "scalemae":
        # The released file is the whole MaskedAutoencoderViT: decoder, FPN and FCN heads too.
        width = sd["cls_token"].shape[-1]
        out = dict(sd)
        extra = {
            "mask_token": (1, 1, 512),
            "mask_token_decoder": (1, 1, 512),
            "decoder_embed.weight": (512, width),
            "decoder_embed.bias": (512,),
            "decoder_pos_embed": (1, 197, 512),
            "decoder_blocks.0.norm1.weight": (512,),
            "decoder_blocks.0.attn.qkv.weight": (1536, 512),
            "decoder_norm.weight": (512,),
            "fpn.fpn1.0.weight": (512, 256, 2, 2),
            "fcn.conv.0.weight": (256, 256, 3, 3),
        }
        for i, (key, shape) in enumerate(extra.items()):
            out[key] = random_tensor(shape, seed + 10 + i)
        return out
    raise ValueError(f"no official layout for family {family!r}")


def swiglu_official_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's packed SwiGLU (`mlp.fc1` = [w1; w2], `mlp.fc2`) -> DINOv2's `mlp.w12`, `mlp.w3`.

    timm's GluMlp(gate_last=False) computes silu(first half) * second half, as DINOv2's
    SwiGLUFFNFused does with w12, so the tensors are the same and only the names change.
    """
    out = {}
    for key, value in sd.items():
        key = re.sub(r"\.mlp\.fc1\.", ".mlp.w12.", key)
        out[re.sub(r"\.mlp\.fc2\.", ".mlp.w3.", key)] = value
    return out


def hf_mae_to_official(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverts transformers' ViTMAE naming to the official MAE file (`models_mae.py`) names."""
    out: dict[str, torch.Tensor] = {}
    renames = {
        "vit.embeddings.cls_token": "cls_token",
        "vit.embeddings.position_embeddings": "pos_embed",
        "vit.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "vit.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "vit.layernorm.weight": "norm.weight",
        "vit.layernorm.bias": "norm.bias",
        "decoder.mask_token": "mask_token",
        "decoder.decoder_pos_embed": "decoder_pos_embed",
    }
    layer = re.compile(r"^(vit\.layers|decoder\.decoder_layers)\.(\d+)\.(.*)$")
    fused: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        if key in renames:
            out[renames[key]] = value
            continue
        if match := layer.match(key):
            stack, i, rest = match.groups()
            prefix = f"blocks.{i}." if stack == "vit.layers" else f"decoder_blocks.{i}."
            part = re.match(r"attention\.([qkv])_proj\.(weight|bias)$", rest)
            if part:
                fused.setdefault((prefix, part.group(2)), {})[part.group(1)] = value
                continue
            rest = (
                rest.replace("attention.o_proj", "attn.proj")
                .replace("layernorm_before", "norm1")
                .replace("layernorm_after", "norm2")
            )
            out[prefix + rest] = value
            continue
        if key.startswith("decoder."):
            out[key[len("decoder.") :]] = value  # decoder_embed, decoder_norm, decoder_pred
            continue
        raise KeyError(f"unmapped transformers ViTMAE key {key}")
    for (prefix, kind), parts in fused.items():
        out[f"{prefix}attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def torchvision_old_mlp_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames `mlp.0/mlp.3` to the pre-PR-6053 `mlp.linear_1/linear_2` of the released file."""
    out = {}
    for key, value in sd.items():
        key = re.sub(r"\.mlp\.0\.", ".mlp.linear_1.", key)
        key = re.sub(r"\.mlp\.3\.", ".mlp.linear_2.", key)
        out[key] = value
    return out


def chunk_blocks(sd: dict[str, torch.Tensor], chunk: int) -> dict[str, torch.Tensor]:
    """DINOv2 `block_chunks>0` naming: block i stored as `blocks.{i // chunk}.{i}`."""
    out = {}
    for key, value in sd.items():
        if match := re.match(r"^blocks\.(\d+)\.(.*)$", key):
            i = int(match.group(1))
            key = f"blocks.{i // chunk}.{i}.{match.group(2)}"
        out[key] = value
    return out


def dino_head(
    prefix: str, seed: int, width: int = 768, out_dim: int = 64
) -> dict[str, torch.Tensor]:
    """A small DINOHead state dict (mlp.0/2/4 + weight-normed last layer) under `prefix`."""
    shapes = {
        "mlp.0.weight": (32, width),
        "mlp.0.bias": (32,),
        "mlp.2.weight": (32, 32),
        "mlp.2.bias": (32,),
        "mlp.4.weight": (16, 32),
        "mlp.4.bias": (16,),
        "last_layer.weight_g": (out_dim, 1),
        "last_layer.weight_v": (out_dim, 16),
    }
    return {f"{prefix}{k}": random_tensor(s, seed + i) for i, (k, s) in enumerate(shapes.items())}


def training_args() -> argparse.Namespace:
    """The kind of `args` object DINO/MAE training checkpoints pickle."""
    return argparse.Namespace(arch="vit_base", patch_size=16, lr=5e-4, output_dir="/tmp/out")


def wrap(family: str, sd: dict[str, torch.Tensor], variant: str, seed: int = 0) -> dict:
    """Wraps an official flat state dict the way a given released/training file does.

    Variants: 'flat', 'model', 'state_dict', 'teacher_full' (DINO/iBOT training checkpoint),
    'student_full', 'dinov2_train' ({'model': teacher./student. prefixes, heads}),
    'dinov2_eval' ({'teacher': backbone. + heads}), 'module' (DDP prefix), 'backbone' prefix.
    """
    sd = dict(sd)
    if variant == "flat":
        return sd
    if variant in ("model", "state_dict"):
        return {variant: sd}
    if variant == "module":
        return {f"module.{k}": v for k, v in sd.items()}
    if variant == "backbone":
        return {f"backbone.{k}": v for k, v in sd.items()}
    if variant in ("teacher_full", "student_full"):
        teacher = {f"backbone.{k}": v for k, v in sd.items()} | dino_head("head.", seed)
        student = {f"module.backbone.{k}": v + 1.0 for k, v in sd.items()}
        student |= dino_head("module.head.", seed + 100)
        return {
            "teacher": teacher,
            "student": student,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
            "epoch": 100,
            "args": training_args(),
            "dino_loss": {"center": random_tensor((1, 64), seed)},
        }
    if variant == "dinov2_train":
        model = {f"teacher.backbone.{k}": v for k, v in sd.items()}
        model |= {f"student.backbone.{k}": v + 1.0 for k, v in sd.items()}
        model |= dino_head("teacher.dino_head.", seed) | dino_head("student.dino_head.", seed + 1)
        return {"model": model, "optimizer": {"state": {}, "param_groups": []}, "iteration": 10}
    if variant == "dinov2_eval":
        teacher = {f"backbone.{k}": v for k, v in sd.items()}
        teacher |= dino_head("dino_head.", seed) | dino_head("ibot_head.", seed + 1)
        return {"teacher": teacher}
    raise ValueError(f"unknown wrapper variant {variant!r}")


def save(obj, path: str) -> str:
    """torch.save to `path`; returns it."""
    torch.save(obj, path)
    return path


# --------------------------------------------------------------------------------------------
# Reference forward passes: per-block tokens [B, T, D] and the final-norm tokens.


def _grid_pos(pos: torch.Tensor, native: tuple[int, int], target: tuple[int, int], **kwargs):
    """Resamples a (1, 1 + gh*gw, D) table's patch rows to `target` with F.interpolate(**kwargs)."""
    dim = pos.shape[-1]
    patch = pos[:, 1:].reshape(1, native[0], native[1], dim).permute(0, 3, 1, 2)
    if tuple(target) != tuple(native):
        patch = F.interpolate(patch.float(), mode="bicubic", **kwargs)
        assert tuple(patch.shape[-2:]) == tuple(target), patch.shape
    patch = patch.permute(0, 2, 3, 1).reshape(1, target[0] * target[1], dim)
    return torch.cat([pos[:, :1], patch], dim=1)


def gsd_sincos(dim: int, size: tuple[int, int], ratio: float) -> torch.Tensor:
    """Scale-MAE's `get_2d_sincos_pos_embed_with_resolution`, written from the formula (§8).

    Patch (row i, col j): X = j r, Y = i r; [sin(X w), cos(X w), sin(Y w), cos(Y w)], D/4 each,
    w_k = 10000^(-k / (D/4)); cls row zero. Returns float32 (1, 1 + rows*cols, dim).
    """
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(size[0], dtype=torch.float32),
        torch.arange(size[1], dtype=torch.float32),
        indexing="ij",
    )
    x = (cols.reshape(-1) * ratio)[:, None] * omega[None]
    y = (rows.reshape(-1) * ratio)[:, None] * omega[None]
    table = torch.cat([torch.sin(x), torch.cos(x), torch.sin(y), torch.cos(y)], dim=1)
    return torch.cat([torch.zeros(1, dim), table], dim=0)[None]


def _timm_pos_fn(family: str, model, gsd_ratio: float) -> Callable | None:
    """Replacement for timm's `_pos_embed` reproducing the official rule of `family`, or None."""
    if family in ("dinov2_reg", "simmim"):
        return None  # timm's own (dynamic_img_size: size=, antialias) is the official rule
    native = tuple(model.patch_embed.grid_size)

    def pos_embed(x: torch.Tensor) -> torch.Tensor:
        batch, rows, cols, dim = x.shape
        if family == "scalemae":
            pos = gsd_sincos(dim, (rows, cols), gsd_ratio)
        elif family in OFFSET_FAMILIES:
            g = native[0]
            factor = ((rows + 0.1) / g, (cols + 0.1) / g)
            pos = _grid_pos(model.pos_embed, native, (rows, cols), scale_factor=factor)
        else:  # mae: MAE's interpolate_pos_embed (size=, no antialias)
            pos = _grid_pos(model.pos_embed, native, (rows, cols), size=(rows, cols))
        tokens = torch.cat([model.cls_token.expand(batch, -1, -1), x.reshape(batch, -1, dim)], 1)
        return tokens + pos

    return pos_embed


@torch.no_grad()
def run_timm(family: str, model, images: np.ndarray, gsd_ratio: float = 1.0):
    """Runs a timm reference; returns (per-block tokens [B, T, D] list, final-norm tokens)."""
    blocks: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o)) for b in model.blocks]
    pos_fn = _timm_pos_fn(family, model, gsd_ratio)
    if pos_fn is not None:
        model._pos_embed = pos_fn
    try:
        final = model.forward_features(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    finally:
        for h in hooks:
            h.remove()
        if pos_fn is not None:
            del model._pos_embed
    return [b.numpy() for b in blocks], final.numpy()


@torch.no_grad()
def run_torchvision(model, images: np.ndarray):
    """torchvision ViT; other grids resample like torchvision (bicubic, size=, align_corners)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    batch = x.shape[0]
    tokens = model.conv_proj(x)
    rows, cols = tokens.shape[-2:]
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat([model.class_token.expand(batch, -1, -1), tokens], dim=1)
    pos = model.encoder.pos_embedding
    pos = _grid_pos(pos, (14, 14), (rows, cols), size=(rows, cols), align_corners=True)
    x = tokens + pos
    blocks = []
    for layer in model.encoder.layers:
        x = layer(x)
        blocks.append(x.numpy())
    return blocks, model.encoder.ln(x).numpy()


@torch.no_grad()
def run_hf_mae(model, images: np.ndarray):
    """ViTMAEForPreTraining with noise = arange: keeps patches 0..K-1 in order.

    Returns:
      (encoder last hidden state [B, 1 + K, D] (normed), kept indices [B, K], logits [B, N, P*P*3]).
    """
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    batch = x.shape[0]
    num_patches = (x.shape[2] // 16) * (x.shape[3] // 16)
    noise = torch.arange(num_patches, dtype=torch.float32)[None].repeat(batch, 1)
    out = model(pixel_values=x, noise=noise)
    encoded = model.vit(pixel_values=x, noise=noise).last_hidden_state
    keep = int(num_patches * (1 - model.config.mask_ratio))
    kept = np.tile(np.arange(keep, dtype=np.int32), (batch, 1))
    return encoded.numpy(), kept, out.logits.numpy()
