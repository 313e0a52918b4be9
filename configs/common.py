"""Shared config pieces: every protocol number of the paper, with the paper's value as default.

Not a runnable config itself; `configs/{cityscapes,ade20k,demo}.py` start from `get_base()`.
Sources of the numbers: docs "Datasets and evaluation protocol reference" §1 (the authors' research
code). Comments give the figure/table each section reproduces.

Each section's defaults live in one place, beside the code that reads them: an experiment's own
section is `vitjax.experiments.<name>.defaults()`; `extract`, `knn` and `probe` come from
`vitjax.experiments.common.{extract,knn,probe}_defaults()` (which read the library's
`extract.ExtractOptions`, `knn.search` and `probes.ProbeConfig` defaults). The per-dataset configs
override only the fields their dataset needs. List values are tuples (`("knn", "linear")`), never
comma strings; see the README for the command-line forms.

The ignore label is not a setting: every dataset reader emits 255 for void pixels and every
experiment reads them as such (`vitjax.experiments.common.IGNORE`).
"""

import ml_collections

from vitjax.data import fewshot as data_fewshot
from vitjax.experiments import common as exp_common
from vitjax.experiments import (
    fewshot,
    global_context,
    layerwise,
    robustness,
    tiling_vs_full,
    variance,
)

# The segmentation-side experiments that get_base() configures, by config section name.
SEGMENTATION_EXPERIMENTS = (
    ("fewshot", fewshot),
    ("variance", variance),
    ("layerwise", layerwise),
    ("robustness", robustness),
    ("global_context", global_context),
    ("tiling_vs_full", tiling_vs_full),
)
ALL_EXPERIMENTS = tuple(name for name, _ in SEGMENTATION_EXPERIMENTS)

# The paper's ViT-B backbones (Tab. 2), as `family:size:patch:checkpoint_dir`; checkpoint dirs are
# what `python -m checkpoints_convert` writes. `none` instead of a dir means random weights.
PAPER_MODELS = (
    "dino:b:16:checkpoints/dino_vitb16",
    "dinov2:b:14:checkpoints/dinov2_vitb14",
    "mae:b:16:checkpoints/mae_vitb16",
    "simmim:b:16:checkpoints/simmim_vitb16",
    "ibot:b:16:checkpoints/ibot_vitb16",
    "torchvision:b:16:checkpoints/torchvision_vitb16",
)
# The two-model smoke runs (`runlocal`) of the dataset configs.
RUNLOCAL_MODELS = ("dino:b:16:checkpoints/dino_vitb16", "mae:b:16:checkpoints/mae_vitb16")


def parse_arg(arg: str | None, **defaults):
    """Parses a config argument string `a=1,b,c=x` into a ConfigDict over typed `defaults`.

    A bare name sets a bool field to True. Unknown names are an error (they would otherwise be
    silently ignored).
    """
    out = ml_collections.ConfigDict(defaults)
    for part in (arg or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        if name not in defaults:
            raise ValueError(f"config arg {name!r} unknown; known: {', '.join(defaults)}")
        kind = type(defaults[name])
        if kind is bool:
            out[name] = value.lower() not in ("0", "false", "no") if value else True
        else:
            out[name] = kind(value)
    return out


def get_base() -> ml_collections.ConfigDict:
    """Every shared and per-experiment field with the paper's defaults (Cityscapes protocol)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.experiments = ALL_EXPERIMENTS
    c.models = PAPER_MODELS
    c.model_depth = 0  # > 0: random models get this many blocks (demo/tests only)
    c.dataset = "cityscapes"  # cityscapes | ade20k | synthetic
    c.log_every_s = 10.0

    # Data and geometry (docs/datasets.md §1). Tiles of `tile_size` source pixels, non-overlapping,
    # resized (bicubic) to `tile_out` -> 14x14 patches for ViT-/16, 16x16 for ViT-/14.
    c.data = ml_collections.ConfigDict()
    c.data.root = ""
    # Roots of the other datasets, read for the cross-dataset variance overlap.
    c.data.other_roots = ml_collections.ConfigDict(
        dict(cityscapes="data/cityscapes", ade20k="data/ADEChallengeData2016")
    )
    c.data.train_per_group = 4  # 4 images per train city = 72 images (Cityscapes)
    c.data.eval_per_group = 10  # 10 images per val city (frankfurt, lindau, munster) = 30
    # paper: the research code's image lists (Cityscapes) / listing order (ADE20K greedy pick);
    # seeded: draw with `seed` (Cityscapes k per city; ADE20K pools permuted before the greedy pick).
    c.data.splits = "paper"
    c.data.resize_hw = (0, 0)  # resize whole images first (ADE20K: 448x672); 0 = keep
    c.data.tile_size = 256
    c.data.tile_out = 224
    c.data.patch_label_rule = "centre"  # pixel at the patch centre, as the research code
    c.data.score_level = "pixel"  # pixel: stitched + nearest-upsampled; patch: per patch label
    c.data.miou_convention = "present"  # Cityscapes: classes present; ADE20K: all
    # synthetic.semantic_scenes stand-in (dataset = synthetic): groups play the cities.
    c.data.synthetic_groups = 3
    # ADE20K few-shot selection ([R1] ADE20K.ipynb): k_train = train_per_group (4) images per class
    # from the last `ade20k_train_pool` training images of the sorted listing, k_eval =
    # eval_per_group (2) per class from all validation images; classes 150 -> 1, no image reused;
    # an image shows a class if it survives nearest downsampling of the mask to this grid.
    c.data.ade20k_train_pool = data_fewshot.ADE20K_TRAIN_POOL  # 2500; 0 = the whole listing
    # rows x cols = 42x28 (W x H), the 448x672 patch grid
    c.data.ade20k_presence_grid = data_fewshot.ADE20K_PRESENCE_GRID
    c.data.synthetic_hw = (256, 512)
    c.data.synthetic_eval_images = 6

    # Shared sections; their defaults live with the code that reads them.
    c.extract = exp_common.extract_defaults()
    c.knn = exp_common.knn_defaults()
    c.probe = exp_common.probe_defaults()
    # The experiments' own sections: each module's defaults() (the paper's protocol numbers;
    # Fig. 2 / Tab. 2, Fig. 1, Fig. 3, Fig. 4, Tab. 6, Tab. 5).
    for name, module in SEGMENTATION_EXPERIMENTS:
        c[name] = module.defaults()
    return c


def accelerator(c: ml_collections.ConfigDict) -> None:
    """GPU/TPU variant: larger batches, bfloat16 matmuls."""
    c.extract.batch_size = 256
    c.extract.compute_dtype = "bfloat16"
    c.extract.store_dtype = "float16"
    c.knn.compute_dtype = "bfloat16"
    # A 512 MiB float32 score block per step (4096 x 32768).
    c.knn.query_block = 4096
    c.knn.db_block = 32768
    c.probe.batch_size = 16384


def tiny_pretraining(c: ml_collections.ConfigDict) -> None:
    """Shrinks a pretraining config (configs/pretrain_*.py) to the tests' size, in place: a
    1-block model, 4 small scenes, 6 steps of 8 images, a checkpoint every 2 steps."""
    c.model.depth = 1
    c.data.num_images = 4
    c.data.synthetic_hw = (64, 96)
    c.train.steps = 6
    c.train.batch_size = 8
    c.train.warmup_steps = 2
    c.checkpoint_every = 2
    c.log_every_s = 0.0
