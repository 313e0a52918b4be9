"""Flax ViT zoo: one VisionTransformer for every family, specs, preprocessing, MAE decoder, I/O.

Examples:
  >>> from vitjax import models
  >>> module, params, spec = models.random_model("dino", "ti", seed=0, depth=2)
  >>> images = models.preprocess(spec, uint8_images)                 # [B, 224, 224, 3]
  >>> out = module.apply({"params": params}, images, layers=(0, -1))
  >>> out["patch"][1].shape                                          # (B, 14, 14, 192)
"""

from vitjax.models.io import check_checkpoint_dir, load, load_decoder, load_spec, save
from vitjax.models.known import known_model
from vitjax.models.mae_decoder import (
    MAEDecoder,
    decoder_inputs,
    patchify,
    place_tokens,
    unpatchify,
)
from vitjax.models.vit import VisionTransformer, global_representation, resolve_layers
from vitjax.models.zoo import (
    FAMILIES,
    ModelSpec,
    Preprocessing,
    count_params,
    create_decoder,
    create_model,
    flatten_params,
    get_spec,
    init_decoder_params,
    init_encoder_params,
    init_params,
    list_variants,
    param_shapes,
    params_digest,
    preprocess,
    random_model,
    randomize_params,
)

__all__ = [
    "FAMILIES",
    "MAEDecoder",
    "ModelSpec",
    "Preprocessing",
    "VisionTransformer",
    "check_checkpoint_dir",
    "count_params",
    "create_decoder",
    "decoder_inputs",
    "create_model",
    "flatten_params",
    "get_spec",
    "global_representation",
    "init_decoder_params",
    "init_encoder_params",
    "init_params",
    "known_model",
    "list_variants",
    "load",
    "load_decoder",
    "load_spec",
    "param_shapes",
    "params_digest",
    "patchify",
    "place_tokens",
    "preprocess",
    "random_model",
    "randomize_params",
    "resolve_layers",
    "save",
    "unpatchify",
]
