"""One record per model family: sizes, architecture flags, preprocessing and checkpoint layout.

A family is everything `zoo.get_spec` needs to build the `ModelSpec` of each of its variants, and
the name of the checkpoint layout module (`checkpoints_convert/layouts/<layout>.py`) that maps its
official files onto the vitjax parameter tree. Adding a family = one `register_family` call here
(or in a module imported by `vitjax.models`) plus one layout module; nothing else lists families.

Examples:
  >>> get_family("dinov2").variant("b").width
  768
  >>> [f.name for f in list_families()][:3]
  ['dino', 'ibot', 'mae']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vitjax import errors
from vitjax.models import posembed

INTERPOLATIONS = ("bicubic", "bilinear")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# OpenAI CLIP's image statistics (also used by OpenCLIP's own trainings).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Architecture flags of the one VisionTransformer (see vit.py). The field names are shared by
# `FamilyRecord` and `ModelSpec`: a record's value becomes the default of its specs.
MLP_KINDS = ("gelu", "quick_gelu", "swiglu", "gelu_tanh")
# "map": big_vision's attention-pooling head (SigLIP, which has no class token).
GLOBAL_POOLS = ("cls", "cls_proj", "map")


def checked_fields(cls, data: Any, where: str) -> dict[str, Any]:
    """`data` as constructor arguments of dataclass `cls`; unknown/missing fields -> ConfigError."""
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = sorted(set(required) - set(data))
    if unknown or missing:
        raise errors.ConfigError(
            f"{where}: unknown fields {unknown}, missing fields {missing}; "
            f"expected fields {sorted(fields)}"
        )
    return dict(data)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How the family's evaluation code prepares images (docs/checkpoints.md section 7).

    Only `mean`/`std` are applied by `preprocess`; resizing and cropping are the caller's.

    Attributes:
      mean: per-channel RGB mean on the [0, 1] scale.
      std: per-channel RGB std on the [0, 1] scale.
      resize: short side the evaluation transform resizes to.
      crop: side of the centre crop taken after resizing.
      interpolation: resize filter, 'bicubic' or 'bilinear'.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: int = 256
    crop: int = 224
    interpolation: str = "bicubic"

    def __post_init__(self):
        for field in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, field))
            if len(value) != 3:
                raise errors.ConfigError(f"preprocessing.{field}: expected 3 values, got {value}")
            object.__setattr__(self, field, value)
        if any(s <= 0 for s in self.std):
            raise errors.ConfigError(f"preprocessing.std: expected positive values, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise errors.ConfigError(
                f"preprocessing.interpolation: expected one of {INTERPOLATIONS}, "
                f"got {self.interpolation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of `to_dict`; unknown or missing fields raise ConfigError."""
        return cls(**checked_fields(cls, data, "preprocessing"))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One official size of a family.

    Attributes:
      size: short name ('ti', 's', 'b', 'l', 'h', 'g').
      width: D.
      depth: number of blocks.
      num_heads: H.
      mlp_dim: MLP hidden width (for 'swiglu': the width of each of the two gated branches).
      patch_sizes: registered patch sizes, the first is the default.
      native_image_size: side in pixels the stored position table is built for; the native grid
        is `native_image_size // patch`.
      overrides: further ModelSpec fields of this size only, as (field, value) pairs.
      label: the spec name after '<family>_' ('{size}' and '{patch}' are filled in).
    """

    size: str
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_sizes: tuple[int, ...]
    native_image_size: int = 224
    overrides: tuple[tuple[str, Any], ...] = ()
    label: str = "vit{size}{patch}"


# (width, depth, heads, mlp_dim) of the standard ViT sizes. 'ti' is not an official size of the
# self-supervised families: every family registers it for tests and demos.
STANDARD_SIZES = {
    "ti": (192, 12, 3, 768),
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "l": (1024, 24, 16, 4096),
    "h": (1280, 32, 16, 5120),
}


def standard_variants(
    patches: Mapping[str, tuple[int, ...]], native_image_size: int = 224, **per_size: Any
) -> tuple[Variant, ...]:
    """Variants of the standard sizes: `patches` maps size -> patch sizes (first = default).

    `per_size` maps a size to its extra (field, value) overrides.
    """
    return tuple(
        Variant(
            size,
            *STANDARD_SIZES[size],
            patch_sizes=tuple(patch_sizes),
            native_image_size=native_image_size,
            overrides=tuple(per_size.get(size, ())),
        )
        for size, patch_sizes in patches.items()
    )


@dataclasses.dataclass(frozen=True)
class FamilyRecord:
    """Everything that is specific to one model family.

    The architecture fields (from `pos_embed` to `proj_dim`) carry the same names and meanings as
    the `ModelSpec` fields (see zoo.ModelSpec); they are the defaults of every spec of the family.

    Attributes:
      name: family name, used in specs, the CLI's --family and spec.json.
      variants: official sizes.
      layout: name of the checkpoint layout module in `checkpoints_convert/layouts/`.
      description: one line for docs and error messages.
      preprocessing: default evaluation preprocessing.
      weight_sets: preprocessing of named weight sets that differ from the default (e.g. OpenAI
        vs LAION CLIP weights), name -> Preprocessing.
      global_output: what the family's global representation is, for reports (e.g. 'CLS token
        after the final norm').
    """

    name: str
    variants: tuple[Variant, ...]
    layout: str
    description: str = ""
    preprocessing: Preprocessing = Preprocessing()
    weight_sets: tuple[tuple[str, Preprocessing], ...] = ()
    global_output: str = "CLS token after the final norm"
    # Architecture flags (ModelSpec fields).
    pos_embed: str = "learned"
    pos_interp: str = posembed.POS_INTERP_SCALE_OFFSET
    num_registers: int = 0
    layerscale: bool = False
    layerscale_init: float = 1.0
    rel_pos_bias: bool = False
    qkv_bias: str = "full"
    mlp: str = "gelu"
    pre_norm: bool = False
    patch_bias: bool = True
    global_pool: str = "cls"
    proj_dim: int = 0
    norm_eps: float = 1e-6
    has_decoder: bool = False
    class_token: bool = True

    def __post_init__(self):
        sizes = [v.size for v in self.variants]
        if not sizes or len(set(sizes)) != len(sizes):
            raise errors.ConfigError(f"family {self.name!r}: expected unique sizes, got {sizes}")
        if self.mlp not in MLP_KINDS:
            raise errors.ConfigError(
                f"family {self.name!r}: mlp {self.mlp!r} is not one of {MLP_KINDS}"
            )
        if self.global_pool not in GLOBAL_POOLS:
            raise errors.ConfigError(
                f"family {self.name!r}: global_pool {self.global_pool!r} is not one of "
                f"{GLOBAL_POOLS}"
            )

    @property
    def sizes(self) -> tuple[str, ...]:
        """Registered sizes in registration order."""
        return tuple(v.size for v in self.variants)

    def variant(self, size: str) -> Variant:
        """The variant called `size`; ConfigError listing the known sizes otherwise."""
        for v in self.variants:
            if v.size == size:
                return v
        raise errors.ConfigError(
            f"size: unknown {size!r} for family {self.name!r}; known sizes: {list(self.sizes)}"
        )

    def weight_set(self, name: str | None) -> Preprocessing:
        """Preprocessing of weight set `name` (None = the default)."""
        if name is None:
            return self.preprocessing
        known = dict(self.weight_sets)
        if name not in known:
            raise errors.ConfigError(
                f"weight set: unknown {name!r} for family {self.name!r}; known: {sorted(known)}"
            )
        return known[name]


# Record fields that are also ModelSpec fields: a family's defaults for its specs.
ARCH_FIELDS = (
    "pos_embed",
    "pos_interp",
    "num_registers",
    "layerscale",
    "layerscale_init",
    "rel_pos_bias",
    "qkv_bias",
    "mlp",
    "pre_norm",
    "patch_bias",
    "global_pool",
    "proj_dim",
    "norm_eps",
    "has_decoder",
    "preprocessing",
    "class_token",
)

_FAMILIES: dict[str, FamilyRecord] = {}


def register_family(record: FamilyRecord) -> FamilyRecord:
    """Adds `record` to the registry (ConfigError if the name is taken); returns it."""
    if record.name in _FAMILIES:
        raise errors.ConfigError(f"family {record.name!r} is already registered")
    _FAMILIES[record.name] = record
    return record


def get_family(name: str) -> FamilyRecord:
    """The record of family `name`; ConfigError listing the known families otherwise."""
    if name not in _FAMILIES:
        raise errors.ConfigError(f"family: unknown {name!r}; known families: {list(_FAMILIES)}")
    return _FAMILIES[name]


def list_families() -> list[FamilyRecord]:
    """Every registered family, in registration order."""
    return list(_FAMILIES.values())


def family_names() -> tuple[str, ...]:
    """Names of every registered family, in registration order."""
    return tuple(_FAMILIES)


# --------------------------------------------------------------------------------------------
# The families. Sizes and flags from each family's official model code.

register_family(
    FamilyRecord(
        "dino",
        standard_variants({"ti": (16,), "s": (16, 8), "b": (16, 8)}),
        layout="dino",
        description="DINO (Caron et al. 2021), facebookresearch/dino",
    )
)
register_family(
    FamilyRecord(
        "ibot",
        standard_variants({"ti": (16,), "s": (16,), "b": (16,), "l": (16,)}),
        layout="ibot",
        description="iBOT (Zhou et al. 2022), bytedance/ibot",
    )
)
register_family(
    FamilyRecord(
        "mae",
        standard_variants(
            {"ti": (16,), "b": (16,), "l": (16,), "h": (14,)},
            ti=(
                ("decoder_width", 128),
                ("decoder_depth", 2),
                ("decoder_heads", 4),
                ("decoder_mlp_dim", 512),
            ),
        ),
        layout="mae",
        description="MAE (He et al. 2022), facebookresearch/mae",
        pos_embed="sincos",
        pos_interp=posembed.POS_INTERP_SIZE,
        has_decoder=True,
    )
)
register_family(
    FamilyRecord(
        "simmim",
        standard_variants({"ti": (16,), "b": (16,)}),
        layout="simmim",
        description="SimMIM (Xie et al. 2022), microsoft/SimMIM",
        pos_embed="none",
        # No absolute table; the shared relative-bias table is resized to other grids like
        # timm's BEiT `set_input_size` (posembed.resample_rel_pos_bias).
        pos_interp=posembed.POS_INTERP_REL_BIAS_GEOMETRIC,
        layerscale=True,
        layerscale_init=0.1,
        rel_pos_bias=True,
        qkv_bias="qv",
    )
)


# DINOv2 hub models are built for 518 px (37 x 37 grid) with init_values=1.0.
def _dinov2_variants() -> tuple[Variant, ...]:
    """ti/s/b/l, plus ViT-g/14: SwiGLU ('swiglufused') MLP whose hidden width DINOv2 computes as
    (int(4 * 1536 * 2 / 3) + 7) // 8 * 8 = 4096 per branch."""
    giant = Variant("g", 1536, 40, 24, 4096, (14,), 518, overrides=(("mlp", "swiglu"),))
    standard = {"ti": (14,), "s": (14,), "b": (14,), "l": (14,)}
    return (*standard_variants(standard, 518), giant)


register_family(
    FamilyRecord(
        "dinov2",
        _dinov2_variants(),
        layout="dinov2",
        description="DINOv2 (Oquab et al. 2024), facebookresearch/dinov2",
        pos_interp=posembed.POS_INTERP_SCALE_OFFSET,
        layerscale=True,
    )
)
register_family(
    FamilyRecord(
        "dinov2_reg",
        _dinov2_variants(),
        layout="dinov2_reg",
        description="DINOv2 with 4 registers (Darcet et al. 2024), facebookresearch/dinov2",
        pos_interp=posembed.POS_INTERP_SIZE_ANTIALIAS,
        layerscale=True,
        num_registers=4,
    )
)
register_family(
    FamilyRecord(
        "torchvision",
        standard_variants(
            {"ti": (16,), "b": (16, 32), "l": (16, 32), "h": (14,)},
            # Only SWAG weights exist for vit_h_14; the 224 px ones use a bicubic 224 resize.
            h=(("preprocessing", Preprocessing(resize=224, interpolation="bicubic")),),
        ),
        layout="torchvision",
        description="torchvision.models.vit_*",
        pos_interp=posembed.POS_INTERP_ALIGN_CORNERS,
        preprocessing=Preprocessing(interpolation="bilinear"),
    )
)
register_family(
    FamilyRecord(
        "scalemae",
        standard_variants({"ti": (16,), "l": (16,)}),
        layout="scalemae",
        description="Scale-MAE (Reed et al. 2023), bair-climate-initiative/scale-mae",
        # Scale-MAE stores a pos_embed it never uses; the encoding is computed from the GSD ratio.
        pos_embed="gsd_sincos",
        pos_interp=posembed.POS_INTERP_GSD,
    )
)

# DINOv3 (facebookresearch/dinov3 `hub/backbones.py`): patch 16, axial RoPE (base 100, no position
# table), 4 storage tokens, LayerScale, LayerNorm eps 1e-5, a masked (zero) k bias; SwiGLU MLPs for
# S+, H+ and 7B (`mlp_dim` = the SwiGLU hidden width: int(ffn_ratio * D * 2 / 3) aligned to 8, or
# 64 for the 7B), no qkv bias for the 7B. The satellite (SAT-493M) weights have their own
# statistics. Preprocessing as the official README's `make_transform`: a 256 x 256 bilinear resize.
_DINOV3_SIZES = (
    ("ti", 192, 12, 3, 768, ()),
    ("s", 384, 12, 6, 1536, ()),
    ("splus", 384, 12, 6, 1536, (("mlp", "swiglu"),)),
    ("b", 768, 12, 12, 3072, ()),
    ("l", 1024, 24, 16, 4096, ()),
    ("hplus", 1280, 32, 20, 5120, (("mlp", "swiglu"),)),
    ("7b", 4096, 40, 32, 8192, (("mlp", "swiglu"), ("qkv_bias", "none"))),
)
register_family(
    FamilyRecord(
        "dinov3",
        tuple(
            Variant(size, width, depth, heads, mlp, (16,), 224, overrides)
            for size, width, depth, heads, mlp, overrides in _DINOV3_SIZES
        ),
        layout="dinov3",
        description="DINOv3 (Simeoni et al. 2025), facebookresearch/dinov3 and HF DINOv3ViTModel",
        preprocessing=Preprocessing(resize=256, crop=256, interpolation="bilinear"),
        weight_sets=(
            (
                "sat493m",
                Preprocessing(
                    mean=(0.430, 0.411, 0.296),
                    std=(0.213, 0.156, 0.143),
                    resize=256,
                    crop=256,
                    interpolation="bilinear",
                ),
            ),
        ),
        pos_embed="rope",
        pos_interp=posembed.POS_INTERP_ROPE,
        num_registers=4,
        layerscale=True,
        qkv_bias="qv",
        norm_eps=1e-5,
    )
)
# SigLIP and SigLIP 2 image towers (big_vision `models/vit.py` with pool_type='map'): no class
# token, a learned table of the native grid, tanh-GELU MLPs, the MAP head's pooled vector as the
# global representation. big_vision resamples the table with `resample_posemb` (scipy zoom,
# order 1); the converter records each layout's own rule (HF Siglip: bicubic; SigLIP 2 NaFlex:
# bilinear antialiased; timm: bicubic antialiased). Images: resized to the square input, scaled to
# [-1, 1] (mean = std = 0.5).
_SIGLIP_SIZES = (
    ("ti", 192, 12, 3, 768, (16,), 224),
    ("b", 768, 12, 12, 3072, (16,), 224),
    ("l", 1024, 24, 16, 4096, (16,), 256),
    ("so400m", 1152, 27, 16, 4304, (14, 16), 224),
    ("g", 1536, 40, 16, 6144, (16,), 256),  # SigLIP 2 giant (opt)
)
register_family(
    FamilyRecord(
        "siglip",
        tuple(
            Variant(size, width, depth, heads, mlp, patches, native)
            for size, width, depth, heads, mlp, patches, native in _SIGLIP_SIZES
        ),
        layout="siglip",
        description="SigLIP / SigLIP 2 (Zhai et al. 2023, Tschannen et al. 2025), big_vision .npz, "
        "HF SiglipVisionModel / Siglip2VisionModel, timm vit_*_siglip_*",
        preprocessing=Preprocessing(
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            resize=224,
            crop=224,
            interpolation="bilinear",
        ),
        global_output="MAP attention-pooling head output (SigLIP has no CLS token)",
        pos_interp=posembed.POS_INTERP_BILINEAR_ZOOM,
        mlp="gelu_tanh",
        global_pool="map",
        class_token=False,
    )
)

# --------------------------------------------------------------------------------------------
# CLIP. open_clip's VisionTransformer (and OpenAI's original): conv1 without bias, ln_pre on
# [cls, patches] + positions, blocks of nn.MultiheadAttention (packed in_proj) and c_fc/c_proj,
# ln_post on every token, and the image embedding ln_post(cls) @ proj. LayerNorm eps 1e-5.
# Evaluation transform: Resize(side, bicubic) + CenterCrop(side), OpenAI's mean/std.
CLIP_PREPROCESSING = Preprocessing(CLIP_MEAN, CLIP_STD, resize=224, crop=224)
CLIP_336_PREPROCESSING = Preprocessing(CLIP_MEAN, CLIP_STD, resize=336, crop=336)


def _clip_variants(*sizes: str) -> tuple[Variant, ...]:
    """CLIP towers by open_clip config name: ti (tests), b = ViT-B-16, l = ViT-L-14, l336 =
    ViT-L-14-336, h = ViT-H-14; `proj_dim` is the config's embed_dim."""
    table = {
        "ti": Variant("ti", 192, 12, 3, 768, (16,), overrides=(("proj_dim", 128),)),
        "b": Variant("b", 768, 12, 12, 3072, (16,), overrides=(("proj_dim", 512),)),
        "l": Variant("l", 1024, 24, 16, 4096, (14,), overrides=(("proj_dim", 768),)),
        "l336": Variant(
            "l336",
            1024,
            24,
            16,
            4096,
            (14,),
            336,
            overrides=(("proj_dim", 768), ("preprocessing", CLIP_336_PREPROCESSING)),
            label="vitl{patch}_336",
        ),
        "h": Variant("h", 1280, 32, 16, 5120, (14,), overrides=(("proj_dim", 1024),)),
    }
    return tuple(table[size] for size in sizes)


_CLIP_FLAGS = dict(
    pre_norm=True,
    patch_bias=False,
    global_pool="cls_proj",
    proj_dim=512,
    norm_eps=1e-5,
    preprocessing=CLIP_PREPROCESSING,
    global_output="ln_post(CLS token) @ proj: the CLIP image embedding",
)
register_family(
    FamilyRecord(
        "clip",
        _clip_variants("ti", "b", "l", "l336"),
        layout="open_clip",
        description="OpenAI CLIP weights in open_clip's state-dict layout (QuickGELU)",
        mlp="quick_gelu",
        # open_clip's resize_pos_embed: bicubic, size=, align_corners=False, antialias=True.
        pos_interp=posembed.POS_INTERP_SIZE_ANTIALIAS,
        weight_sets=(("openai", CLIP_PREPROCESSING),),
        **_CLIP_FLAGS,
    )
)
register_family(
    FamilyRecord(
        "openclip",
        _clip_variants("ti", "b", "l", "h"),
        layout="open_clip",
        description="OpenCLIP-trained weights (LAION, DataComp) in open_clip's layout (GELU)",
        mlp="gelu",
        pos_interp=posembed.POS_INTERP_SIZE_ANTIALIAS,
        weight_sets=(("laion2b", CLIP_PREPROCESSING), ("datacomp", CLIP_PREPROCESSING)),
        **_CLIP_FLAGS,
    )
)
register_family(
    FamilyRecord(
        "clip_hf",
        _clip_variants("ti", "b", "l", "l336"),
        layout="clip_hf",
        description="OpenAI CLIP weights in the transformers CLIPVisionModel layout",
        mlp="quick_gelu",
        # transformers' CLIPVisionEmbeddings.interpolate_pos_encoding: bicubic, size=, no
        # antialias (differs from open_clip's rule, so each layout keeps its reference's rule).
        pos_interp=posembed.POS_INTERP_SIZE,
        weight_sets=(("openai", CLIP_PREPROCESSING),),
        **_CLIP_FLAGS,
    )
)

# --------------------------------------------------------------------------------------------
# Any timm VisionTransformer: the converter builds the spec from the checkpoint's config.json
# (sizes, flags, preprocessing); these variants are the shapes `random_model` offers and the
# starting point the converter overrides.
register_family(
    FamilyRecord(
        "timm",
        # One tiny shape for demos and tests; converted checkpoints override every size field.
        standard_variants({"ti": (16, 14, 32, 8)}),
        layout="timm",
        description="any timm VisionTransformer given as config.json + model.safetensors",
        # timm's resample_abs_pos_embed (dynamic_img_size): bicubic, size=, antialias.
        pos_interp=posembed.POS_INTERP_SIZE_ANTIALIAS,
        preprocessing=Preprocessing(resize=248, crop=224),
    )
)
