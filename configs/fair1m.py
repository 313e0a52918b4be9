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

EXPERIMENT = "fair1m_retrieval"


def fair1m_retrieval_defaults() -> ml_collections.ConfigDict:
    """The `fair1m_retrieval` section with the paper's protocol numbers."""
    s = ml_collections.ConfigDict()
    s.dataset = "fair1m"  # fair1m | synthetic (synthetic.aerial_tiles stand-in)
    s.root = "data/FAIR1M"
    s.split = "validation"  # [R1] used the labelled validation images
    s.max_images = 0  # > 0: only the first N images of the split (smoke runs)
    s.crop_size = 1000  # DOTA-devkit crops of the large images
    s.tile_size = 224  # cut from the crops, not resized
    s.tile_pad = "constant"  # zero padding of the last tile row/column, as the DOTA devkit
    s.per_category = 8  # tiles per fine category ("224_8shot")
    s.area_threshold = 1.0 / 3.0  # a tile shows a category if >= 1/3 of an instance lies in it
    s.patch_label_rule = "centre"  # pixel under the patch centre ([R1]: nearest-exact resize)
    # Query patches: 'original' = the non-background patches of the unperturbed tile, at the same
    # grid position for every perturbation ([R1]); 'transformed' = the patch whose content comes
    # from a non-background original patch (through the correspondence map).
    s.query_labels = "original"
    s.perturbations = "shift,rotate,scale,box_blur,noise"
    s.levels = ml_collections.ConfigDict()
    s.levels.shift = (1, 2, 3, 4)  # pixels along `shift_direction`
    s.levels.rotate = (5.0, 10.0, 15.0, 20.0)  # degrees, counter-clockwise
    s.levels.scale = (0.8, 0.9, 1.1, 1.2)  # zoom about the tile centre
    s.levels.box_blur = (2, 4, 6, 8)  # box kernel side in pixels
    s.levels.blur = (3, 5, 7, 9)  # Gaussian kernel (used only if listed in `perturbations`)
    s.levels.noise = (10.0, 20.0, 30.0, 40.0)  # Gaussian sigma on the 0-255 scale
    s.shift_direction = (1, 0)  # (dx, dy) per shift unit
    s.fill_mode = "constant"  # border fill of rotate/scale/shift (black)
    s.metric = "dot"  # the paper's k-NN similarity
    s.removed = (0, 200)  # also with the N highest-variance feature dims removed (MAE's fix)
    s.exclude = "tile"  # retrieval from other images: exclude the query's own 'tile' or 'image'
    s.layer = -1
    # Synthetic stand-in (dataset = synthetic): candidate tiles drawn from synthetic.aerial_tiles.
    s.synthetic_candidates = 160
    return s


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
        s.perturbations = "shift,rotate,noise"
        s.levels.shift = (4,)
        s.levels.rotate = (20.0,)
        s.levels.noise = (30.0,)
        s.removed = (0, 10)
    c[EXPERIMENT] = s


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False, synthetic=False)
    c = common.get_base()
    c.experiments = EXPERIMENT
    c[EXPERIMENT] = fair1m_retrieval_defaults()
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.models = "dino:b:16:checkpoints/dino_vitb16,mae:b:16:checkpoints/mae_vitb16"
        s = c[EXPERIMENT]
        s.max_images = 4
        s.per_category = 1
        for name in ("shift", "rotate", "scale", "box_blur", "noise"):
            s.levels[name] = s.levels[name][-1:]
    if arg.synthetic:
        c.models = "dino:ti:16:none,dinov2_reg:ti:14:none"
        c.model_depth = 2
        add_demo(c)
    return c
