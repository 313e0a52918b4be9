r"""Demo: every experiment end to end on synthetic scenes with small random models of every family.

  python -m vitjax.main --config=configs/demo.py --workdir=/tmp/vitjax_demo

Runs in a few minutes on a laptop CPU and writes the full report. Weights are random except the
two shipped models trained by vitjax itself (`pretrained:demo_mae`, `pretrained:demo_dino`; the
report opens with them against their random twins) unless a converted checkpoint is named (e.g.
`--config.models=dino:s:16:checkpoints/dino_vits16,...`: on the command line a tuple of strings may
be written comma-separated), and the report says so on its first line. Args: `test` (the tiniest
settings, used by the tests),
`known` (the hand-built known-answer models of `vitjax.models.known` instead: a sanity check of the
pipeline whose numbers can be recomputed by hand; works on your own data too, e.g.
`--config=configs/cityscapes.py --config.models=known:colour,known:colour_planted`).
"""

from configs import bdd100k, common, fair1m, scalemae
from configs import mae_reconstruction as recon

# The retrieval, tracking, Scale-MAE and reconstruction experiments: name and demo section.
OTHER_DEMOS = (
    (fair1m.EXPERIMENT, fair1m.add_demo),
    (bdd100k.EXPERIMENT, bdd100k.add_demo),
    (scalemae.KNN_EXPERIMENT, scalemae.add_knn_demo),
    (recon.EXPERIMENT, recon.add_demo),
)
OTHER_EXPERIMENTS = tuple(name for name, _ in OTHER_DEMOS)

# Every family, the smallest size; random weights.
DEMO_MODELS = (
    "dino:ti:16:none",
    "ibot:ti:16:none",
    "mae:ti:16:none",
    "simmim:ti:16:none",
    "dinov2:ti:14:none",
    "dinov2_reg:ti:14:none",
    "torchvision:ti:16:none",
    "scalemae:ti:16:none",
    # The newer families: CLIP (open_clip layout, QuickGELU / GELU; transformers layout),
    # a timm ViT, DINOv3 (RoPE, storage tokens) and SigLIP (no CLS token, MAP head).
    "clip:ti:16:none",
    "openclip:ti:16:none",
    "clip_hf:ti:16:none",
    "timm:ti:16:none",
    "dinov3:ti:16:none",
    "siglip:ti:16:none",
    # Trained on the synthetic scenes by `python -m vitjax.pretrain` (shipped in the package;
    # configs/pretrain_{mae,dino}.py); model_depth=3 makes the random mae/dino their twins.
    "mae:ti:16:pretrained:demo_mae",
    "dino:ti:16:pretrained:demo_dino",
)


# Known-answer models (vitjax/models/known.py): colour/texture, position only, one constant token,
# colour plus four planted high-variance dims.
KNOWN_MODELS = ("known:colour", "known:colour_planted", "known:position", "known:constant")


def get_config(arg=None):
    arg = common.parse_arg(arg, test=False, known=False)
    c = common.get_base()
    c.dataset = "synthetic"
    c.experiments = common.ALL_EXPERIMENTS + OTHER_EXPERIMENTS
    c.models = DEMO_MODELS
    c.model_depth = 3
    # 224 px tiles: the paper's patch grid (14x14 for /16 models) at the demo's size.
    c.data.synthetic_hw = (224, 448)
    c.data.synthetic_groups = 2
    c.data.synthetic_eval_images = 3
    c.data.train_per_group = 2
    c.data.tile_size = 224
    c.data.tile_out = 224
    c.extract.batch_size = 16
    c.probe.epochs = 20
    c.probe.batch_size = 1024
    c.probe.learning_rates = (3e-3,)
    c.probe.weight_decays = (1e-4,)
    c.probe.val_fraction = 0.0
    c.fewshot.shots = (1, 2, 4)
    c.fewshot.table_shots = 2
    c.variance.removed = (0, 10, 25, 50, 100, 150)
    c.variance.linear_removed = (0, 50)
    c.variance.top_n = 50
    c.variance.overlap_datasets = ("synthetic", "synthetic_aerial")
    c.global_context.top_n = 50
    c.global_context.train_per_group = 12  # ridge regression needs more tiles than k-NN
    c.tiling_vs_full.full_hw = (224, 448)
    if arg.test:
        # A /16 model, the MAE (decoder, BatchNorm probe) and a /14 model with registers.
        c.models = ("dino:ti:16:none", "mae:ti:16:none", "dinov2_reg:ti:14:none")
        c.model_depth = 2
        c.data.synthetic_hw = (112, 224)
        c.data.tile_size = 112
        c.data.tile_out = 112
        c.data.synthetic_groups = 2
        c.data.synthetic_eval_images = 2
        c.data.train_per_group = 1
        c.probe.epochs = 3
        c.fewshot.shots = (1, 2)
        c.fewshot.table_shots = 1
        c.variance.removed = (0, 10, 100)
        c.variance.linear_removed = (0, 10)
        c.variance.top_n = 10
        c.robustness.blur_levels = (4,)
        c.robustness.noise_levels = (30.0,)
        c.robustness.freq_bands = (3,)
        c.global_context.top_n = 10
        c.tiling_vs_full.full_hw = (112, 224)
    if arg.known:
        c.models = KNOWN_MODELS
    for _, add_demo in OTHER_DEMOS:
        add_demo(c, tiny=arg.test)
    return c
