r"""ADE20K (SceneParsing 150): few-shot, variance, layer-wise and robustness experiments.

  python -m vitjax.main --config=configs/ade20k.py:accelerator --workdir=runs/ade20k \
      --config.data.root=/data/ADEChallengeData2016

Protocol (docs/datasets.md §1, §3): 4 train images per class x 150 (600) from the last 2,500 images
of the sorted training listing and 2 eval images per class (300) from all validation images, chosen
greedily from class 150 down to 1 (an image shows a class if the class survives nearest downsampling
of its mask to 42x28; no image is used twice; `data.splits = paper` takes the pools in listing order
as the research code did, `seeded` permutes them with `seed`); images resized to 448x672 (HxW, mask
nearest) and cut into 3x2 tiles of 224 (no further resize); label 0 is not evaluated; mIoU over all
150 classes.
Args: `accelerator` (bfloat16, large batches), `runlocal` (a CPU smoke run).
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False)
    c = common.get_base()
    c.dataset = "ade20k"
    c.experiments = ("fewshot", "variance", "layerwise", "robustness")
    c.data.root = "data/ADEChallengeData2016"
    c.data.train_per_group = 4  # k_train: images per class
    c.data.eval_per_group = 2  # k_eval: images per class
    c.data.ade20k_train_pool = 2500  # the last 2,500 of the sorted training listing
    c.data.ade20k_presence_grid = (28, 42)  # rows x cols
    c.data.resize_hw = (448, 672)
    c.data.tile_size = 224
    c.data.tile_out = 224
    c.data.miou_convention = "all"
    c.fewshot.shots = (4,)
    c.fewshot.table_shots = 4
    c.variance.overlap_datasets = ("ade20k", "cityscapes")
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.models = common.RUNLOCAL_MODELS
        c.data.train_per_group = 1
        c.data.eval_per_group = 1
        c.layerwise.layers = (0, -1)
        c.variance.overlap_datasets = ("ade20k",)
        c.variance.linear_removed = (0, 200)  # one probe per point: keep the smoke run short
    return c
