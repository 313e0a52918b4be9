"""MAE pretraining step throughput: vitjax (`vitjax.pretrain`, jit) against the same step in PyTorch.

The model is MAE's ViT-B/16 with its 8-block, 512-wide decoder (the official pretraining model),
float32, 224 px, 75% of the patches masked, the normalised-pixel loss, AdamW. The PyTorch peer is
that step written with timm's ViT encoder and blocks (LayerNorm eps 1e-6, exact GELU), the same
random weights, images and masks; the first losses of the two are compared to show they compute
the same thing. One step = forward, backward and the AdamW update of every parameter.
  python benchmarks/bench_pretrain.py            # batch 16, 12 + 8 blocks
  python benchmarks/bench_pretrain.py --quick    # batch 2, 2 + 1 blocks: a smoke run

For each: images/s (best of --repeats steps after a compiling / warm-up step), seconds per step,
and achieved GFLOP/s (3 x the forward's multiply-adds x 2, counted from the shapes) as a fraction
of the machine's float32 matmul rate measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import bench_forward, common  # noqa: E402


def block_flops(tokens: int, width: int, mlp: int) -> float:
    """Multiply-adds x 2 of one pre-norm transformer block on `tokens` tokens."""
    dense = 2 * tokens * (4 * width * width + 2 * width * mlp)
    attention = 4 * tokens * tokens * width
    return dense + attention


def step_gflop(spec, num_patches: int, kept: int) -> float:
    """GFLOP of one image's training step: 3 x forward (encoder on the kept tokens, decoder on all)."""
    pixels = spec.patch_size * spec.patch_size * 3
    encoder = 2 * num_patches * pixels * spec.width
    encoder += spec.depth * block_flops(1 + kept, spec.width, spec.mlp_dim)
    decoder = 2 * (1 + kept) * spec.width * spec.decoder_width
    decoder += spec.decoder_depth * block_flops(
        1 + num_patches, spec.decoder_width, spec.decoder_mlp_dim
    )
    decoder += 2 * (1 + num_patches) * spec.decoder_width * pixels
    return 3 * (encoder + decoder) / 1e9


def torch_mae(spec, params: dict):
    """The PyTorch MAE (timm encoder + decoder of timm blocks) holding vitjax's weights."""
    import timm
    import torch
    from timm.models.vision_transformer import Block

    norm = functools.partial(torch.nn.LayerNorm, eps=spec.norm_eps)
    size = spec.native_grid[0] * spec.patch_size

    class MAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = timm.models.vision_transformer.VisionTransformer(
                img_size=size,
                patch_size=spec.patch_size,
                embed_dim=spec.width,
                depth=spec.depth,
                num_heads=spec.num_heads,
                mlp_ratio=spec.mlp_dim / spec.width,
                qkv_bias=True,
                norm_layer=norm,
                num_classes=0,
                global_pool="",
            )
            dd = spec.decoder_width
            self.decoder_embed = torch.nn.Linear(spec.width, dd)
            self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, dd))
            self.decoder_pos_embed = torch.nn.Parameter(
                torch.zeros(1, 1 + spec.native_grid[0] * spec.native_grid[1], dd),
                requires_grad=False,
            )
            self.decoder_blocks = torch.nn.ModuleList(
                Block(dd, spec.decoder_heads, spec.decoder_mlp_dim / dd, True, norm_layer=norm)
                for _ in range(spec.decoder_depth)
            )
            self.decoder_norm = norm(dd)
            self.decoder_pred = torch.nn.Linear(dd, spec.patch_size**2 * 3)

        def forward(self, images, keep, mask, target):
            enc = self.encoder
            x = enc.patch_embed(images) + enc.pos_embed[:, 1:]
            batch, _, width = x.shape
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, width))
            cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(batch, -1, -1)
            x = enc.norm(enc.blocks(torch.cat([cls, x], 1)))
            y = self.decoder_embed(x)
            dd = y.shape[-1]
            full = self.mask_token.expand(batch, mask.shape[1], dd)
            full = full.scatter(1, keep[..., None].expand(-1, -1, dd), y[:, 1:])
            y = torch.cat([y[:, :1], full], 1) + self.decoder_pos_embed
            for block in self.decoder_blocks:
                y = block(y)
            pred = self.decoder_pred(self.decoder_norm(y))[:, 1:]
            per_patch = ((pred - target) ** 2).mean(-1)
            return (per_patch * mask).sum() / mask.sum()

    model = MAE()
    state = {
        f"encoder.{k}": v for k, v in bench_forward._timm_state_dict(params["encoder"]).items()
    }
    decoder = dict(params["decoder"])
    for name in ("mask_token", "decoder_pos_embed"):
        state[name] = torch.from_numpy(np.array(decoder.pop(name), np.float32))
    for key, value in bench_forward._timm_state_dict(decoder).items():
        state[key.replace("decoder_block_", "decoder_blocks.")] = value
    model.load_state_dict(state, strict=True)
    model.encoder.pos_embed.requires_grad_(False)  # fixed sin-cos, as vitjax freezes it
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 + 1 blocks: a smoke run")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import jax
    import torch

    from vitjax import models
    from vitjax.pretrain import masking, train

    torch.set_num_threads(os.cpu_count() or 1)
    config = train.default_config()
    config.model.size, config.model.depth = "b", 0
    if args.quick:
        args.batch, args.repeats = 2, 2
        config.model.depth = 2
    config.train.batch_size = args.batch
    config.train.steps, config.train.warmup_steps = 1000, 0
    spec = train.model_spec(config)
    if args.quick:
        import dataclasses

        spec = dataclasses.replace(spec, decoder_depth=1)
    print(common.machine_header())
    rates = common.matmul_gflops(1024 if args.quick else 2048)
    peak = max(rates.values())
    print(f"float32 matmul rate: numpy {rates['numpy']:.1f}, jax {rates['jax']:.1f} GFLOP/s")

    size = spec.native_grid[0] * spec.patch_size
    num_patches = spec.native_grid[0] * spec.native_grid[1]
    kept = int(num_patches * (1 - float(config.mae.mask_ratio)))
    gflop = step_gflop(spec, num_patches, kept)
    images = np.random.default_rng(0).integers(0, 256, (args.batch, size, size, 3), np.uint8)

    state, optimizer, _ = train.init_state(config, spec)
    step = jax.jit(
        train._mae_step(
            config, spec, models.create_model(spec), models.create_decoder(spec), optimizer
        ),
        donate_argnums=0,
    )
    key = jax.random.key(0)
    keep, mask, _ = masking.random_masking(key, args.batch, num_patches, config.mae.mask_ratio)
    net = torch_mae(spec, jax.device_get(state["params"]))
    trainable = [p for p in net.parameters() if p.requires_grad]
    adamw = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    x = np.asarray(models.preprocess(spec, images))
    target = np.asarray(models.patchify(x, spec.patch_size))
    mean, var = target.mean(-1, keepdims=True), target.var(-1, keepdims=True, ddof=1)
    target = (target - mean) / np.sqrt(var + 1e-6)
    t_images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    t_keep = torch.from_numpy(np.asarray(keep, np.int64))
    t_mask = torch.from_numpy(np.asarray(mask, np.float32))
    t_target = torch.from_numpy(target)

    def torch_step():
        adamw.zero_grad(set_to_none=True)
        loss = net(t_images, t_keep, t_mask, t_target)
        loss.backward()
        adamw.step()
        return loss.item()

    rows = []
    state, first = step(state, images, key)
    jax_loss = float(np.asarray(first)[0])
    torch_loss = torch_step()
    print(f"first-step loss: vitjax {jax_loss:.6f}, PyTorch {torch_loss:.6f} (same weights, mask)")

    def jax_step():
        nonlocal state
        state, metrics = step(state, images, key)
        return np.asarray(metrics)

    for name, fn in (("vitjax (Flax, jit)", jax_step), ("PyTorch (timm blocks)", torch_step)):
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        rows.append(
            {
                "impl": name,
                "images/s": f"{args.batch / best:.2f}",
                "s/step": f"{best:.3f}",
                "GFLOP/s": f"{args.batch * gflop / best:.1f}",
                "of matmul": f"{args.batch * gflop / best / peak:.2f}",
            }
        )
    print(
        f"MAE {spec.name}: batch {args.batch}, {size} px, {kept}/{num_patches} patches kept, "
        f"decoder {spec.decoder_depth} x {spec.decoder_width}; {gflop:.1f} GFLOP per image-step"
    )
    print(common.format_table(rows))
    ratio = float(rows[0]["images/s"]) / float(rows[1]["images/s"])
    print(f"vitjax / PyTorch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
