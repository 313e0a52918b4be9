"""End-to-end extraction throughput: image files on disk -> features in the store.

Full size (ViT-B/16, 224 px, float32, CPU; the coordinator runs this one):
  python benchmarks/bench_pipeline.py
Smoke run:
  python benchmarks/bench_pipeline.py --quick

Three measurements of the same job (decode JPEG/PNG files, normalise, ViT-B/16 forward, keep the
final-normed patch tokens of the last block, write them to disk) in one run:
  * model only:  the jitted Flax forward on images already on the device (the ceiling);
  * pipeline:    `vitjax.extract.extract` from a FileImageSource into a FeatureStore (decoding on
                 host threads, uint8 -> device, normalisation in the jit, resumable writes);
  * torch:       a plain PyTorch DataLoader (worker processes decode with PIL) feeding timm's
                 `vit_base_patch16_224` with features written to a preallocated .npy memmap.
Each is timed after a warm-up (which also compiles), so the numbers are steady-state images/s.
The pipeline's loss against model-only is printed (target < 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402


def write_images(folder: Path, n: int, size: int, fmt: str, seed: int = 0) -> list[Path]:
    """Smooth random colour fields with some texture (JPEG-compressible like photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    paths = []
    for i in range(n):
        freq = rng.uniform(1, 6, size=(3, 2))
        phase = rng.uniform(0, 2 * np.pi, size=3)
        channels = [
            127 + 100 * np.sin(2 * np.pi * (freq[c, 0] * xx + freq[c, 1] * yy) + phase[c])
            for c in range(3)
        ]
        image = np.stack(channels, -1) + rng.normal(0, 12, (size, size, 3))
        image = np.clip(image, 0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.{'jpg' if fmt == 'jpeg' else 'png'}"
        Image.fromarray(image).save(path, quality=90)  # PNG ignores quality
        paths.append(path)
    return paths


def bench_model_only(module, params, spec, batch_size: int, size: int, num_batches: int):
    """images/s of the jitted forward on device-resident preprocessed batches."""
    import jax
    import jax.numpy as jnp

    from vitjax import models

    forward = jax.jit(
        lambda p, x: module.apply({"params": p}, models.preprocess(spec, x), layers=(-1,))["patch"][
            spec.depth - 1
        ]
    )
    images = jnp.asarray(
        np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    )
    params = jax.device_put(params)
    jax.block_until_ready(forward(params, images))  # compile + warm-up
    start = time.perf_counter()
    for _ in range(num_batches):
        out = forward(params, images)
    jax.block_until_ready(out)
    return num_batches * batch_size / (time.perf_counter() - start)


def bench_pipeline(module, params, spec, paths, batch_size: int, workers: int, root: Path):
    """images/s of extract() from files into a fresh store (after a warm-up on other images)."""
    from vitjax import extract
    from vitjax import store as store_lib

    store = store_lib.FeatureStore(root)
    common_args = dict(layers=(-1,), batch_size=batch_size, num_workers=workers, dtype="float32")
    # Warm-up: compiles the same batch shape (the executable is cached across calls).
    extract.extract(
        module,
        params,
        spec,
        extract.FileImageSource(paths[:batch_size]),
        store=store,
        key={"bench": "warmup"},
        **common_args,
    )
    start = time.perf_counter()
    feats = extract.extract(
        module,
        params,
        spec,
        extract.FileImageSource(paths),
        store=store,
        key={"bench": "pipeline", "n": len(paths)},
        **common_args,
    )
    elapsed = time.perf_counter() - start
    assert feats.patch[-1].shape[0] == len(paths)
    return len(paths) / elapsed


def bench_torch(paths, batch_size: int, workers: int, out_path: Path):
    """images/s of a DataLoader + timm ViT-B/16 loop writing patch tokens to a .npy memmap."""
    import timm
    import torch
    from PIL import Image

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as image:
                array = np.asarray(image.convert("RGB"))
            x = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0
            return (x - mean) / std

    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    torch.set_num_threads(os.cpu_count() or 1)

    def run(subset) -> float:
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(Files(), subset),
            batch_size=batch_size,
            num_workers=workers,
            shuffle=False,
        )
        out = np.lib.format.open_memmap(
            out_path, mode="w+", dtype=np.float32, shape=(len(subset), 196, 768)
        )
        start = time.perf_counter()
        row = 0
        with torch.inference_mode():
            for batch in loader:
                tokens = model.forward_features(batch)[:, 1:]  # final norm applied, cls dropped
                out[row : row + len(batch)] = tokens.numpy()
                row += len(batch)
        out.flush()
        del out
        return len(subset) / (time.perf_counter() - start)

    run(list(range(min(batch_size, len(paths)))))  # warm-up
    return run(list(range(len(paths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few images, for a smoke run")
    parser.add_argument("--num_images", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument("--json", type=str, default="", help="also write results here")
    args = parser.parse_args()
    if args.quick:
        args.num_images, args.batch_size = 16, 8

    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        paths = write_images(tmp, args.num_images, args.image_size, args.format)
        rows = []
        if not args.skip_torch:
            # Before JAX starts its thread pools: the DataLoader forks its workers.
            torch_rate = bench_torch(paths, args.batch_size, args.workers, tmp / "torch.npy")
            rows.append({"method": "torch DataLoader + timm", "images_per_s": torch_rate})

        from vitjax import models

        print(common.machine_header())
        module, params, spec = models.random_model("dino", "b", seed=0, patch_size=16)
        num_batches = max(1, args.num_images // args.batch_size)
        model_only = bench_model_only(
            module, params, spec, args.batch_size, args.image_size, num_batches
        )
        pipeline = bench_pipeline(
            module, params, spec, paths, args.batch_size, args.workers, tmp / "store"
        )
        rows.insert(0, {"method": "vitjax pipeline (files -> store)", "images_per_s": pipeline})
        rows.insert(0, {"method": "flax model only", "images_per_s": model_only})
        loss = 1.0 - pipeline / model_only
        print(
            f"ViT-B/16 {args.image_size}px float32, {args.num_images} {args.format} images, "
            f"batch {args.batch_size}, {args.workers} decode workers"
        )
        print(common.format_table(rows))
        print(f"pipeline loss vs model only: {100 * loss:.1f}% (target < 10%)")
        if args.json:
            Path(args.json).write_text(
                json.dumps({"args": vars(args), "rows": rows, "loss": loss}, indent=2)
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
