r"""MAE reconstruction with zeroed high-variance features (Tab. 4), on Cityscapes evaluation tiles.

  python -m checkpoints_convert --family=mae --input=mae_visualize_vit_base.pth \
      --output=checkpoints/mae_vitb16_visualize     # the decoder in the file is converted too
  python -m vitjax.main --config=configs/mae_reconstruction.py --workdir=runs/mae_reconstruction \
      --config.data.root=/data/cityscapes

Protocol: the evaluation tiles of Cityscapes (10 val images per city, 8x4 tiles of 256 px resized
to 224) are encoded by MAE ViT-B/16 without masking and with its 75 % random masking; the encoder
output tokens go to the MAE decoder whole, with the 200 highest-variance dims zeroed, or with 200
random dims zeroed, and the reconstructions are scored (MAE's loss, PSNR, SSIM). The decoder must
be in the checkpoint: `mae_visualize_vit_base.pth` predicts ImageNet-normalised pixels
(`norm_pix = False`); with `mae_pretrain_vit_base_full.pth` set `--config.mae_reconstruction.norm_pix`.
Args (comma-separated): `accelerator` (GPU/TPU: bfloat16, large batches), `runlocal` (a few tiles:
a CPU smoke run of the real pipeline), `synthetic` (no data or checkpoint needed: synthetic scenes
and a tiny random MAE).
"""

import ml_collections

from configs import common
from vitjax.experiments import mae_reconstruction

EXPERIMENT = "mae_reconstruction"
MODEL = "mae:b:16:checkpoints/mae_vitb16_visualize"


mae_reconstruction_defaults = (
    mae_reconstruction.defaults
)  # the section's defaults live with the experiment


def add_demo(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
    """Adds the experiment to a demo config (synthetic scenes; `tiny`: test sizes)."""
    r = mae_reconstruction_defaults()
    r.num_images = 6
    r.zeroed = 50
    if tiny:
        r.num_images = 4
        r.zeroed = 10
        r.batch_size = 4
    c[EXPERIMENT] = r


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False, synthetic=False)
    c = common.get_base()
    c.experiments = (EXPERIMENT,)
    c.models = (MODEL,)
    c.dataset = "cityscapes"
    c.data.root = "data/cityscapes"
    # The evaluation tiles are reconstructed; the top-variance dims to zero come from the training
    # tiles' patch tokens (the protocol's 4 images per city, as in the other experiments).
    c[EXPERIMENT] = mae_reconstruction_defaults()
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.data.eval_per_group = 1
        c.data.splits = "seeded"
        c[EXPERIMENT].num_images = 8
    if arg.synthetic:
        c.models = ("mae:ti:16:none",)
        c.model_depth = 2
        c.dataset = "synthetic"
        c.data.synthetic_hw = (224, 448)
        c.data.tile_size = 224
        c.data.tile_out = 224
        c.data.synthetic_groups = 2
        c.data.synthetic_eval_images = 2
        add_demo(c)
    return c
