r"""MOT17: association of pedestrian boxes across frame gaps (Fig. 7, 9, 12 protocol on MOT17).

  python -m vitjax.main --config=configs/mot17.py --workdir=runs/mot17 \
      --config.tracking.root=/data/MOT17

Same protocol as configs/bdd100k.py on the seven MOT17 train sequences (the FRCNN copies; the
three detector copies share images and ground truth). Only pedestrians (class 1) with consider
flag 1 are queries and candidates; the distractor classes (2 person on vehicle, 7 static person,
8 distractor, 12 reflection) and everything else are left out, as the official evaluation
ignores them. Gaps are in frames (most sequences run at 30 fps; the report gives seconds from each
sequence's seqinfo.ini). Args: `accelerator`, `runlocal` (two models, one sequence, 60 frames).
"""

from configs import bdd100k, common

EXPERIMENT = bdd100k.EXPERIMENT


def get_config(arg=None):
    arg = common.parse_arg(arg, accelerator=False, runlocal=False)
    c = common.get_base()
    c.experiments = (EXPERIMENT,)
    s = bdd100k.tracking_defaults()
    s.dataset = "mot17"
    s.root = "data/MOT17"
    s.split = "train"  # ground truth exists for train only
    s.num_videos = 0  # all seven sequences
    s.gaps = (1, 5, 15, 30, 60, 90)  # 1 frame to 3 s at 30 fps
    c[EXPERIMENT] = s
    if arg.accelerator:
        common.accelerator(c)
    if arg.runlocal:
        c.models = common.RUNLOCAL_MODELS
        s.num_videos = 1
        s.max_frames = 60
        s.gaps = (1, 30)
    return c
