r"""Pretrains the shipped demo MAE (ViT-Ti/16, 3 blocks) on the embedded synthetic scenes.

  python -m vitjax.pretrain --config=configs/pretrain_mae.py --workdir=runs/pretrain_mae \
      --config.export_dir=vitjax/assets/pretrained/demo_mae --config.overwrite=True

Sized for a 2-core CPU (BUILD_NOTES.md): 112 px crops at about the scenes' own scale (area 10-35%
of a 224x448 scene), so the 16 px patches see what the demo's 224 px tiles show; far fewer steps
than the paper's models (300 x 32 images). Args: `raw` (no normalised-pixel loss), `test` (a few
steps of a 1-block model at 64 px, used by the tests).
"""

from configs import common
from vitjax import pretrain


def get_config(arg=None):
    arg = common.parse_arg(arg, test=False, raw=False)
    c = pretrain.default_config()
    c.objective = "mae"
    c.model.family = "mae"
    c.model.depth = 3
    c.data.image_size = 112
    c.mae.crop_scale = (0.1, 0.35)
    c.mae.norm_pix_loss = not arg.raw
    c.train.steps = 300
    c.train.batch_size = 32
    c.train.warmup_steps = 20
    c.train.lr = 1e-3
    c.train.min_lr = 1e-5
    c.checkpoint_every = 50
    c.name = "demo_mae_raw" if arg.raw else "demo_mae"
    if arg.test:
        common.tiny_pretraining(c)
        c.data.image_size = 64
        c.mae.crop_scale = (0.2, 1.0)
    return c
