r"""Pretrains the shipped demo DINO (ViT-Ti/16, 3 blocks) on the embedded synthetic scenes.

  python -m vitjax.pretrain --config=configs/pretrain_dino.py --workdir=runs/pretrain_dino \
      --config.export_dir=vitjax/assets/pretrained/demo_dino --config.overwrite=True

DINO's multi-crop and photometric augmentation as published (2 global crops, scale 0.4-1, and 2
local crops, scale 0.05-0.4; colour jitter, grayscale, blur, solarisation), shrunk for a 2-core CPU
(BUILD_NOTES.md): 96 px / 48 px crops, 600 steps of 32 images (about 5 minutes idle). Two changes
from DINO's ViT-S recipe, both because the run is this short and small, and both measured there:
a sharper teacher (temperature 0.01 instead of 0.04-0.07), since at 0.04 the teacher's output
became the same uniform distribution for every image within 40 steps (`teacher_information`
in loss_curve.csv fell from 1.0 to 0.06 nats); and a faster teacher (EMA momentum from 0.99
instead of 0.996). Args: `test` (a few steps of a 1-block model on 64 px / 32 px crops, used by
the tests).
"""

from configs import common
from vitjax import pretrain


def get_config(arg=None):
    arg = common.parse_arg(arg, test=False)
    c = pretrain.default_config()
    c.objective = "dino"
    c.model.family = "dino"
    c.model.depth = 3
    c.dino.global_size = 96
    c.dino.global_scale = (0.4, 1.0)
    c.dino.local_size = 48
    c.dino.local_scale = (0.05, 0.4)
    c.dino.num_local = 2
    c.dino.teacher_temp = 0.01
    c.dino.warmup_teacher_temp = 0.01
    c.dino.teacher_momentum = 0.99
    c.train.steps = 600
    c.train.batch_size = 32
    c.train.warmup_steps = 30
    c.train.lr = 1e-4
    c.train.min_lr = 1e-6
    c.train.weight_decay = 0.04
    c.train.b2 = 0.999
    c.train.grad_clip = 3.0
    c.checkpoint_every = 100
    c.name = "demo_dino"
    if arg.test:
        common.tiny_pretraining(c)
        c.dino.global_size = 64
        c.dino.local_size = 32
        c.dino.out_dim = 64
        c.dino.hidden_dim = 32
        c.dino.bottleneck_dim = 16
    return c
