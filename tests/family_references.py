"""Reference CLIP models (open_clip, transformers) with random weights, and their forward passes.

Each `run_*` returns the official token order `[cls, patches]`: (per-block raw tokens list of
[B, T, D], final-norm tokens [B, T, D], the global output [B, E or D]) as numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from tests import torch_reference as tr

VOCAB = 64  # a tiny text tower: its keys must be ignored, its size does not matter


def build_open_clip(
    *, width: int, depth: int, patch: int, image_size, embed_dim: int, quick_gelu: bool, seed: int
):
    """A randomised open_clip `CLIP` (image tower as configured, tiny text tower)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(
        layers=depth, width=width, head_width=64, patch_size=patch, image_size=image_size
    )
    text = CLIPTextCfg(context_length=8, vocab_size=VOCAB, width=64, heads=2, layers=1)
    model = CLIP(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=quick_gelu)
    return tr.randomize_(model, seed)


def open_clip_at(model, image_size: tuple[int, int], *, quick_gelu: bool):
    """The same weights at another image size, position table resized by open_clip's own
    `resize_pos_embed` (the rule its `load_checkpoint` applies)."""
    from open_clip.model import resize_pos_embed

    visual = model.visual
    width = visual.conv1.out_channels
    other = build_open_clip(
        width=width,
        depth=len(visual.transformer.resblocks),
        patch=visual.patch_size[0],
        image_size=image_size,
        embed_dim=visual.proj.shape[1],
        quick_gelu=quick_gelu,
        seed=0,
    )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    resize_pos_embed(state, other)
    other.load_state_dict(state, strict=True)
    return other.eval()


@torch.no_grad()
def run_open_clip(model, images: np.ndarray):
    """open_clip image tower: block outputs, ln_post(tokens), ln_post(cls) @ proj."""
    visual = model.visual
    blocks = []
    hooks = [
        b.register_forward_hook(lambda m, i, o: blocks.append(o.detach().clone()))
        for b in visual.transformer.resblocks
    ]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    try:
        pooled = visual(x)
    finally:
        for h in hooks:
            h.remove()
    final = visual.ln_post(blocks[-1])
    return [b.numpy() for b in blocks], final.numpy(), pooled.numpy()


def build_hf_clip(*, width: int, depth: int, patch: int, embed_dim: int, seed: int):
    """A randomised transformers `CLIPVisionModelWithProjection` (OpenAI config: quick_gelu)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=depth,
        num_attention_heads=width // 64,
        image_size=224,
        patch_size=patch,
        projection_dim=embed_dim,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        attn_implementation="eager",
    )
    return tr.randomize_(CLIPVisionModelWithProjection(config), seed)


@torch.no_grad()
def run_hf_clip(model, images: np.ndarray):
    """transformers CLIP: hidden states after each layer, post_layernorm(tokens), image_embeds and
    pooler_output (post_layernorm(cls))."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    out = model(pixel_values=x, output_hidden_states=True, interpolate_pos_encoding=True)
    blocks = [h.numpy() for h in out.hidden_states[1:]]
    final = model.vision_model.post_layernorm(out.last_hidden_state).numpy()
    pooler = model.vision_model.post_layernorm(out.last_hidden_state[:, 0]).numpy()
    return blocks, final, out.image_embeds.numpy(), pooler


def save_timm_hub_pair(model, directory: str, model_args: dict) -> str:
    """timm's own Hub export (config.json + model.safetensors); returns the weights' path."""
    from timm.models import save_for_hf

    save_for_hf(model, directory, model_args=model_args, safe_serialization=True)
    return f"{directory}/model.safetensors"


@torch.no_grad()
def run_timm_vit(model, images: np.ndarray):
    """A timm VisionTransformer built with dynamic_img_size: block outputs, final-norm tokens
    (forward_features) and the pooled CLS token (forward_head before the classifier)."""
    blocks = []
    hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o)) for b in model.blocks]
    try:
        final = model.forward_features(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    finally:
        for h in hooks:
            h.remove()
    pooled = model.forward_head(final, pre_logits=True)
    return [b.numpy() for b in blocks], final.numpy(), pooled.numpy()
