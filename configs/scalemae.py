r"""Scale-MAE image-level k-NN across ground-sample distances (Fig. 8).

  python -m vitjax.main --config=configs/scalemae.py --workdir=runs/scalemae \
      --config.scalemae_knn.ucmerced.root=/data/UCMerced_LandUse \
      --config.scalemae_knn.resisc45.root=/data/NWPU-RESISC45

Protocol: every image (256x256 as stored) is resized to 224, downscaled to each size of `sizes`
(a coarser ground-sample distance, GSD x 224/size) and upscaled back to 224; Scale-MAE gets the
matching GSD ratio 224/size. Images are represented by the CLS token or the mean patch token
(final LayerNorm), with and without the 200 highest-variance dims, and classified by k-NN
(k = 20, cosine similarity, temperature-weighted vote T = 0.07) against a seeded per-class train
split at the same size. Args: `accelerator`, `runlocal` (a few images per class), `synthetic` (no
data needed: synthetic land-use scenes and tiny random models). MAE reconstruction (Tab. 4) has
its own config, configs/mae_reconstruction.py.
"""

import ml_collections

from configs import common
from configs import mae_reconstruction as recon

KNN_EXPERIMENT = "scalemae_knn"
# Kept for callers that compose demo configs; the experiment's config is mae_reconstruction.py.
RECON_EXPERIMENT = recon.EXPERIMENT
mae_reconstruction_defaults = recon.mae_reconstruction_defaults


def scalemae_knn_defaults() -> ml_collections.ConfigDict:
    """The `scalemae_knn` section (Fig. 8)."""
    s = ml_collections.ConfigDict()
    s.datasets = "ucmerced,resisc45"  # any of ucmerced, resisc45, synthetic
    # tfds_data_dir: a TFDS data_dir holding `uc_merced` / `resisc45` prepared as ArrayRecord,
    # read instead of `root` when set (see vitjax/data/tfds_source.py).
    s.ucmerced = ml_collections.ConfigDict(
        dict(root="data/UCMerced_LandUse", train_per_class=50, test_per_class=0, tfds_data_dir="")
    )  # 100 images per class: 50 train, 50 test
    s.resisc45 = ml_collections.ConfigDict(
        dict(root="data/NWPU-RESISC45", train_per_class=140, test_per_class=0, tfds_data_dir="")
    )  # 700 per class: 20 % train, the rest test
    s.synthetic = ml_collections.ConfigDict(
        dict(n_per_class=8, train_per_class=4, test_per_class=0, image_size=256)
    )
    s.load_size = 256  # images are brought to this size first (UC Merced has odd shapes)
    s.input_size = 224  # model input
    s.sizes = (224, 112, 64, 32)  # simulated GSD: downscale to this size, upscale to input_size
    s.gsd_aware = True  # give Scale-MAE the GSD ratio input_size / size
    s.base_resolution = 1.0  # Scale-MAE's eval_base_resolution
    s.representations = "cls,mean_patch"
    s.removed = (0, 200)  # also without the N highest-variance dims (train-set variance)
    s.k = 20
    s.temperature = 0.07
    s.metric = "cosine"
    s.layer = -1
    return s


def add_knn_demo(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
    """Adds the `scalemae_knn` section of a demo config (synthetic scenes; `tiny`: test sizes)."""
    s = scalemae_knn_defaults()
    s.datasets = "synthetic"
    s.synthetic.n_per_class = 6
    s.synthetic.train_per_class = 3
    s.sizes = (224, 112, 56)
    s.removed = (0, 50)
    if tiny:
        s.synthetic.n_per_class = 4
        s.synthetic.train_per_class = 2
        s.synthetic.image_size = 128
        s.load_size = 128
        s.input_size = 112
        s.sizes = (112, 56)
        s.removed = (0, 10)
    c[KNN_EXPERIMENT] = s


def add_demo(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
    """Adds the demo sections of `scalemae_knn` and of `mae_reconstruction` (the demo runs both)."""
    add_knn_demo(c, tiny)
    recon.add_demo(c, tiny)


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False, synthetic=False)
    c = common.get_base()
    c.experiments = KNN_EXPERIMENT
    c.models = "scalemae:l:16:checkpoints/scalemae_vitl16"
    c[KNN_EXPERIMENT] = scalemae_knn_defaults()
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        s = c[KNN_EXPERIMENT]
        s.ucmerced.train_per_class = 2
        s.ucmerced.test_per_class = 2
        s.resisc45.train_per_class = 2
        s.resisc45.test_per_class = 2
        s.sizes = (224, 64)
    if arg.synthetic:
        c.models = "scalemae:ti:16:none,mae:ti:16:none"
        c.model_depth = 2
        add_knn_demo(c)
    return c
