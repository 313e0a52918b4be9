"""ViT-B/16 forward throughput: vitjax's Flax model (jit) against timm's in PyTorch, same machine.

Full size (float32, batch 32, 224 x 224, all 12 blocks, final norm, as used for feature extraction):
  python benchmarks/bench_forward.py
Smoke run (batch 2, 2 blocks):
  python benchmarks/bench_forward.py --quick

For each implementation: images/s (best of --repeats after a compiling/warm-up call), ms per batch,
achieved GFLOP/s (35.2 GFLOP per 224 px image for the 12-block ViT-B/16, scaled by depth) as a
fraction of the machine's float32 matmul rate measured in the same run (the faster of numpy and
jax on a large square matmul), and agreement of the final-layer features (same random weights).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 blocks: a smoke run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_torch", action="store_true")
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

    module, params, spec = models.random_model("dino", "b", seed=0, depth=args.depth)
    size = args.image_size
    grid = (size // 16) ** 2
    # Per-image FLOPs scale ~linearly with depth and token count at these sizes.
    gflop = GFLOP_PER_IMAGE_B16_224 * args.depth / 12 * grid / 196
    raw = np.random.default_rng(0).integers(0, 256, (args.batch, size, size, 3), np.uint8)
    images = models.preprocess(spec, raw)

    forward = jax.jit(lambda p, x: module.apply({"params": p}, x, layers=(-1,), norm=True))
    jax.block_until_ready(forward(params, images))  # compile
    flax_s, flax_out = common.best_time(lambda: forward(params, images), args.repeats)
    rows = []

    def row(name: str, seconds: float, extra: str) -> dict:
        rate = args.batch * gflop / seconds
        return {
            "impl": name,
            "images/s": args.batch / seconds,
            "ms/batch": seconds * 1e3,
            "GFLOP/s": rate,
            "of matmul peak": rate / peak,
            "max |diff| vs flax": extra,
        }

    rows.append(row("flax jit (vitjax)", flax_s, "-"))

    if not args.skip_torch:
        import time

        import timm
        import torch

        model = timm.create_model(
            "vit_base_patch16_224", num_classes=0, depth=args.depth, img_size=size
        ).eval()
        model.load_state_dict(_timm_state_dict(params), strict=True)
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous()
        with torch.inference_mode():
            model.forward_features(x)  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                tokens = model.forward_features(x)
                best = min(best, time.perf_counter() - start)
        ours = np.concatenate(
            [
                np.asarray(flax_out["cls"][args.depth - 1])[:, None],
                np.asarray(flax_out["patch"][args.depth - 1]).reshape(args.batch, grid, -1),
            ],
            axis=1,
        )
        diff = float(np.abs(tokens.numpy() - ours).max())
        rows.append(row(f"torch {torch.__version__} timm", best, f"{diff:.2e}"))
        print(f"torch threads: {torch.get_num_threads()}")

    print(
        f"ViT-B/16 depth {args.depth}, float32, batch {args.batch}, {size}x{size}, "
        f"{gflop:.2f} GFLOP/image"
    )
    print(common.format_table(rows))


if __name__ == "__main__":
    main()
