"""Self-supervised pretraining of vitjax ViTs (MAE and DINO objectives).

  python -m vitjax.pretrain --config=configs/pretrain_mae.py --workdir=runs/pretrain_mae

`vitjax.pretrain.train.train(config, workdir)` is the loop (see its module for the workdir
layout); `losses` has the objectives' formulas, `masking` MAE's masking, `data` the augmentations.
"""

from vitjax.pretrain.train import default_config, model_spec

__all__ = ["default_config", "model_spec"]
