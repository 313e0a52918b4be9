r"""BDD100K MOT 2020: association of box instances across frame gaps (Fig. 7, 9, 12).

  python -m vitjax.main --config=configs/bdd100k.py --workdir=runs/bdd100k \
      --config.tracking.root=/data/bdd100k

Protocol (docs/datasets.md §1, §5): val videos (the first 5 in sorted order, as the research code
[R1]); every frame resized to 672x1120 (HxW) and cut into 3x5 tiles of 224 whose patch grids are
stitched back (or, as a variant, the whole frame resized to 224/448/672 square:
`--config.tracking.geometries=672x672`, or several: `--config.tracking.geometries='("672x672","448x448")'`); each box is RoIAligned (7x7, stride = patch size) on the
stitched patch-feature map and mean-pooled; each instance of frame t is associated with the most
similar instance of frame t + gap. Distractor classes (other person, trailer, other vehicle) and
crowd boxes are neither queries nor candidates.
Args: `accelerator`, `runlocal` (two models, one video, 20 frames), `synthetic` (no data needed).
"""

import ml_collections

from configs import common
from vitjax.experiments import tracking

EXPERIMENT = "tracking"


tracking_defaults = tracking.defaults  # the section's defaults live with the experiment


def add_demo(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
    """Adds the experiment to a demo config on synthetic videos (`tiny`: test sizes)."""
    s = tracking_defaults()
    s.dataset = "synthetic"
    s.geometries = ("224x448/224", "224x224")
    s.gaps = (1, 2, 4)
    s.synthetic_videos = 2
    s.synthetic_frames = 8
    if tiny:
        s.geometries = ("112x224/112",)
        s.synthetic_hw = (112, 224)
        s.synthetic_videos = 1
        s.synthetic_frames = 5
        s.gaps = (1, 3)
    c[EXPERIMENT] = s


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False, synthetic=False)
    c = common.get_base()
    c.experiments = (EXPERIMENT,)
    c[EXPERIMENT] = tracking_defaults()
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.models = common.RUNLOCAL_MODELS
        c[EXPERIMENT].num_videos = 1
        c[EXPERIMENT].max_frames = 20
        c[EXPERIMENT].gaps = (1, 5)
    if arg.synthetic:
        c.models = ("dino:ti:16:none", "dinov2_reg:ti:14:none")
        c.model_depth = 2
        add_demo(c)
    return c
