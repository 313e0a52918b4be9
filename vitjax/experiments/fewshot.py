"""Few-shot patch classification (Fig. 2, Tab. 2): k-NN and linear probe over train-set sizes.

For each few-shot size (images per city, or per class for ADE20K) and each model, the patch tokens
of the train tiles are the support set; every evaluation patch is classified by its nearest
neighbour (top-10 by dot product, 1-NN label) and by a linear softmax probe, and scored by mIoU and
pixel accuracy. Tab. 2 is the row at `cfg.table_shots`, beside the paper's numbers when the models
are the paper's real ViT-B checkpoints on Cityscapes with its protocol.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from vitjax import errors, experiments, paper_numbers, plotting
from vitjax.data import registry
from vitjax.experiments import common


@experiments.register("fewshot")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    data_cfg = ctx.config.data
    method_names = common.methods(cfg.methods, "config.fewshot.methods")
    rows = []
    for shots in cfg.shots:
        data = common.load_segmentation(ctx.config, per_group=int(shots))
        for model in ctx.models:
            grid = common.grid_of(model, data.train.tiles.shape[1:3])
            support = common.patch_features(ctx, model, data.train.tiles, data.split_key("train"))
            queries = common.patch_features(ctx, model, data.eval.tiles, data.split_key("eval"))
            labels = data.train.patch_targets(grid, data_cfg.patch_label_rule)
            _check_sets(data, labels, int(shots))
            for method in method_names:
                pred = common.predict(
                    method, ctx, model, support, labels, queries, data.num_classes
                )
                s = common.score(pred, data.eval, grid, data.num_classes, data_cfg)
                rows.append(
                    {
                        **common.model_row(model),
                        "shots": int(shots),
                        "train_images": data.train.num_images,
                        "eval_images": data.eval.num_images,
                        "method": method,
                        "miou": s["miou"],
                        "acc": s["acc"],
                    }
                )
                ctx.log(f"{model.name} shots={shots} {method}: mIoU {s['miou']:.3f}")

    table = tab2(ctx, rows, cfg.table_shots, method_names)
    path = ctx.figure_path("miou_vs_shots")
    panels = {
        f"{method} mIoU": {
            m.name: (
                [r["shots"] for r in rows if r["model"] == m.name and r["method"] == method],
                [r["miou"] for r in rows if r["model"] == m.name and r["method"] == method],
            )
            for m in ctx.models
        }
        for method in method_names
    }
    unit = registry.get_dataset(ctx.config.dataset, registry.SEGMENTATION).group_unit
    # knn.k takes no part under the 1nn rule: name only what acts.
    knn_cfg = ctx.config.knn
    knn_rule = "1nn" if knn_cfg.rule == "1nn" else f"k={knn_cfg.k}, {knn_cfg.rule}"
    plotting.line_plot(
        path,
        panels,
        xlabel=f"train images per {unit}",
        ylabel="mIoU (0-1)",
        keys=plotting.model_keys(ctx.models),
        integer_x=True,
        mark=plotting.random_weights_mark(ctx.models),
    )
    return experiments.Result(
        tables={"scores": rows, "tab2": table},
        figures={"miou_vs_shots": path},
        text={
            "summary": f"Few-shot patch classification on {ctx.config.dataset}: frozen patch "
            f"tokens, {data_cfg.score_level}-level scores on the evaluation images.",
            "scores": f"mIoU and accuracy of k-NN ({knn_rule}, "
            f"{ctx.config.knn.metric}) and the linear probe for every few-shot size "
            f"(train images per {unit}).",
            "tab2": f"Tab. 2: mIoU at {cfg.table_shots} train images per {unit}. The paper's "
            "value (`*_paper`) is shown only where the run repeats its setting; `*_vs_paper` "
            "says so, or which fields differ (data, image lists, evaluation images, patch "
            "labels, k-NN rule, layer, tiling, backbone, checkpoint).",
            "miou_vs_shots": plotting.caption(
                f"Fig. 2: measured mIoU of each model against the number of train images per "
                f"{unit}.",
                "that mIoU grows with the number of train images and that the gap between "
                "models reflects how linearly separable and how local their patch tokens are",
                ctx.models,
            ),
        },
        scalars={"num_classes": data.num_classes, "datasets": [ctx.config.dataset]},
    )


def _check_sets(data: common.SegData, labels: np.ndarray, shots: int) -> None:
    """Raises when the support set (labelled train patches) or the evaluation set is empty."""
    if not len(data.eval.tiles):
        raise errors.DatasetError(
            f"fewshot: the evaluation set of {data.name} is empty (config.data.eval_per_group)"
        )
    if not np.any(np.asarray(labels) != common.IGNORE):
        raise errors.DatasetError(
            f"fewshot: shots={shots}: none of the {data.train.num_images} train images of "
            f"{data.name} has a labelled patch (every patch is ignore/void under "
            "config.data.patch_label_rule), so the k-NN support set is empty"
        )


def tab2(ctx: experiments.Context, rows, shots: int, method_names) -> list[dict]:
    """One row per model at `shots`: measured mIoU per method, and the paper's when comparable.

    Where the paper reports the model's family, `<method>_vs_paper` says whether the run repeats
    the paper's setting (`paper_numbers.paper_comparison`: data, few-shot lists, patch labels,
    k-NN rule, layer, tiling, backbone and checkpoint) or which fields differ; the paper's number
    (`<method>_paper`) is shown only when it does.
    """
    out = []
    for model in ctx.models:
        row = common.model_row(model)
        info = model.describe()
        for method in method_names:
            match = [
                r
                for r in rows
                if r["model"] == model.name and r["shots"] == shots and r["method"] == method
            ]
            row[f"{method}_miou"] = match[0]["miou"] if match else None
            paper = paper_numbers.cityscapes_tab2(
                model.spec.family, paper_numbers.PAPER_SIZE, method
            )
            if paper is None or not match:
                continue
            protocol = paper_numbers.run_protocol(
                ctx.config,
                train_per_group=shots,
                n_train_images=match[0]["train_images"],
                n_eval_images=match[0]["eval_images"],
            )
            comparison = paper_numbers.paper_comparison(
                info, protocol, method, paper_numbers.TAB2_PROTOCOL[method]
            )
            row[f"{method}_paper"] = paper if paper_numbers.is_comparable(comparison) else None
            row[f"{method}_vs_paper"] = comparison
        out.append(row)
    return out


def defaults() -> ml_collections.ConfigDict:
    """The `fewshot` section (Fig. 2 / Tab. 2): few-shot sizes in train images per group (city)."""
    c = ml_collections.ConfigDict()
    c.shots = (2, 4, 8)
    c.table_shots = 4  # the row of Tab. 2
    c.methods = ("knn", "linear")  # any of common.METHODS
    return c
