"""Robustness to photometric corruptions (Fig. 4): k-NN and linear mIoU on corrupted images.

The support set (and the linear probe) come from clean train tiles; the evaluation tiles are
corrupted at model-input resolution by blur, Gaussian noise and band-limited noise, four levels
each, and classified as in `fewshot`. Level 0 is the clean baseline.
"""

from __future__ import annotations

import functools

import ml_collections

from vitjax import experiments, plotting
from vitjax.experiments import common


def corruption_levels(cfg: ml_collections.ConfigDict) -> list[tuple[str, str, float, dict]]:
    """(label, corruption name, level, options) for every configured corruption level."""
    out = [("blur", cfg.blur_kind, float(level), {}) for level in cfg.blur_levels]
    out += [("noise", "noise", float(level), {}) for level in cfg.noise_levels]
    out += [
        (
            "freq_noise",
            "freq_noise",
            float(band),
            {"num_bands": cfg.num_bands, "sigma": cfg.freq_sigma},
        )
        for band in cfg.freq_bands
    ]
    return out


def corruption_groups(
    levels: list[tuple[str, str, float, dict]],
) -> list[tuple[str, str, dict, list[float]]]:
    """Consecutive entries of `corruption_levels` with the same corruption, merged:
    (label, corruption name, options, [levels]) in the original order."""
    out: list[tuple[str, str, dict, list[float]]] = []
    for label, name, level, options in levels:
        if out and out[-1][:3] == (label, name, options):
            out[-1][3].append(level)
        else:
            out.append((label, name, options, [level]))
    return out


def _knn(support, labels, queries, num_classes, knn_cfg, mesh=None):
    return common.knn_predict(support, labels, queries, num_classes, knn_cfg, mesh=mesh)


@experiments.register("robustness")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    data = common.load_segmentation(ctx.config)
    data_cfg = ctx.config.data
    method_names = common.methods(cfg.methods, "config.robustness.methods")
    groups = corruption_groups(corruption_levels(cfg))
    corrupted = {}
    for label, name, options, levels in ctx.progress(groups, len(groups), "corruptions"):
        # All levels of one corruption in one call: one compile for every blur kernel size.
        outs = common.corrupt_levels(data.eval.tiles, name, levels, options, ctx.seed)
        for level, tiles in zip(levels, outs):
            # Read-only: its content digest (part of the store key) is then computed once, not
            # once per model.
            tiles.flags.writeable = False
            corrupted[(label, level)] = tiles
    rows = []
    for model in ctx.models:
        grid = common.grid_of(model, data.train.tiles.shape[1:3])
        support = common.patch_features(ctx, model, data.train.tiles, data.split_key("train"))
        labels = data.train.patch_targets(grid, data_cfg.patch_label_rule)
        clean = common.patch_features(ctx, model, data.eval.tiles, data.split_key("eval"))
        predictors = {}
        if "knn" in method_names:
            predictors["knn"] = functools.partial(
                _knn,
                support,
                labels,
                num_classes=data.num_classes,
                knn_cfg=ctx.config.knn,
                mesh=ctx.mesh,
            )
        if "linear" in method_names:
            predictors["linear"] = common.fit_linear(
                support,
                labels,
                data.num_classes,
                ctx.config.probe,
                common.uses_batchnorm(model, ctx.config.probe),
                ctx.seed,
            )
        cases = [("clean", 0.0, clean)]
        for (label, level), tiles in corrupted.items():
            key = dict(data.split_key("eval"), corruption=label, level=level)
            if label == "freq_noise":
                key["sigma"] = cfg.freq_sigma
            cases.append((label, level, common.patch_features(ctx, model, tiles, key)))
        for label, level, queries in cases:
            for method, predictor in predictors.items():
                s = common.score(predictor(queries), data.eval, grid, data.num_classes, data_cfg)
                rows.append(
                    {
                        **common.model_row(model),
                        "corruption": label,
                        "level": level,
                        "method": method,
                        "miou": s["miou"],
                        "acc": s["acc"],
                    }
                )
    path = figure(ctx, cfg, rows, method_names)
    return experiments.Result(
        tables={"scores": rows},
        figures={"miou_vs_level": path},
        text={
            "summary": f"Robustness of patch classification on {ctx.config.dataset} to "
            "corruptions of the evaluation images (support set and probe from clean images).",
            "scores": f"mIoU per corruption and level: {cfg.blur_kind} kernel "
            f"{tuple(cfg.blur_levels)} px, Gaussian noise sigma {tuple(cfg.noise_levels)} "
            f"(0-255), band-limited noise (sigma {cfg.freq_sigma}) in bands "
            f"{tuple(cfg.freq_bands)} of {cfg.num_bands} (0 = lowest frequencies).",
            "miou_vs_level": plotting.caption(
                "Fig. 4: measured mIoU against the corruption level, from the clean images "
                "(x = 0) to the strongest level.",
                "that flatter curves mark more robust representations",
                ctx.models,
            ),
        },
        scalars={"datasets": [ctx.config.dataset]},
    )


def figure(ctx: experiments.Context, cfg: ml_collections.ConfigDict, rows, method_names) -> str:
    """Fig. 4: mIoU against the corruption level (with units), clean images at x = 0; its path."""
    path = ctx.figure_path("miou_vs_level")
    panels, xlabels = {}, {}
    for label in ("blur", "noise", "freq_noise"):
        for method in method_names:
            series = {}
            for model in ctx.models:
                pts = [
                    r
                    for r in rows
                    if r["model"] == model.name
                    and r["method"] == method
                    and r["corruption"] in (label, "clean")
                ]
                series[model.name] = (
                    [
                        level_x(label, r["level"]) if r["corruption"] != "clean" else 0.0
                        for r in pts
                    ],
                    [r["miou"] for r in pts],
                )
            panels[f"{label} ({method})"] = series
            xlabels[f"{label} ({method})"] = level_axis_label(label, cfg)
    return plotting.line_plot(
        path,
        panels,
        xlabel=xlabels,
        ylabel="mIoU (0-1)",
        keys=plotting.model_keys(ctx.models),
        mark=plotting.random_weights_mark(ctx.models),
    )


def level_x(label: str, level: float) -> float:
    """x position of a corruption level in Fig. 4: the level itself (blur kernel px, noise
    sigma), frequency bands one up so that the clean images sit at 0."""
    return float(level) + 1.0 if label == "freq_noise" else float(level)


def level_axis_label(label: str, cfg: ml_collections.ConfigDict) -> str:
    """The x-axis label with units of a corruption's panel in Fig. 4."""
    if label == "blur":
        kind = "box" if cfg.blur_kind == "box_blur" else "Gaussian"
        return f"{kind} blur kernel side (px; 0 = clean)"
    if label == "noise":
        return "Gaussian noise sigma (0-255 scale; 0 = clean)"
    return f"noise band + 1 (of {cfg.num_bands}, 1 = lowest freq.; 0 = clean)"


def defaults() -> ml_collections.ConfigDict:
    """The `robustness` section (Fig. 4): four levels per corruption of the evaluation images.

    blur = kernel in px, noise = Gaussian sigma on the 0-255 scale, freq = band index.
    """
    c = ml_collections.ConfigDict()
    c.blur_kind = "box_blur"  # box_blur (any size) | blur (Gaussian, odd sizes)
    c.blur_levels = (2, 4, 6, 8)
    c.noise_levels = (10.0, 20.0, 30.0, 40.0)
    c.freq_bands = (0, 1, 2, 3)
    c.num_bands = 4
    c.freq_sigma = 20.0
    c.methods = ("knn", "linear")
    return c
