r"""FAIR1M instance identification and retrieval from other images (Fig. 5, 6, 11).

  python -m vitjax.main --config=configs/fair1m.py --workdir=runs/fair1m \
      --config.fair1m_retrieval.root=/data/FAIR1M

Protocol (docs/datasets.md §1, §4): the labelled validation images are cut into 1000x1000 crops,
each crop into 224x224 tiles (cut, not resized; zero padding at the right/bottom); 8 tiles per fine
category are drawn (a tile shows a category when >= 1/3 of one of its instances lies in it; 37
categories -> about 295 tiles). Every tile is perturbed (shift 1-4 px, rotation 5-20 deg, scale
0.8-1.2, box blur 2-8 px, Gaussian noise sigma 10-40); for each non-background patch the nearest
patch among all original patches is classified as same patch / same fine category / same
supercategory / other object / background.
Args (comma-separated): `accelerator` (GPU/TPU: bfloat16, large batches), `runlocal` (two models,
a few images, one level per perturbation: a CPU smoke run of the real pipeline), `synthetic` (no
data needed: synthetic aerial tiles and two tiny random models).
"""

import ml_collections

from configs import common
from vitjax.experiments import fair1m_retrieval

EXPERIMENT = "fair1m_retrieval"


fair1m_retrieval_defaults = (
    fair1m_retrieval.defaults
)  # the section's defaults live with the experiment


def add_demo(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
    """Adds the experiment to a demo config on synthetic aerial tiles (`tiny`: test sizes)."""
    s = fair1m_retrieval_defaults()
    s.dataset = "synthetic"
    s.per_category = 1
    s.synthetic_candidates = 40
    s.levels.shift = (2, 4)
    s.levels.rotate = (10.0, 20.0)
    s.levels.scale = (0.8, 1.2)
    s.levels.box_blur = (4, 8)
    s.levels.noise = (20.0, 40.0)
    s.removed = (0, 50)
    if tiny:
        s.tile_size = 112
        s.synthetic_candidates = 16
        s.perturbations = ("shift", "rotate", "noise")
        s.levels.shift = (4,)
        s.levels.rotate = (20.0,)
        s.levels.noise = (30.0,)
        s.removed = (0, 10)
    c[EXPERIMENT] = s


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False, synthetic=False)
    c = common.get_base()
    c.experiments = (EXPERIMENT,)
    c[EXPERIMENT] = fair1m_retrieval_defaults()
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.models = common.RUNLOCAL_MODELS
        s = c[EXPERIMENT]
        s.max_images = 4
        s.per_category = 1
        for name in ("shift", "rotate", "scale", "box_blur", "noise"):
            s.levels[name] = s.levels[name][-1:]
    if arg.synthetic:
        c.models = ("dino:ti:16:none", "dinov2_reg:ti:14:none")
        c.model_depth = 2
        add_demo(c)
    return c
