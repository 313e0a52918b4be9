"""Image-level k-NN across ground-sample distances (Fig. 8): CLS vs mean patch, +- top variance.

Every image is brought to `load_size`, resized to the model input size, downscaled to each of
`sizes` and upscaled back to the input size (bicubic, antialiased when shrinking): the content of a
coarser ground-sample distance (GSD x input_size / size) at a fixed patch grid. Scale-MAE is told
that GSD ratio (`gsd_ratio = base_resolution * input_size / size`, its `--eval_gsd` evaluation);
the other families have no such input. Train and test images are taken at the same size.

Each image is represented by the final-LayerNorm CLS token or by the mean of the final-LayerNorm
patch tokens, optionally without the N dims of highest variance over the train set; the test set
is classified by k-NN against the train set (k = 20, cosine similarity, DINO's vote: each of the k
neighbours adds exp(similarity / T) to its class, T = 0.07).
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from vitjax import errors, experiments, knn, models, plotting
from vitjax.data import registry, tiling
from vitjax.data.types import SceneSplit
from vitjax.experiments import common

REPRESENTATIONS = ("cls", "mean_patch")


def simulate_gsd(image: np.ndarray, input_size: int, size: int) -> np.ndarray:
    """uint8 [input_size, input_size, 3]: the image resized to input_size, downscaled to `size`
    and upscaled back (bicubic; Pillow antialiases when shrinking)."""
    base = tiling.resize_image(image, (input_size, input_size), "bicubic")
    if size == input_size:
        return base
    small = tiling.resize_image(base, (size, size), "bicubic")
    return tiling.resize_image(small, (input_size, input_size), "bicubic")


class ScaledImages:
    """ImageSource: image i loaded by `load(i)` and passed through `simulate_gsd`.

    Args:
      load: index -> uint8 [H, W, 3].
      count: number of images.
      input_size, size: see `simulate_gsd`.
    """

    def __init__(self, load, count: int, input_size: int, size: int):
        self.load = load
        self.count = int(count)
        self.input_size = int(input_size)
        self.size = int(size)
        self.image_shape = (self.input_size, self.input_size, 3)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        return simulate_gsd(self.load(int(index)), self.input_size, self.size)


def load_split(name: str, cfg: ml_collections.ConfigDict, seed: int) -> SceneSplit:
    """The seeded train/test split of dataset `name` (a "scenes" dataset of
    `vitjax.data.registry`), configured by the section `cfg[name]`."""
    spec = registry.get_dataset(name, registry.SCENES, "config.scalemae_knn.datasets entry")
    if name not in cfg:
        raise errors.ConfigError(f"config.scalemae_knn has no section {name!r}")
    return spec.load(name, cfg[name], int(cfg.load_size), seed)


def image_features(
    ctx: experiments.Context,
    model: experiments.ModelHandle,
    source: ScaledImages,
    key: dict[str, Any],
    gsd_ratio: float | None,
    layer: int,
) -> dict[str, np.ndarray]:
    """{'cls': float32 [N, D or E], 'mean_patch': float32 [N, D]} of the images of `source`.

    'cls' is the family's global representation (`models.global_representation`): the CLS token,
    SigLIP's MAP-head vector, or CLIP's projected image embedding.
    """
    feats = ctx.features(
        model, source, key=key, layers=(layer,), with_cls=True, gsd_ratio=gsd_ratio
    )
    index = ctx.layer_index(model, layer)
    patch = feats.patch[index]
    # Mean over the patch grid in slices: the memmap of a large dataset need not fit in memory.
    mean = np.concatenate(
        [
            np.asarray(patch[i : i + 1024], np.float32).mean(axis=(1, 2))
            for i in range(0, patch.shape[0], 1024)
        ]
    )
    cls = models.global_representation(model.spec, model.params, feats.cls[index])
    return {"cls": cls, "mean_patch": mean}


def knn_accuracy(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    metric: str = "cosine",
    drop_dims: np.ndarray | None = None,
    knn_cfg: ml_collections.ConfigDict | None = None,
    mesh: Any = None,
) -> float:
    """Accuracy of the temperature-weighted k-NN vote (DINO's rule) on the test set.

    `knn_cfg` is `config.knn`: its block sizes and compute dtype drive the search (see
    `common.knn_search`; None: the engine's defaults, float32); its k, rule and metric do not
    (this experiment's own `k` and `metric` apply). `mesh` (`ctx.mesh`) shards the train set over
    its devices.
    """
    knn_cfg = knn_cfg if knn_cfg is not None else common.knn_defaults()
    scores, idx = common.knn_search(
        test, train, min(int(k), len(train)), knn_cfg, mesh, metric=metric, drop_dims=drop_dims
    )
    pred = knn.classify(idx, scores, train_labels, num_classes, "weighted", temperature=temperature)
    return float(np.mean(pred == np.asarray(test_labels)))


def _check(cfg: ml_collections.ConfigDict) -> list[str]:
    common.require_fields(
        cfg, "scalemae_knn", defaults().keys(), "vitjax.experiments.scalemae_knn.defaults()"
    )
    reps = list(cfg.representations)
    bad = [r for r in reps if r not in REPRESENTATIONS]
    if bad or not reps:
        raise errors.ConfigError(
            f"config.scalemae_knn.representations: {cfg.representations!r}; expected some of "
            f"{REPRESENTATIONS}"
        )
    for size in cfg.sizes:
        if not 0 < int(size) <= cfg.input_size:
            raise errors.ConfigError(
                f"config.scalemae_knn.sizes: {size} must lie in (0, input_size={cfg.input_size}]"
            )
    return reps


@experiments.register("scalemae_knn")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    reps = _check(cfg)
    names = list(cfg.datasets)
    input_size = cfg.input_size
    rows = []
    for name in names:
        split = load_split(name, cfg, ctx.seed)
        ctx.log(f"{name}: {len(split.train_labels)} train, {len(split.test_labels)} test images")
        empty = [
            part
            for part, labels in (
                ("train (candidate)", split.train_labels),
                ("test (query)", split.test_labels),
            )
            if not len(labels)
        ]
        if empty:
            # A k-NN accuracy over no queries or no candidates would be a meaningless 0 or NaN.
            raise errors.DatasetError(
                f"config.scalemae_knn.{name}: the {' and '.join(empty)} set is empty "
                f"({len(split.train_labels)} train, {len(split.test_labels)} test images over "
                f"{len(split.class_names)} classes); the dataset needs at least two images per "
                "class, one for each side (check its root or the per-class counts)"
            )
        for model in ctx.models:
            if not common.runs_at(model, (input_size, input_size)):
                ctx.log(f"skipping {model.name}: cannot take {input_size} px inputs")
                continue
            for size in ctx.progress(cfg.sizes, len(cfg.sizes), f"{name} sizes"):
                size = int(size)
                gsd = cfg.base_resolution * input_size / size
                ratio = gsd if cfg.gsd_aware and model.spec.family == "scalemae" else None
                feats = {}
                for part, load, count in (
                    ("train", split.load_train, len(split.train_labels)),
                    ("test", split.load_test, len(split.test_labels)),
                ):
                    key = {
                        "dataset": f"scalemae_knn/{name}",
                        "part": part,
                        "size": size,
                        "input_size": input_size,
                        "load_size": cfg.load_size,
                        "seed": ctx.seed,
                        **split.identity,
                    }
                    source = ScaledImages(load, count, input_size, size)
                    feats[part] = image_features(ctx, model, source, key, ratio, cfg.layer)
                for rep in reps:
                    train, test = feats["train"][rep], feats["test"][rep]
                    order = common.variance_order(train)
                    removal = ctx.removal_counts(
                        cfg.removed,
                        train.shape[1],
                        "config.scalemae_knn.removed",
                        f"{model.name} ({rep})",
                    )
                    for removed in removal:
                        acc = knn_accuracy(
                            train,
                            split.train_labels,
                            test,
                            split.test_labels,
                            len(split.class_names),
                            cfg.k,
                            cfg.temperature,
                            cfg.metric,
                            order[: int(removed)] if removed else None,
                            ctx.config.knn,
                            ctx.mesh,
                        )
                        rows.append(
                            {
                                **common.model_row(model),
                                "dataset": name,
                                "size": size,
                                "relative_gsd": input_size / size,
                                "gsd_ratio_given": ratio or 0.0,
                                "representation": rep,
                                "removed": int(removed),
                                "accuracy": acc,
                            }
                        )
    return _result(ctx, cfg, rows)


def _result(ctx, cfg, rows) -> experiments.Result:
    panels: dict[str, dict] = {}
    families = {m.name: m.spec.family for m in ctx.models}
    keys = {}
    for r in rows:
        panel = panels.setdefault(f"{r['dataset']} ({r['representation']})", {})
        label = f"{r['model']} -{r['removed']}" if r["removed"] else r["model"]
        xs, ys = panel.setdefault(label, ([], []))
        xs.append(r["relative_gsd"])
        ys.append(r["accuracy"])
        keys[label] = (families.get(r["model"], r["model"]), r["model"], f"-{r['removed']}")
    path = ctx.figure_path("accuracy_vs_gsd")
    plotting.line_plot(
        path,
        panels,
        xlabel="relative GSD (input size / image size; 1 = native)",
        ylabel="k-NN accuracy (0-1)",
        logx=True,
        keys=keys,
        mark=plotting.random_weights_mark(ctx.models),
    )
    return experiments.Result(
        tables={"knn": rows},
        figures={"accuracy_vs_gsd": path},
        text={
            "summary": f"Image-level k-NN (k={cfg.k}, {cfg.metric}, weighted vote T="
            f"{cfg.temperature}) at simulated ground-sample distances on {', '.join(cfg.datasets)}.",
            "knn": "Accuracy per model, dataset, image size (content of a GSD input_size/size "
            "times coarser), representation ('cls' = the family's global representation, named in the "
            "Models table: CLS token, SigLIP's MAP head, CLIP's projected embedding; or the mean "
            "patch token) and number of "
            "highest-variance dims removed; gsd_ratio_given is what Scale-MAE was told (0 = none).",
            "accuracy_vs_gsd": plotting.caption(
                "Fig. 8: measured k-NN accuracy against the relative GSD; dashed = "
                "top-variance dims removed.",
                None,
                ctx.models,
            ),
        },
        scalars={"datasets": list(cfg.datasets)},
    )


def defaults() -> ml_collections.ConfigDict:
    """The `scalemae_knn` section (Fig. 8)."""
    s = ml_collections.ConfigDict()
    s.datasets = ("ucmerced", "resisc45")  # any of ucmerced, resisc45, synthetic
    # tfds_data_dir: a TFDS data_dir holding `uc_merced` / `resisc45` prepared as ArrayRecord,
    # read instead of `root` when set (see vitjax/data/tfds_source.py).
    s.ucmerced = ml_collections.ConfigDict(
        dict(root="data/UCMerced_LandUse", train_per_class=50, test_per_class=0, tfds_data_dir="")
    )  # 100 images per class: 50 train, 50 test
    s.resisc45 = ml_collections.ConfigDict(
        dict(root="data/NWPU-RESISC45", train_per_class=140, test_per_class=0, tfds_data_dir="")
    )  # 700 per class: 20 % train, the rest test
    s.synthetic = ml_collections.ConfigDict(
        dict(n_per_class=8, train_per_class=4, test_per_class=0, image_size=256)
    )
    s.load_size = 256  # images are brought to this size first (UC Merced has odd shapes)
    s.input_size = 224  # model input
    s.sizes = (224, 112, 64, 32)  # simulated GSD: downscale to this size, upscale to input_size
    s.gsd_aware = True  # give Scale-MAE the GSD ratio input_size / size
    s.base_resolution = 1.0  # Scale-MAE's eval_base_resolution
    s.representations = ("cls", "mean_patch")
    s.removed = (0, 200)  # also without the N highest-variance dims (train-set variance)
    s.k = 20
    s.temperature = 0.07
    s.metric = "cosine"
    s.layer = -1
    return s
