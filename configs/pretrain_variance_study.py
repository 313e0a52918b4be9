r"""Beyond the paper: where do MAE's high-variance feature dimensions come from?

The paper explains MAE's few very-high-variance channels by its pixel-reconstruction objective.
This study trains three ViT-Ti/16 (3 blocks) on the same synthetic scenes with the same seed: MAE
with the normalised-pixel loss and MAE with the raw-pixel loss (same schedule, 300 steps of 32
images), and DINO (600 steps of 32 multi-crop images: configs/pretrain_dino.py says why);
then runs the variance experiment (spectrum, k-NN/linear with the top-variance dims removed,
random-dims control, BatchNorm) on all three next to random models of the same shapes.

Run from the repository root, in this order:

  python -m vitjax.pretrain --config=configs/pretrain_variance_study.py:mae_norm \
      --workdir=runs/variance_study/mae_norm
  python -m vitjax.pretrain --config=configs/pretrain_variance_study.py:mae_raw \
      --workdir=runs/variance_study/mae_raw
  python -m vitjax.pretrain --config=configs/pretrain_variance_study.py:dino \
      --workdir=runs/variance_study/dino
  python -m vitjax.main --config=configs/pretrain_variance_study.py:variance \
      --workdir=runs/variance_study/report

The `mae_norm` and `dino` trainings are exactly configs/pretrain_mae.py and pretrain_dino.py (the
shipped `demo_mae` / `demo_dino`); `variance,shipped` reads those two from the package, so only
`mae_raw` has to be trained. Args: one of `mae_norm`, `mae_raw`, `dino`, `variance`; `shipped`.
"""

from configs import common, demo, pretrain_dino, pretrain_mae

STUDY_DIR = "runs/variance_study"
PARTS = ("mae_norm", "mae_raw", "dino", "variance")


def get_config(arg=None):
    arg = common.parse_arg(arg, **{p: False for p in PARTS}, shipped=False)
    chosen = [p for p in PARTS if arg[p]]
    if len(chosen) != 1:
        raise ValueError(f"pretrain_variance_study: name exactly one of {PARTS}, got {chosen}")
    part = chosen[0]
    if part == "mae_norm":
        return pretrain_mae.get_config()
    if part == "mae_raw":
        return pretrain_mae.get_config("raw")
    if part == "dino":
        return pretrain_dino.get_config()
    c = demo.get_config()
    c.experiments = ("variance",)
    trained = {p: f"{STUDY_DIR}/{p}/model" for p in ("mae_norm", "mae_raw", "dino")}
    if arg.shipped:
        trained["mae_norm"], trained["dino"] = "pretrained:demo_mae", "pretrained:demo_dino"
    # model_depth=3 (the demo's) gives the random twins the trained models' shape.
    c.models = (
        f"mae:ti:16:{trained['mae_norm']}",
        f"mae:ti:16:{trained['mae_raw']}",
        f"dino:ti:16:{trained['dino']}",
        "mae:ti:16:none",
        "dino:ti:16:none",
    )
    return c
