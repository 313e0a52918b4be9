"""Shared config pieces: every protocol number of the paper, with the paper's value as default.

Not a runnable config itself; `configs/{cityscapes,ade20k,demo}.py` start from `get_base()`.
Sources of the numbers: docs "Datasets and evaluation protocol reference" §1 (the authors' research
code). Comments give the figure/table each section reproduces.

The ignore label is not a setting: every dataset reader emits 255 for void pixels and every
experiment reads them as such (`vitjax.experiments.common.IGNORE`).
"""

import ml_collections

from vitjax import knn

ALL_EXPERIMENTS = "fewshot,variance,layerwise,robustness,global_context,tiling_vs_full"

# The paper's ViT-B backbones (Tab. 2), as `family:size:patch:checkpoint_dir`; checkpoint dirs are
# what `python -m checkpoints_convert` writes. `none` instead of a dir means random weights.
PAPER_MODELS = ",".join(
    [
        "dino:b:16:checkpoints/dino_vitb16",
        "dinov2:b:14:checkpoints/dinov2_vitb14",
        "mae:b:16:checkpoints/mae_vitb16",
        "simmim:b:16:checkpoints/simmim_vitb16",
        "ibot:b:16:checkpoints/ibot_vitb16",
        "torchvision:b:16:checkpoints/torchvision_vitb16",
    ]
)


# Fig. 1: numbers of highest-variance dimensions removed (the authors' research code [R1] tried
# 10-750; [R1] and the protocol numbers below: docs/datasets.md §1).
VARIANCE_SWEEP = (0, 10, 25, 50, 100, 200, 300, 400, 500, 600, 750)


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
    c.data.other_roots = "cityscapes=data/cityscapes,ade20k=data/ADEChallengeData2016"
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
    c.data.ade20k_train_pool = 2500  # 0 = the whole training listing
    c.data.ade20k_presence_grid = (28, 42)  # rows x cols = 42x28 (W x H), the 448x672 patch grid
    c.data.synthetic_hw = (256, 512)
    c.data.synthetic_eval_images = 6

    # Feature extraction: final-norm patch tokens of the last block (CLS dropped).
    c.extract = ml_collections.ConfigDict()
    c.extract.layers = (-1,)
    c.extract.batch_size = 32
    c.extract.compute_dtype = "float32"  # matmul dtype; bfloat16 in the `accelerator` variants
    c.extract.store_dtype = "float32"  # dtype of the features on disk

    # k-NN: top-10 by dot product, prediction = label of the single nearest neighbour.
    c.knn = ml_collections.ConfigDict()
    c.knn.k = 10
    c.knn.rule = "1nn"  # 1nn | majority | weighted
    c.knn.metric = "dot"
    # False as [R1]: the research code kept raw labelIds, so void patches stay in the support set
    # and a query whose nearest neighbour is void gets a non-evaluated label, i.e. an error. True
    # drops ignore-labelled patches from the support set (a cleaner but non-paper protocol).
    c.knn.exclude_ignore = False
    c.knn.compute_dtype = "float32"  # k-NN matmul input dtype; bfloat16 in `accelerator`
    # Queries x database rows scored per step: the engine's defaults, a 32 MiB float32 block.
    c.knn.query_block = knn.DEFAULT_QUERY_BLOCK
    c.knn.db_block = knn.DEFAULT_DB_BLOCK

    # Linear probe (softmax on frozen patch features); MAE gets a non-affine BatchNorm first.
    c.probe = ml_collections.ConfigDict()
    c.probe.epochs = 10
    c.probe.batch_size = 4096
    c.probe.optimizer = "adamw"  # adamw | sgd (momentum `probe.momentum`)
    c.probe.schedule = "cosine"  # cosine (to 0 after warm-up) | constant
    c.probe.warmup_epochs = 1.0  # linear warm-up from 0
    c.probe.momentum = 0.9  # sgd only
    c.probe.learning_rates = (1e-3, 3e-3, 1e-2)  # swept; the best on held-out rows is kept
    c.probe.weight_decays = (0.0, 1e-4, 1e-2)
    c.probe.val_fraction = 0.1
    c.probe.batchnorm_families = "mae"

    # Fig. 2 / Tab. 2: few-shot patch classification over train-set sizes (images per city).
    c.fewshot = ml_collections.ConfigDict()
    c.fewshot.shots = (2, 4, 8)
    c.fewshot.table_shots = 4
    c.fewshot.methods = "knn,linear"

    # Fig. 1: variance spectrum; k-NN/linear as the N highest-variance dims are removed.
    c.variance = ml_collections.ConfigDict()
    c.variance.removed = VARIANCE_SWEEP
    c.variance.linear_removed = VARIANCE_SWEEP  # the paper sweeps the linear probe as well
    c.variance.top_n = 200  # the paper's choice for MAE
    c.variance.random_control = True
    c.variance.batchnorm = True
    c.variance.overlap_datasets = "cityscapes,ade20k"

    # Fig. 3: k-NN per layer, overall and per class.
    c.layerwise = ml_collections.ConfigDict()
    c.layerwise.layers = "all"  # "all" or comma-separated block indices ("0,3,-1")

    # Fig. 4: k-NN and linear under photometric corruptions of the evaluation images (four levels
    # each; blur = box kernel in px, noise = Gaussian sigma on the 0-255 scale, freq = band index).
    c.robustness = ml_collections.ConfigDict()
    c.robustness.blur_kind = "box_blur"  # box_blur (any size) | blur (Gaussian, odd sizes)
    c.robustness.blur_levels = (2, 4, 6, 8)
    c.robustness.noise_levels = (10.0, 20.0, 30.0, 40.0)
    c.robustness.freq_bands = (0, 1, 2, 3)
    c.robustness.num_bands = 4
    c.robustness.freq_sigma = 20.0
    c.robustness.methods = "knn,linear"

    # Tab. 6: ridge regression from the central patch of each tile to the image's class fractions.
    c.global_context = ml_collections.ConfigDict()
    c.global_context.classes = "road,building,vegetation"
    # image: fractions over the whole source image (labelled pixels); tile: over the input tile.
    c.global_context.target = "image"
    c.global_context.top_n = 200
    c.global_context.train_per_group = 0  # train images per group; 0 = data.train_per_group
    c.global_context.l2s = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0, 1e4)
    c.global_context.val_fraction = 0.25

    # Tab. 5: tiled input vs the whole image at the same patch density.
    c.tiling_vs_full = ml_collections.ConfigDict()
    c.tiling_vs_full.full_hw = (896, 1792)  # 1024x2048 at 224/256: the tiled patch grid
    c.tiling_vs_full.methods = "knn,linear"
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
