"""ViT-B/16 forward throughput: vitjax's Flax model (jit) against timm's in PyTorch, same machine.

Three ViT-B/16 families in one run (--families): DINO (timm `vit_base_patch16_224`), DINOv3 (timm
`vit_base_patch16_dinov3`, an Eva with axial RoPE and 4 storage tokens) and SigLIP (timm
`vit_base_patch16_siglip_224` with the tanh GELU, no class token, MAP head).
Full size (float32, batch 32, 224 x 224, all 12 blocks, final norm, as used for feature extraction):
  python benchmarks/bench_forward.py
Smoke run (batch 2, 2 blocks):
  python benchmarks/bench_forward.py --quick

For each implementation: images/s (best of --repeats after a compiling/warm-up call), ms per batch,
achieved GFLOP/s (35.2 GFLOP per 224 px image for the 12-block ViT-B/16, scaled by depth) as a
fraction of the machine's float32 matmul rate measured in the same run (the faster of numpy and
jax on a large square matmul), and agreement of the final-layer features (same random weights). The GFLOP figure is ViT-B/16's
(DINOv3's 4 storage tokens and SigLIP's pooling head add under 3%).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

# Multiply-adds x 2 of one ViT-B/16 forward at 224 px (patch embed, 12 blocks incl. attention).
GFLOP_PER_IMAGE_B16_224 = 35.2


def _timm_state_dict(params: dict) -> dict:
    """vitjax ViT params -> timm `vit_base_patch16_224` state dict (standard key mapping)."""
    import torch

    from vitjax import models

    state = {}
    for key, value in models.flatten_params(params).items():
        value = np.array(value, np.float32)
        if key == "patch_embed/kernel":
            state["patch_embed.proj.weight"] = value.transpose(3, 2, 0, 1)
            continue
        if key == "patch_embed/bias":
            state["patch_embed.proj.bias"] = value
            continue
        if key in ("cls_token", "pos_embed"):
            state[key] = value
            continue
        parts = key.split("/")
        prefix = ""
        if parts[0].startswith("block_"):
            prefix, parts = f"blocks.{parts[0][len('block_') :]}.", parts[1:]
        module, leaf = ".".join(parts[:-1]), parts[-1]
        name = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
        state[f"{prefix}{module}.{name}"] = value.T if leaf == "kernel" else value
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def _dinov3_official_state(params: dict) -> dict:
    """vitjax DINOv3 params -> the official facebookresearch/dinov3 names (for timm's loader)."""
    import torch

    from vitjax import models

    state = {}
    for key, value in models.flatten_params(params).items():
        value = np.array(value, np.float32)
        parts = key.split("/")
        if key == "patch_embed/kernel":
            state["patch_embed.proj.weight"] = value.transpose(3, 2, 0, 1)
        elif key == "register_tokens":
            state["storage_tokens"] = value
        elif key in ("cls_token", "patch_embed/bias", "norm/scale", "norm/bias"):
            name = {"patch_embed/bias": "patch_embed.proj.bias", "norm/scale": "norm.weight"}
            state[name.get(key, key.replace("/", "."))] = value
        else:
            i, rest = parts[0][len("block_") :], parts[1:]
            if rest[-1] == "gamma":
                state[f"blocks.{i}.{rest[0]}.gamma"] = value
                continue
            module, leaf = ".".join(rest[:-1]), rest[-1]
            name = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
            state[f"blocks.{i}.{module}.{name}"] = value.T if leaf == "kernel" else value
            if module == "attn.qkv" and leaf == "bias":
                mask = np.ones_like(value)
                mask[value.size // 3 : 2 * value.size // 3] = 0
                state[f"blocks.{i}.attn.qkv.bias_mask"] = mask
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def _siglip_timm_state(params: dict) -> dict:
    """vitjax SigLIP params -> timm `vit_*_siglip_*` names (MAP head = `attn_pool`)."""
    import torch

    from vitjax import models

    state = {}
    for key, value in models.flatten_params(params).items():
        value = np.array(value, np.float32)
        if key == "patch_embed/kernel":
            state["patch_embed.proj.weight"] = value.transpose(3, 2, 0, 1)
            continue
        if key == "map_head/probe":
            state["attn_pool.latent"] = value
            continue
        parts = key.split("/")
        prefix = ""
        if parts[0].startswith("block_"):
            prefix, parts = f"blocks.{parts[0][len('block_') :]}.", parts[1:]
        elif parts[0] == "map_head":
            prefix, parts = "attn_pool.", parts[1:]
        elif parts[0] == "patch_embed":
            prefix, parts = "patch_embed.proj.", parts[1:]
        module, leaf = ".".join(parts[:-1]), parts[-1]
        name = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
        full = f"{prefix}{module}.{name}" if module else f"{prefix}{name}"
        state[full] = value.T if leaf == "kernel" else value
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def _timm_model(family: str, params: dict, depth: int, size: int):
    """The timm model of `family` holding vitjax's random weights."""
    import timm

    if family == "dino":
        model = timm.create_model("vit_base_patch16_224", num_classes=0, depth=depth, img_size=size)
        model.load_state_dict(_timm_state_dict(params), strict=True)
    elif family == "dinov3":
        import timm.models.eva as eva

        model = timm.create_model(
            "vit_base_patch16_dinov3_qkvb", num_classes=0, depth=depth, img_size=size
        )
        state = eva.checkpoint_filter_fn(_dinov3_official_state(params), model)
        model.load_state_dict(state, strict=True)
    else:
        model = timm.create_model(
            "vit_base_patch16_siglip_224",
            num_classes=0,
            depth=depth,
            img_size=size,
            act_layer="gelu_tanh",
        )
        model.load_state_dict(_siglip_timm_state(params), strict=True)
    return model.eval()


def _tokens(family: str, out: dict, depth: int) -> np.ndarray:
    """vitjax's final-norm tokens in timm's `forward_features` order."""
    patch = np.asarray(out["patch"][depth - 1])
    patch = patch.reshape(patch.shape[0], -1, patch.shape[-1])
    if family == "siglip":
        return patch
    prefix = [np.asarray(out["cls"][depth - 1])[:, None]]
    if family == "dinov3":
        prefix.append(np.asarray(out["registers"][depth - 1]))
    return np.concatenate([*prefix, patch], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 blocks: a smoke run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument(
        "--families", default="dino,dinov3,siglip", help="comma-separated: dino, dinov3, siglip"
    )
    args = parser.parse_args()
    if args.quick:
        args.batch, args.depth, args.repeats = 2, 2, 2

    import jax

    from vitjax import models

    print(common.machine_header())
    rates = common.matmul_gflops(1024 if args.quick else 2048)
    peak = max(rates.values())
    print(
        f"float32 matmul rate: numpy {rates['numpy']:.1f} GFLOP/s, jax {rates['jax']:.1f} GFLOP/s"
    )

    size = args.image_size
    grid = (size // 16) ** 2
    # Per-image FLOPs scale ~linearly with depth and token count at these sizes.
    gflop = GFLOP_PER_IMAGE_B16_224 * args.depth / 12 * grid / 196
    raw = np.random.default_rng(0).integers(0, 256, (args.batch, size, size, 3), np.uint8)
    rows = []

    def row(name: str, seconds: float, extra: str, speedup: str = "-") -> dict:
        rate = args.batch * gflop / seconds
        return {
            "impl": name,
            "images/s": args.batch / seconds,
            "ms/batch": seconds * 1e3,
            "GFLOP/s": rate,
            "of matmul peak": rate / peak,
            "max |diff| vs flax": extra,
            "flax / timm": speedup,
        }

    for family in args.families.split(","):
        module, params, spec = models.random_model(family, "b", seed=0, depth=args.depth)
        images = models.preprocess(spec, raw)
        forward = jax.jit(lambda p, x, m=module: m.apply({"params": p}, x, layers=(-1,), norm=True))
        jax.block_until_ready(forward(params, images))  # compile
        flax_s, flax_out = common.best_time(
            lambda f=forward, p=params, x=images: f(p, x), args.repeats
        )
        rows.append(row(f"{family} flax jit (vitjax)", flax_s, "-"))
        if args.skip_torch:
            continue
        import time

        import torch

        model = _timm_model(family, params, args.depth, size)
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous()
        with torch.inference_mode():
            model.forward_features(x)  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                tokens = model.forward_features(x)
                best = min(best, time.perf_counter() - start)
        diff = float(np.abs(tokens.numpy() - _tokens(family, flax_out, args.depth)).max())
        rows.append(
            row(
                f"{family} torch {torch.__version__} timm",
                best,
                f"{diff:.2e}",
                f"{best / flax_s:.2f}x",
            )
        )
    if not args.skip_torch:
        import torch

        print(f"torch threads: {torch.get_num_threads()}")

    print(
        f"ViT-B/16 depth {args.depth}, float32, batch {args.batch}, {size}x{size}, "
        f"{gflop:.2f} GFLOP/image"
    )
    print(common.format_table(rows))


if __name__ == "__main__":
    main()
