r"""Cityscapes: every segmentation-side experiment of the paper (Fig. 1-4, Tab. 2, 5, 6).

  python -m vitjax.main --config=configs/cityscapes.py:accelerator --workdir=runs/cityscapes \
      --config.data.root=/data/cityscapes

Args (comma-separated): `accelerator` (GPU/TPU: bfloat16, large batches), `runlocal` (a few images,
two models, few layers: a CPU smoke run of the real pipeline).
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False)
    c = common.get_base()
    c.dataset = "cityscapes"
    c.data.root = "data/cityscapes"
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.models = common.RUNLOCAL_MODELS
        c.data.train_per_group = 1
        c.data.eval_per_group = 1
        c.data.splits = "seeded"
        c.fewshot.shots = (1,)
        c.fewshot.table_shots = 1
        c.layerwise.layers = (0, -1)
        c.variance.overlap_datasets = ("cityscapes",)
        c.variance.linear_removed = (0, 200)  # one probe per point: keep the smoke run short
        c.tiling_vs_full.full_hw = (448, 896)
    return c
