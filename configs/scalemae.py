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
from vitjax.experiments import scalemae_knn

KNN_EXPERIMENT = "scalemae_knn"
# Kept for callers that compose demo configs; the experiment's config is mae_reconstruction.py.
RECON_EXPERIMENT = recon.EXPERIMENT
mae_reconstruction_defaults = recon.mae_reconstruction_defaults


scalemae_knn_defaults = scalemae_knn.defaults  # the section's defaults live with the experiment


def add_knn_demo(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
    """Adds the `scalemae_knn` section of a demo config (synthetic scenes; `tiny`: test sizes)."""
    s = scalemae_knn_defaults()
    s.datasets = ("synthetic",)
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
    c.experiments = (KNN_EXPERIMENT,)
    c.models = ("scalemae:l:16:checkpoints/scalemae_vitl16",)
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
        c.models = ("scalemae:ti:16:none", "mae:ti:16:none")
        c.model_depth = 2
        add_knn_demo(c)
    return c
