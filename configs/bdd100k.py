r"""BDD100K MOT 2020: association of box instances across frame gaps (Fig. 7, 9, 12).

  python -m vitjax.main --config=configs/bdd100k.py --workdir=runs/bdd100k \
      --config.tracking.root=/data/bdd100k

Protocol (docs/datasets.md §1, §5): val videos (the first 5 in sorted order, as the research code
[R1]); every frame resized to 672x1120 (HxW) and cut into 3x5 tiles of 224 whose patch grids are
stitched back (or, as a variant, the whole frame resized to 224/448/672 square:
`--config.tracking.geometries=672x672`); each box is RoIAligned (7x7, stride = patch size) on the
stitched patch-feature map and mean-pooled; each instance of frame t is associated with the most
similar instance of frame t + gap. Distractor classes (other person, trailer, other vehicle) and
crowd boxes are neither queries nor candidates.
Args: `accelerator`, `runlocal` (two models, one video, 20 frames), `synthetic` (no data needed).
"""

import ml_collections

from configs import common

EXPERIMENT = "tracking"


def tracking_defaults() -> ml_collections.ConfigDict:
    """The `tracking` section with the paper's protocol numbers (BDD100K)."""
    s = ml_collections.ConfigDict()
    s.dataset = "bdd100k"  # bdd100k | mot17 | synthetic
    s.root = "data/bdd100k"
    s.split = "val"
    s.num_videos = 5  # first N videos/sequences in sorted order; 0 = all
    s.max_frames = 0  # > 0: only the first N frames of each video
    # Frame geometries, comma-separated: 'HxW/T' = resize to HxW and cut into TxT tiles whose patch
    # grids are stitched; 'HxW' = the whole frame resized to HxW as one input.
    s.geometries = "672x1120/224"
    s.gaps = (1, 2, 5, 10, 25)  # frame gaps; BDD100K is 5 fps -> 0.2 s to 5 s
    s.roi_output = 7  # RoIAlign output side
    s.roi_pool = "mean"  # mean over the 7x7 RoIAlign output | flatten (concatenate the bins)
    s.sampling_ratio = -1  # torchvision's adaptive sampling
    s.aligned = True
    s.clip_boxes = True  # boxes clipped to the frame before pooling
    s.metric = "cosine"  # similarity of pooled box features: cosine | dot | l2
    s.layer = -1
    s.detector = "FRCNN"  # MOT17 only: which of the three identical copies to read
    s.min_visibility = 0.0  # MOT17 only: pedestrians below this visibility are ignored
    s.frame_rate = 5.0  # BDD100K (5 Hz) and synthetic; MOT17 reads seqinfo.ini
    # Synthetic stand-in (dataset = synthetic): synthetic.videos.
    s.synthetic_videos = 2
    s.synthetic_frames = 12
    s.synthetic_hw = (224, 448)
    return s


def add_demo(c: ml_collections.ConfigDict, tiny: bool = False) -> None:
    """Adds the experiment to a demo config on synthetic videos (`tiny`: test sizes)."""
    s = tracking_defaults()
    s.dataset = "synthetic"
    s.geometries = "224x448/224,224x224"
    s.gaps = (1, 2, 4)
    s.synthetic_videos = 2
    s.synthetic_frames = 8
    if tiny:
        s.geometries = "112x224/112"
        s.synthetic_hw = (112, 224)
        s.synthetic_videos = 1
        s.synthetic_frames = 5
        s.gaps = (1, 3)
    c[EXPERIMENT] = s


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False, synthetic=False)
    c = common.get_base()
    c.experiments = EXPERIMENT
    c[EXPERIMENT] = tracking_defaults()
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.models = "dino:b:16:checkpoints/dino_vitb16,mae:b:16:checkpoints/mae_vitb16"
        c[EXPERIMENT].num_videos = 1
        c[EXPERIMENT].max_frames = 20
        c[EXPERIMENT].gaps = (1, 5)
    if arg.synthetic:
        c.models = "dino:ti:16:none,dinov2_reg:ti:14:none"
        c.model_depth = 2
        add_demo(c)
    return c
