"""MAE reconstruction with zeroed features (Tab. 4): do the high-variance dims carry the pixels?

For every model with an MAE pixel decoder, the evaluation tiles of `config.dataset` are encoded
with no masking and with MAE's 75 % random masking (the same masks for every variant), the
encoder's output tokens (final LayerNorm) are passed to the decoder either whole, with the N
highest-variance feature dims set to zero, or with N random dims set to zero (the control), and
the reconstructions are scored. The variance is that of the final-LayerNorm patch tokens of the
TRAINING tiles of `config.dataset` (docs/datasets.md §1; the few-shot train split of
`common.load_segmentation`, the train scenes for `synthetic`), never of the tiles reconstructed:

* `mse`: MAE's loss, the mean squared error in the decoder's target space (ImageNet-normalised
  pixels; per-patch normalised with `norm_pix`), over all patches without masking and over the
  masked patches with masking;
* `psnr` and `ssim` (`metrics.psnr` / `metrics.ssim`, data range 255, the mean over images) of the
  reconstructed image on the 0-255 scale, where with masking the visible patches are the original
  pixels (`paste_visible`, as MAE's visualisation) and the masked ones the decoder's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vitjax import errors, experiments, metrics, models, plotting
from vitjax.experiments import common

NORM_PIX_EPS = 1e-6  # MAE's norm_pix_loss: (x - mean) / sqrt(var + 1e-6)


def keep_indices(num_images: int, num_patches: int, mask_ratio: float, rng) -> np.ndarray:
    """Patches kept by MAE's random masking: int32 [B, K], K = int(N * (1 - ratio)), sorted.

    Ratio 0 keeps every patch in order (no masking).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise errors.ConfigError(
            f"config.mae_reconstruction.mask_ratios: {mask_ratio} not in [0, 1)"
        )
    keep = int(num_patches * (1.0 - mask_ratio))
    if keep == num_patches:
        return np.tile(np.arange(num_patches, dtype=np.int32), (num_images, 1))
    return np.sort(
        np.stack([rng.permutation(num_patches)[:keep] for _ in range(num_images)]), axis=1
    ).astype(np.int32)


def decoder_targets(spec: Any, images: np.ndarray, norm_pix: bool) -> np.ndarray:
    """What the decoder predicts: float32 [B, N, P*P*3] normalised pixels of uint8 [B, H, W, 3]."""
    target = np.asarray(models.patchify(models.preprocess(spec, images), spec.patch_size))
    if norm_pix:
        mean = target.mean(axis=-1, keepdims=True)
        var = target.var(axis=-1, keepdims=True, ddof=1)
        target = (target - mean) / np.sqrt(var + NORM_PIX_EPS)
    return target.astype(np.float32)


def prediction_pixels(
    spec: Any, pred: np.ndarray, images: np.ndarray, norm_pix: bool
) -> np.ndarray:
    """Decoder predictions -> float32 [B, N, P*P*3] pixels on the 0-255 scale (unclipped).

    With `norm_pix` the per-patch mean and variance come from the original image's patches (as
    MAE's visualisation of norm-pix models does).
    """
    pred = np.asarray(pred, np.float64)
    if norm_pix:
        normed = np.asarray(models.patchify(models.preprocess(spec, images), spec.patch_size))
        mean = normed.mean(axis=-1, keepdims=True)
        var = normed.var(axis=-1, keepdims=True, ddof=1)
        pred = pred * np.sqrt(var + NORM_PIX_EPS) + mean
    mean_rgb = np.asarray(spec.preprocessing.mean, np.float64)
    std_rgb = np.asarray(spec.preprocessing.std, np.float64)
    batch, num, length = pred.shape
    pixels = (pred.reshape(batch, num, length // 3, 3) * std_rgb + mean_rgb) * 255.0
    return pixels.reshape(batch, num, length).astype(np.float32)


def reconstruction_scores(originals: np.ndarray, reconstructions: np.ndarray) -> dict[str, float]:
    """Mean per-image PSNR and SSIM (data range 255) and the pixel MSE of two image batches.

    Args:
      originals, reconstructions: [B, H, W, 3] on the 0-255 scale (reconstructions are clipped
        to [0, 255] first).

    Returns:
      {'psnr': dB (inf if every pair is identical), 'ssim': in [-1, 1], 'pixel_mse': 0-255^2}.
    """
    originals = np.asarray(originals, np.float64)
    recon = np.clip(np.asarray(reconstructions, np.float64), 0.0, 255.0)
    if originals.shape != recon.shape or originals.ndim != 4:
        raise errors.VitjaxError(
            f"reconstruction_scores: expected two [B, H, W, 3] batches, got {originals.shape} "
            f"and {recon.shape}"
        )
    psnr = np.asarray(metrics.psnr(originals, recon, 255.0, axis=(1, 2, 3)), np.float64)
    ssim = [metrics.ssim(a, b, 255.0, channel_axis=-1) for a, b in zip(originals, recon)]
    return {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "pixel_mse": float(metrics.mse(originals, recon)),
    }


def _forward(model: experiments.ModelHandle):
    """jit(encoder -> zero some dims -> decoder): (images float, keep [B, K], scale [D]) -> pred."""
    decoder = models.create_decoder(model.spec)
    encoder = model.module

    @jax.jit
    def forward(params, dec_params, images, keep, scale, grid_probe):
        tokens = encoder.apply({"params": params}, images, keep_indices=keep)["tokens"]
        tokens = models.decoder_inputs(tokens, model.spec.class_token, model.spec.num_registers)
        tokens = tokens * scale  # zeroes the chosen dims of every token
        grid = grid_probe.shape
        return decoder.apply({"params": dec_params}, tokens, keep_indices=keep, grid=grid)

    return forward


def reconstruct(
    model: experiments.ModelHandle,
    images: np.ndarray,
    keep: np.ndarray,
    zeroed: np.ndarray | None,
    batch_size: int = 32,
    forward: Any = None,
) -> np.ndarray:
    """Decoder predictions of uint8 [B, H, W, 3] images: float32 [B, N, P*P*3].

    Args:
      model: a model whose params hold "decoder".
      images: uint8 [B, H, W, 3], sides multiples of the patch size.
      keep: int32 [B, K] visible patches (all N for no masking).
      zeroed: feature dims set to zero in every encoder output token, or None.
      batch_size: images per compiled call (the last batch is padded).
      forward: a compiled `_forward(model)` to reuse (compiled here if None).
    """
    spec = model.spec
    params = {k: v for k, v in model.params.items() if k != "decoder"}
    forward = forward or _forward(model)
    grid = (images.shape[1] // spec.patch_size, images.shape[2] // spec.patch_size)
    grid_probe = jnp.zeros(grid)
    scale = np.ones(spec.width, np.float32)
    if zeroed is not None:
        scale[np.asarray(zeroed, np.int64)] = 0.0
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        batch_keep = keep[start : start + batch_size]
        pad = batch_size - len(batch)
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
            batch_keep = np.concatenate([batch_keep, np.repeat(batch_keep[-1:], pad, axis=0)])
        pred = forward(
            params,
            model.params["decoder"],
            models.preprocess(spec, batch),
            jnp.asarray(batch_keep),
            jnp.asarray(scale),
            grid_probe,
        )
        out.append(np.asarray(pred)[: batch_size - pad])
    return np.concatenate(out)


def score_case(
    spec: Any,
    images: np.ndarray,
    pred: np.ndarray,
    keep: np.ndarray,
    norm_pix: bool,
    paste_visible: bool,
) -> dict[str, float]:
    """mse (target space, masked patches or all), psnr and ssim of one reconstruction case."""
    num_patches = pred.shape[1]
    masked = np.ones((len(images), num_patches), bool)
    np.put_along_axis(masked, keep.astype(np.int64), False, axis=1)
    scored = masked if masked.any() else np.ones_like(masked)
    error = ((pred - decoder_targets(spec, images, norm_pix)) ** 2).mean(axis=-1)
    mse = float(error[scored].mean())
    pixels = prediction_pixels(spec, pred, images, norm_pix)
    if paste_visible:
        # Only images with masked patches get their visible patches back: without masking the
        # whole image is the decoder's.
        original = np.asarray(models.patchify(images.astype(np.float32), spec.patch_size))
        decoded = masked | ~masked.any(axis=1, keepdims=True)
        pixels = np.where(decoded[..., None], pixels, original)
    grid = (images.shape[1] // spec.patch_size, images.shape[2] // spec.patch_size)
    recon = np.asarray(models.unpatchify(pixels, spec.patch_size, grid))
    return {"mse": mse, **reconstruction_scores(images, recon)}


def _check(cfg: ml_collections.ConfigDict) -> None:
    common.require_fields(
        cfg,
        "mae_reconstruction",
        defaults().keys(),
        "vitjax.experiments.mae_reconstruction.defaults()",
    )


@experiments.register("mae_reconstruction")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    _check(cfg)
    decoders = [m for m in ctx.models if m.spec.has_decoder and "decoder" in m.params]
    rows: list[dict[str, Any]] = []
    images = None
    if decoders:
        data = common.load_segmentation(ctx.config)
        images = data.eval.tiles
        if cfg.num_images > 0:
            images = images[: cfg.num_images]
        if not len(images):
            raise errors.DatasetError(
                f"mae_reconstruction: no evaluation tiles in {data.name} to reconstruct "
                "(check config.data and config.mae_reconstruction.num_images)"
            )
        ctx.log(f"{len(images)} tiles of {images.shape[1]}x{images.shape[2]} from {data.name}")
    n = cfg.zeroed
    zeroed_dims = {}
    for model in decoders:
        spec = model.spec
        grid = common.grid_of(model, images.shape[1:3])
        num_patches = grid[0] * grid[1]
        variants = [("full", None)]
        if n >= spec.width:
            ctx.warn(
                f"config.mae_reconstruction.zeroed: {n} not run for {model.name}: at or above its "
                f"feature width {spec.width}"
            )
        if 0 < n < spec.width:
            order = train_variance_order(ctx, model, data)
            rng = ctx.rng(model.name, "random_dims")
            variants += [
                (f"top{n}_zeroed", order[:n]),
                (f"random{n}_zeroed", np.sort(rng.choice(spec.width, n, replace=False))),
            ]
            zeroed_dims[model.name] = dict(variants[1:])
        forward = _forward(model)
        for ratio in cfg.mask_ratios:
            keep = keep_indices(len(images), num_patches, float(ratio), ctx.rng("mask", ratio))
            for label, dims in variants:
                pred = reconstruct(model, images, keep, dims, cfg.batch_size, forward)
                scores = score_case(spec, images, pred, keep, cfg.norm_pix, cfg.paste_visible)
                rows.append(
                    {
                        **common.model_row(model),
                        "mask_ratio": float(ratio),
                        "features": label,
                        **scores,
                    }
                )
                ctx.log(f"{model.name} mask {ratio} {label}: psnr {scores['psnr']:.2f}")
    result = _result(ctx, cfg, rows, len(decoders), 0 if images is None else len(images))
    result.scalars["zeroed_dims"] = zeroed_dims
    return result


def train_variance_order(
    ctx: experiments.Context, model: experiments.ModelHandle, data: common.SegData
) -> np.ndarray:
    """Feature dims by variance over the final-LayerNorm patch tokens of the train tiles of
    `data`, highest first: int64 [D]."""
    depth = int(model.spec.depth)
    layers = ctx.config.extract.layers
    # The run's extraction layers when they hold the last block, so that the train features are
    # the ones the other experiments already stored.
    if depth - 1 not in {v + depth if v < 0 else v for v in layers}:
        layers = (-1,)
    features = common.patch_features(
        ctx, model, data.train.tiles, data.split_key("train"), layer=-1, layers=layers
    )
    return common.variance_order(features)


def _result(ctx, cfg, rows, num_models: int, num_images: int) -> experiments.Result:
    figures = {}
    if rows:
        panels: dict[str, dict] = {"mse (target space)": {}, "PSNR (dB)": {}, "SSIM": {}}
        families = {m.name: m.spec.family for m in ctx.models}
        keys = {}
        for r in rows:
            label = f"{r['model']} {r['features']}"
            keys[label] = (families.get(r["model"], r["model"]), r["model"], r["features"])
            for panel, column in zip(panels, ("mse", "psnr", "ssim")):
                xs, ys = panels[panel].setdefault(label, ([], []))
                xs.append(r["mask_ratio"])
                ys.append(r[column])
        path = ctx.figure_path("scores")
        plotting.line_plot(
            path,
            panels,
            xlabel="mask ratio (fraction of patches masked)",
            ylabel="score (unit in panel title)",
            keys=keys,
            mark=plotting.random_weights_mark(ctx.models),
        )
        figures["scores"] = path
    none = "" if num_models else " No model has an MAE decoder (an `mae` model converted with "
    none += "" if num_models else "its decoder is needed), so nothing was reconstructed."
    return experiments.Result(
        tables={"reconstruction": rows},
        figures=figures,
        text={
            "summary": f"MAE decoder reconstructions of {num_images} evaluation tiles of "
            f"{ctx.config.dataset} with all features, the top-{cfg.zeroed} variance dims "
            f"zeroed, or {cfg.zeroed} random dims zeroed.{none}",
            "reconstruction": "mse: MAE's loss in the decoder's target space (masked patches "
            "when masking); psnr/ssim: the reconstructed image against the original (0-255, "
            "visible patches pasted back when masking), mean over images.",
            "scores": plotting.caption(
                "Tab. 4: measured reconstruction scores per mask ratio and feature variant "
                "(line style).",
                None,
                ctx.models,
            ),
        },
        scalars={"datasets": [ctx.config.dataset]},
    )


def defaults() -> ml_collections.ConfigDict:
    """The `mae_reconstruction` section (Tab. 4)."""
    s = ml_collections.ConfigDict()
    s.num_images = 0  # evaluation tiles of config.dataset used (0 = all)
    s.mask_ratios = (0.0, 0.75)  # no masking, and MAE's pretraining ratio
    s.zeroed = 200  # top-variance dims zeroed, and as many random dims (the control)
    s.norm_pix = False  # decoder predicts per-patch normalised pixels (the `_full` checkpoint)
    s.paste_visible = True  # with masking, visible patches of the image are the original pixels
    s.batch_size = 32
    return s
