"""Reference models for DINOv3 and SigLIP (1 and 2), with random weights, in every official layout.

DINOv3: transformers' `DINOv3ViTModel` is the reference; its weights are also written under the
official facebookresearch/dinov3 names (`hf_dinov3_to_official`), and timm's own loader for those
files (`timm.models.eva.checkpoint_filter_fn`) cross-checks that renaming.
SigLIP: transformers' `SiglipVisionModel` / `Siglip2VisionModel` and timm's `vit_*_siglip_*`; the
big_vision `.npz` layout is written from the HF weights and checked with `bigvision_forward`, a
numpy float64 transcription of big_vision's `models/vit.py` (ViT + MAPHead, `nn.gelu` tanh, LayerNorm
eps 1e-6) whose position table reaches other grids by `resample_posemb`'s
`scipy.ndimage.zoom(order=1)`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage
import torch
import transformers

from tests import torch_reference as tr

DINOV3_ROPE_BASE = 100.0


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """`torch_reference.randomize_` plus LayerScale (`lambda1`) and probe values of a useful scale."""
    tr.randomize_(model, seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lambda1"):
                p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("probe", "latent")):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    return model.eval()


# --------------------------------------------------------------------------------------------
# DINOv3.


def build_hf_dinov3(
    *,
    width: int,
    depth: int,
    heads: int,
    mlp_dim: int,
    gated: bool,
    qkv_bias: bool = True,
    seed: int = 0,
) -> torch.nn.Module:
    """A randomised `DINOv3ViTModel` (4 storage tokens, LayerScale, eps 1e-5, RoPE base 100)."""
    config = transformers.DINOv3ViTConfig(
        hidden_size=width,
        intermediate_size=mlp_dim,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        num_register_tokens=4,
        use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu",
        query_bias=qkv_bias,
        key_bias=False,
        value_bias=qkv_bias,
        layerscale_value=1.0,
        rope_theta=DINOV3_ROPE_BASE,
        image_size=224,
        patch_size=16,
    )
    return _randomize(transformers.DINOv3ViTModel(config), seed)


def hf_dinov3_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The HF safetensors layout: the model's own state dict."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def hf_dinov3_to_official(
    hf: dict[str, torch.Tensor], seed: int = 0, local_cls_norm: bool = False
) -> dict[str, torch.Tensor]:
    """The facebookresearch/dinov3 `.pth` names of an HF DINOv3 state dict.

    q/k/v become one `attn.qkv`; its bias gets a random (non-zero) k third and the `bias_mask`
    buffer that zeroes it (`LinearKMaskedBias`), so a converter ignoring the mask fails. The file
    also carries `rope_embed.periods`, `mask_token` [1, D] and, for the 7B and satellite ViT-L
    files, `local_cls_norm` (used only for local crops in training).
    """
    width = hf["embeddings.cls_token"].shape[-1]
    out = {
        "cls_token": hf["embeddings.cls_token"],
        "storage_tokens": hf["embeddings.register_tokens"],
        "mask_token": tr.random_tensor((1, width), seed + 1),
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.bias"],
        "norm.weight": hf["norm.weight"],
        "norm.bias": hf["norm.bias"],
    }
    blocks = sorted({int(k.split(".")[2]) for k in hf if k.startswith("model.layer.")})
    heads_dim = None
    for i in blocks:
        h, o = f"model.layer.{i}.", f"blocks.{i}."
        q, k, v = (hf[f"{h}attention.{n}_proj.weight"] for n in "qkv")
        out[o + "attn.qkv.weight"] = torch.cat([q, k, v])
        if f"{h}attention.q_proj.bias" in hf:
            k_bias = tr.random_tensor((width,), seed + 10 + i)
            qb, vb = hf[f"{h}attention.q_proj.bias"], hf[f"{h}attention.v_proj.bias"]
            out[o + "attn.qkv.bias"] = torch.cat([qb, k_bias, vb])
            mask = torch.ones(3 * width)
            mask[width : 2 * width] = 0
            out[o + "attn.qkv.bias_mask"] = mask
        out[o + "attn.proj.weight"] = hf[f"{h}attention.o_proj.weight"]
        out[o + "attn.proj.bias"] = hf[f"{h}attention.o_proj.bias"]
        for n in ("norm1", "norm2"):
            out[f"{o}{n}.weight"], out[f"{o}{n}.bias"] = hf[f"{h}{n}.weight"], hf[f"{h}{n}.bias"]
        out[o + "ls1.gamma"] = hf[f"{h}layer_scale1.lambda1"]
        out[o + "ls2.gamma"] = hf[f"{h}layer_scale2.lambda1"]
        if f"{h}mlp.gate_proj.weight" in hf:
            names = {"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"}
        else:
            names = {"fc1": "up_proj", "fc2": "down_proj"}
        for ours, theirs in names.items():
            for leaf in ("weight", "bias"):
                out[f"{o}mlp.{ours}.{leaf}"] = hf[f"{h}mlp.{theirs}.{leaf}"]
        heads_dim = q.shape[0]
    del heads_dim
    if local_cls_norm:
        out["local_cls_norm.weight"] = 1.0 + tr.random_tensor((width,), seed + 2, 0.1)
        out["local_cls_norm.bias"] = tr.random_tensor((width,), seed + 3, 0.1)
    return out


def official_periods(head_dim: int, base: float = DINOV3_ROPE_BASE) -> torch.Tensor:
    """`RopePositionEmbedding.periods` as the official code computes them (float32)."""
    quarter = head_dim // 4
    return base ** (2 * torch.arange(quarter, dtype=torch.float32) / (head_dim // 2))


def run_hf_dinov3(model, images: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-block raw tokens [B, 1 + 4 + N, D] and the final-norm tokens, images float [B, H, W, 3]."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    blocks = [h.numpy() for h in out.hidden_states[1:]]
    return blocks, out.last_hidden_state.numpy()


def timm_dinov3_from_official(official: dict[str, torch.Tensor], *, width, depth, heads, mlp_dim):
    """timm's Eva built like the official model and loaded through timm's own DINOv3 filter."""
    import timm
    import timm.models.eva as eva

    gated = "blocks.0.mlp.w1.weight" in official
    qkv_bias = "blocks.0.attn.qkv.bias" in official
    model = timm.create_model(
        "vit_small_plus_patch16_dinov3" if gated else "vit_small_patch16_dinov3",
        pretrained=False,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_dim / width,
        qkv_bias=qkv_bias,
        img_size=64,
    )
    state = {k: v for k, v in official.items() if not k.startswith("local_cls_norm")}
    model.load_state_dict(eva.checkpoint_filter_fn(state, model), strict=True)
    return model.eval()


# --------------------------------------------------------------------------------------------
# SigLIP.


def build_hf_siglip(
    *, width: int, depth: int, heads: int, mlp_dim: int, image_size: int, patch: int, seed: int = 0
):
    """A randomised `SiglipVisionModel` (fixed-resolution SigLIP and SigLIP 2)."""
    config = transformers.SiglipVisionConfig(
        hidden_size=width,
        intermediate_size=mlp_dim,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch,
    )
    return _randomize(transformers.SiglipVisionModel(config), seed)


def build_hf_siglip2(
    *, width: int, depth: int, heads: int, mlp_dim: int, num_patches: int, patch: int, seed: int = 0
):
    """A randomised `Siglip2VisionModel` (NaFlex: patches in, any aspect ratio)."""
    config = transformers.Siglip2VisionConfig(
        hidden_size=width,
        intermediate_size=mlp_dim,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        num_patches=num_patches,
        patch_size=patch,
    )
    return _randomize(transformers.Siglip2VisionModel(config), seed)


def hf_siglip_file_state(model, prefix: str = "vision_model.", text: bool = True) -> dict:
    """The released HF `SiglipModel` file: vision weights under `vision_model.`, plus a text tower."""
    out = {prefix + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if text:
        width = model.config.hidden_size
        out["text_model.embeddings.token_embedding.weight"] = tr.random_tensor((32, width), 7)
        out["text_model.final_layer_norm.weight"] = tr.random_tensor((width,), 8)
        out["logit_scale"] = torch.tensor([2.3])
        out["logit_bias"] = torch.tensor([-10.0])
    return out


def run_hf_siglip(model, images: np.ndarray, interpolate: bool = True):
    """(per-block raw tokens [B, N, D], final-norm tokens, pooled [B, D]) of `SiglipVisionModel`."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        out = model(x, output_hidden_states=True, interpolate_pos_encoding=interpolate)
    blocks = [h.numpy() for h in out.hidden_states[1:]]
    return blocks, out.last_hidden_state.numpy(), out.pooler_output.numpy()


def run_hf_siglip2(model, images: np.ndarray, patch: int):
    """As `run_hf_siglip` for `Siglip2VisionModel`: images are patchified as its processor does
    ((row, col, channel) order per patch) and every patch is valid."""
    b, height, width, c = images.shape
    h, w = height // patch, width // patch
    pixels = images.reshape(b, h, patch, w, patch, c).transpose(0, 1, 3, 2, 4, 5)
    pixels = np.ascontiguousarray(pixels.reshape(b, h * w, patch * patch * c))
    with torch.no_grad():
        out = model(
            torch.from_numpy(pixels),
            pixel_attention_mask=torch.ones(b, h * w, dtype=torch.int32),
            spatial_shapes=torch.tensor([[h, w]] * b),
            output_hidden_states=True,
        )
    blocks = [hs.numpy() for hs in out.hidden_states[1:]]
    return blocks, out.last_hidden_state.numpy(), out.pooler_output.numpy()


def build_timm_siglip(*, width: int, depth: int, heads: int, mlp_dim: int, image_size: int, seed=0):
    """A randomised timm `vit_base_patch16_siglip_*` (dynamic image size on)."""
    import timm

    model = timm.create_model(
        "vit_base_patch16_siglip_224",
        pretrained=False,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_dim / width,
        img_size=image_size,
        dynamic_img_size=True,
        num_classes=0,
    )
    return _randomize(model, seed)


def run_timm_siglip(model, images: np.ndarray):
    """(per-block raw tokens, final-norm tokens, pooled) of a timm SigLIP ViT."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    blocks = []
    hooks = [
        blk.register_forward_hook(lambda m, i, o: blocks.append(o.numpy())) for blk in model.blocks
    ]
    with torch.no_grad():
        tokens = model.forward_features(x)
        pooled = model.forward_head(tokens, pre_logits=True)
    for hook in hooks:
        hook.remove()
    return blocks, tokens.numpy(), pooled.numpy()


def hf_siglip_to_bigvision(hf: dict[str, torch.Tensor], heads: int, text: bool = True) -> dict:
    """big_vision two-towers `.npz` arrays (`params/img/...`) of an HF SigLIP vision state dict.

    Attention kernels take Flax DenseGeneral shapes ([D, H, hd], out [H, hd, D]); the conv
    kernel is HWIO. A text tower, `t` and `b` are added as the released files have them.
    """
    f = {k: v.numpy().astype(np.float32) for k, v in hf.items()}
    width = f["embeddings.patch_embedding.weight"].shape[0]
    hd = width // heads
    img = "params/img/"
    out = {
        img + "embedding/kernel": f["embeddings.patch_embedding.weight"].transpose(2, 3, 1, 0),
        img + "embedding/bias": f["embeddings.patch_embedding.bias"],
        img + "pos_embedding": f["embeddings.position_embedding.weight"][None],
        img + "Transformer/encoder_norm/scale": f["post_layernorm.weight"],
        img + "Transformer/encoder_norm/bias": f["post_layernorm.bias"],
    }

    def attention(prefix: str, q, k, v, qb, kb, vb, ow, ob):
        for name, w, b in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
            out[f"{prefix}/{name}/kernel"] = w.T.reshape(width, heads, hd)
            out[f"{prefix}/{name}/bias"] = b.reshape(heads, hd)
        out[f"{prefix}/out/kernel"] = ow.T.reshape(heads, hd, width)
        out[f"{prefix}/out/bias"] = ob

    def mlp(prefix: str, src: str):
        for j, n in enumerate(("fc1", "fc2")):
            out[f"{prefix}/Dense_{j}/kernel"] = f[f"{src}{n}.weight"].T
            out[f"{prefix}/Dense_{j}/bias"] = f[f"{src}{n}.bias"]

    blocks = sorted({int(k.split(".")[2]) for k in f if k.startswith("encoder.layers.")})
    for i in blocks:
        s, t = f"encoder.layers.{i}.", f"{img}Transformer/encoderblock_{i}/"
        for j, n in enumerate(("layer_norm1", "layer_norm2")):
            out[f"{t}LayerNorm_{j}/scale"] = f[f"{s}{n}.weight"]
            out[f"{t}LayerNorm_{j}/bias"] = f[f"{s}{n}.bias"]
        a = s + "self_attn."
        attention(
            t + "MultiHeadDotProductAttention_0",
            *(f[f"{a}{n}_proj.weight"] for n in "qkv"),
            *(f[f"{a}{n}_proj.bias"] for n in "qkv"),
            f[a + "out_proj.weight"],
            f[a + "out_proj.bias"],
        )
        mlp(t + "MlpBlock_0", s + "mlp.")
    h, t = "head.", img + "MAPHead_0/"
    out[t + "probe"] = f[h + "probe"]
    w, b = f[h + "attention.in_proj_weight"], f[h + "attention.in_proj_bias"]
    attention(
        t + "MultiHeadDotProductAttention_0",
        w[:width],
        w[width : 2 * width],
        w[2 * width :],
        b[:width],
        b[width : 2 * width],
        b[2 * width :],
        f[h + "attention.out_proj.weight"],
        f[h + "attention.out_proj.bias"],
    )
    out[t + "LayerNorm_0/scale"] = f[h + "layernorm.weight"]
    out[t + "LayerNorm_0/bias"] = f[h + "layernorm.bias"]
    mlp(t + "MlpBlock_0", h + "mlp.")
    if text:
        rng = np.random.default_rng(5)
        out["params/txt/Embed_0/embedding"] = rng.standard_normal((32, width)).astype(np.float32)
        out["params/txt/Encoder_0/encoder_norm/scale"] = np.ones(width, np.float32)
        out["params/t"] = np.asarray([2.3], np.float32)
        out["params/b"] = np.asarray([-10.0], np.float32)
    return out


def _layer_norm(x: np.ndarray, scale, bias, eps: float = 1e-6) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    # flax `nn.gelu` (approximate=True), big_vision's MlpBlock activation.
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _mhdpa(p: dict, prefix: str, query: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """flax MultiHeadDotProductAttention with DenseGeneral kernels, float64."""
    q = np.einsum("bqd,dhk->bqhk", query, p[prefix + "/query/kernel"]) + p[prefix + "/query/bias"]
    k = np.einsum("bnd,dhk->bnhk", tokens, p[prefix + "/key/kernel"]) + p[prefix + "/key/bias"]
    v = np.einsum("bnd,dhk->bnhk", tokens, p[prefix + "/value/kernel"]) + p[prefix + "/value/bias"]
    q = q / math.sqrt(q.shape[-1])
    logits = np.einsum("bqhk,bnhk->bhqn", q, k)
    logits = logits - logits.max(-1, keepdims=True)
    weights = np.exp(logits)
    weights = weights / weights.sum(-1, keepdims=True)
    mixed = np.einsum("bhqn,bnhk->bqhk", weights, v)
    return np.einsum("bqhk,hkd->bqd", mixed, p[prefix + "/out/kernel"]) + p[prefix + "/out/bias"]


def _mlp_block(p: dict, prefix: str, x: np.ndarray) -> np.ndarray:
    x = _gelu_tanh(x @ p[prefix + "/Dense_0/kernel"] + p[prefix + "/Dense_0/bias"])
    return x @ p[prefix + "/Dense_1/kernel"] + p[prefix + "/Dense_1/bias"]


def resample_posemb(old: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """big_vision `vit.resample_posemb`: the square table zoomed with scipy (order 1) to `grid`.

    big_vision computes one zoom factor from square grids; a rectangular target uses the same
    call with a factor per axis.
    """
    side = int(math.isqrt(old.shape[1]))
    table = old.reshape(side, side, -1)
    if (side, side) == tuple(grid):
        return old
    zoom = (grid[0] / side, grid[1] / side, 1)
    return scipy.ndimage.zoom(table, zoom, order=1).reshape(1, grid[0] * grid[1], -1)


def bigvision_forward(params: dict, images: np.ndarray, depth: int):
    """big_vision ViT (pool_type='map', no class token) on images float [B, H, W, 3], float64.

    Returns:
      (per-block tokens [B, N, D], encoder_norm tokens, MAPHead output [B, D]).
    """
    p = {
        k[len("params/img/") :]: np.asarray(v, np.float64)
        for k, v in params.items()
        if k.startswith("params/img/")
    }
    kernel = p["embedding/kernel"]
    patch = kernel.shape[0]
    b, height, width, c = images.shape
    h, w = height // patch, width // patch
    x = images.astype(np.float64).reshape(b, h, patch, w, patch, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, h * w, -1) @ kernel.reshape(-1, kernel.shape[-1]) + p["embedding/bias"]
    x = x + resample_posemb(p["pos_embedding"], (h, w))
    blocks = []
    for i in range(depth):
        t = f"Transformer/encoderblock_{i}/"
        y = _layer_norm(x, p[t + "LayerNorm_0/scale"], p[t + "LayerNorm_0/bias"])
        x = x + _mhdpa(p, t + "MultiHeadDotProductAttention_0", y, y)
        y = _layer_norm(x, p[t + "LayerNorm_1/scale"], p[t + "LayerNorm_1/bias"])
        x = x + _mlp_block(p, t + "MlpBlock_0", y)
        blocks.append(x)
    normed = _layer_norm(x, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"])
    probe = np.broadcast_to(p["MAPHead_0/probe"], (b, 1, normed.shape[-1]))
    pooled = _mhdpa(p, "MAPHead_0/MultiHeadDotProductAttention_0", probe, normed)
    y = _layer_norm(pooled, p["MAPHead_0/LayerNorm_0/scale"], p["MAPHead_0/LayerNorm_0/bias"])
    pooled = pooled + _mlp_block(p, "MAPHead_0/MlpBlock_0", y)
    return blocks, normed, pooled[:, 0]
