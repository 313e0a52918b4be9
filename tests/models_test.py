"""The ViT zoo: pinned sizes vs timm/torchvision/transformers, forward semantics, parity, I/O."""

# Annotations name torch, which a venv without the oracles lacks: keep them unevaluated.
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from tests import test_util  # noqa: F401
from vitjax import errors, models
from vitjax.models import posembed, vit

timm = test_util.optional_import("timm")
torch = test_util.optional_import("torch")
torchvision = test_util.optional_import("torchvision")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Encoder parameters (and MAE decoder parameters) of every registered variant. Each equals the
# PyTorch reference (see test_pins_match_pytorch_references) up to the documented differences:
# dinov2_reg stores the cls position entry that timm drops, simmim stores the zero k third of the
# qkv bias, scalemae has no stored position table; heads and mask tokens are not kept.
PINNED = {
    "dino_vitti16": 5_524_416,
    "dino_vits16": 21_665_664,
    "dino_vits8": 21_670_272,
    "dino_vitb16": 85_798_656,
    "dino_vitb8": 85_807_872,
    "ibot_vitti16": 5_524_416,
    "ibot_vits16": 21_665_664,
    "ibot_vitb16": 85_798_656,
    "ibot_vitl16": 303_301_632,
    "mae_vitti16": (5_524_416, 545_920),
    "mae_vitb16": (85_798_656, 26_109_184),
    "mae_vitl16": (303_301_632, 26_240_256),
    "mae_vith14": (630_764_800, 26_309_708),
    "simmim_vitti16": 5_493_396,
    "simmim_vitb16": 85_674_576,
    "dinov2_vitti14": 5_719_680,
    "dinov2_vits14": 22_056_192,
    "dinov2_vitb14": 86_579_712,
    "dinov2_vitl14": 304_367_616,
    "dinov2_vitg14": 1_136_479_232,
    "dinov2_reg_vitti14": 5_720_448,
    "dinov2_reg_vits14": 22_057_728,
    "dinov2_reg_vitb14": 86_582_784,
    "dinov2_reg_vitl14": 304_371_712,
    "dinov2_reg_vitg14": 1_136_485_376,
    "torchvision_vitti16": 5_524_416,
    "torchvision_vitb16": 85_798_656,
    "torchvision_vitb32": 87_455_232,
    "torchvision_vitl16": 303_301_632,
    "torchvision_vitl32": 305_510_400,
    "torchvision_vith14": 630_764_800,
    "scalemae_vitti16": 5_486_592,
    "scalemae_vitl16": 303_099_904,
    # CLIP image towers with their projection (open_clip's VisionTransformer incl. `proj`).
    "clip_vitti16": 5_549_184,
    "clip_vitb16": 86_192_640,
    "clip_vitl14": 303_966_208,
    "clip_vitl14_336": 304_293_888,
    "openclip_vitti16": 5_549_184,
    "openclip_vitb16": 86_192_640,
    "openclip_vitl14": 303_966_208,
    "openclip_vith14": 632_076_800,
    "clip_hf_vitti16": 5_549_184,
    "clip_hf_vitb16": 86_192_640,
    "clip_hf_vitl14": 303_966_208,
    "clip_hf_vitl14_336": 304_293_888,
    # timm's vit_tiny at each patch size (224 px); converted timm models are checked against
    # timm's own count in parity_families_test.
    "timm_vitti16": 5_524_416,
    "timm_vitti14": 5_501_376,
    "timm_vitti32": 5_938_560,
    "timm_vitti8": 5_526_720,
    # DINOv3 (official counts: transformers' + the zero k-bias third the official files store;
    # checked against DINOv3ViTModel on the meta device in dinov3_test) and SigLIP image towers
    # with the MAP head (checked against SiglipVisionModel in siglip_test; registered native grids
    # 224 / P, 256 / 16 for l and g).
    "dinov3_vitti16": 5_491_968,
    "dinov3_vits16": 21_600_768,
    "dinov3_vitsplus16": 28_697_088,
    "dinov3_vitb16": 85_668_864,
    "dinov3_vitl16": 303_153_152,
    "dinov3_vithplus16": 840_632_320,
    "dinov3_vit7b16": 6_716_030_976,
    "siglip_vitti16": 5_968_704,
    "siglip_vitb16": 92_884_224,
    "siglip_vitl16": 315_956_224,
    "siglip_vitso400m14": 427_680_704,
    "siglip_vitso400m16": 427_818_944,
    "siglip_vitg16": 1_163_168_256,
}


def _torch_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _timm_count(name: str, **kwargs) -> int:
    with torch.device("meta"):
        return _torch_count(timm.create_model(name, num_classes=0, **kwargs))


def _torchvision_count(name: str) -> int:
    with torch.device("meta"):
        model = getattr(torchvision.models, name)()
    return _torch_count(model) - _torch_count(model.heads)


def _open_clip_count(config: str, **vision) -> int:
    """open_clip's image tower (VisionTransformer with proj) of a model config."""
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config(config)
    with torch.device("meta"):
        tower = _build_vision_tower(cfg["embed_dim"], {**cfg["vision_cfg"], **vision})
    return _torch_count(tower)


def _hf_clip_count(width, depth, heads, patch, image, proj) -> int:
    """transformers CLIPVisionModelWithProjection of the openai/clip-vit-* configs."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        patch_size=patch,
        image_size=image,
        projection_dim=proj,
    )
    with torch.device("meta"):
        return _torch_count(CLIPVisionModelWithProjection(config))


def _mae_decoder_count(width: int, depth: int, heads: int, mlp: int, patch: int) -> int:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=mlp,
        patch_size=patch,
        image_size=224,
    )
    with torch.device("meta"):
        return _torch_count(ViTMAEForPreTraining(config).decoder)


_BEIT_SHARED = dict(
    global_pool="",
    use_abs_pos_emb=False,
    use_rel_pos_bias=False,
    use_shared_rel_pos_bias=True,
    init_values=0.1,
)


class ParamCountTest(parameterized.TestCase):
    def test_every_variant_is_pinned(self):
        names = {models.get_spec(*v).name: models.get_spec(*v) for v in models.list_variants()}
        self.assertEqual(set(names), set(PINNED), "register and pin every variant")
        for name, spec in names.items():
            pinned = PINNED[name]
            encoder, decoder = pinned if isinstance(pinned, tuple) else (pinned, None)
            with self.subTest(name=name):
                self.assertEqual(models.count_params(spec), encoder)
                self.assertEqual(spec.has_decoder, decoder is not None)
                if decoder is not None:
                    self.assertEqual(models.count_params(spec, decoder=True), decoder)

    @test_util.requires("torch", "torchvision", "timm", "transformers")
    def test_pins_match_pytorch_references(self):
        """The pins against models built (on the meta device) by timm/torchvision/transformers."""
        reg_cls_pos = {"s": 384, "b": 768, "l": 1024, "g": 1536}
        references = {
            "dino_vitti16": _timm_count("vit_tiny_patch16_224"),
            "dino_vits16": _timm_count("vit_small_patch16_224"),
            "dino_vits8": _timm_count("vit_small_patch8_224"),
            "dino_vitb16": _timm_count("vit_base_patch16_224"),
            "dino_vitb8": _timm_count("vit_base_patch8_224"),
            "ibot_vitl16": _timm_count("vit_large_patch16_224"),
            "mae_vith14": _timm_count("vit_huge_patch14_224"),
            "simmim_vitb16": _timm_count("beit_base_patch16_224", **_BEIT_SHARED) + 12 * 768,
            "scalemae_vitl16": _timm_count("vit_large_patch16_224") - 197 * 1024,
        }
        for size, timm_size in (("s", "small"), ("b", "base"), ("l", "large"), ("g", "giant")):
            references[f"dinov2_vit{size}14"] = _timm_count(f"vit_{timm_size}_patch14_dinov2")
            references[f"dinov2_reg_vit{size}14"] = (
                _timm_count(f"vit_{timm_size}_patch14_reg4_dinov2") + reg_cls_pos[size]
            )
        for size, patch in (("b", 16), ("b", 32), ("l", 16), ("l", 32), ("h", 14)):
            references[f"torchvision_vit{size}{patch}"] = _torchvision_count(f"vit_{size}_{patch}")
        for family, sizes in (("clip", ("b", "l", "l336")), ("openclip", ("b", "l", "h"))):
            configs = {"b": "ViT-B-16", "l": "ViT-L-14", "l336": "ViT-L-14-336", "h": "ViT-H-14"}
            for size in sizes:
                name = models.get_spec(family, size).name
                references[name] = _open_clip_count(configs[size])
        references["clip_vitti16"] = _open_clip_count("ViT-B-16", width=192, layers=12)
        references["clip_vitti16"] -= 512 * 192 - 128 * 192  # embed_dim 128 instead of 512
        references["openclip_vitti16"] = references["clip_vitti16"]
        for size, args in (
            ("ti", (192, 12, 3, 16, 224, 128)),
            ("b", (768, 12, 12, 16, 224, 512)),
            ("l", (1024, 24, 16, 14, 224, 768)),
            ("l336", (1024, 24, 16, 14, 336, 768)),
        ):
            references[models.get_spec("clip_hf", size).name] = _hf_clip_count(*args)
        for patch in (16, 14, 32, 8):
            references[f"timm_vitti{patch}"] = _timm_count("vit_tiny_patch16_224", patch_size=patch)
        for name in ("ibot_vits16", "ibot_vitb16", "mae_vitb16"):
            references[name] = references[name.replace("ibot", "dino").replace("mae", "dino")]
        references["mae_vitl16"] = references["ibot_vitl16"]
        for name, want in references.items():
            with self.subTest(name=name):
                pinned = PINNED[name]
                self.assertEqual(pinned[0] if isinstance(pinned, tuple) else pinned, want)
        for name, args in (
            ("mae_vitb16", (768, 12, 12, 3072, 16)),
            ("mae_vitl16", (1024, 24, 16, 4096, 16)),
            ("mae_vith14", (1280, 32, 16, 5120, 14)),
        ):
            with self.subTest(name=name):
                self.assertEqual(PINNED[name][1], _mae_decoder_count(*args))

    def test_parameter_tree_names(self):
        shapes = models.param_shapes(models.get_spec("dinov2_reg", "b", depth=1))
        self.assertEqual(
            shapes,
            {
                "patch_embed/kernel": (14, 14, 3, 768),
                "patch_embed/bias": (768,),
                "cls_token": (1, 1, 768),
                "pos_embed": (1, 1370, 768),
                "register_tokens": (1, 4, 768),
                "block_0/norm1/scale": (768,),
                "block_0/norm1/bias": (768,),
                "block_0/attn/qkv/kernel": (768, 2304),
                "block_0/attn/qkv/bias": (2304,),
                "block_0/attn/proj/kernel": (768, 768),
                "block_0/attn/proj/bias": (768,),
                "block_0/ls1/gamma": (768,),
                "block_0/norm2/scale": (768,),
                "block_0/norm2/bias": (768,),
                "block_0/mlp/fc1/kernel": (768, 3072),
                "block_0/mlp/fc1/bias": (3072,),
                "block_0/mlp/fc2/kernel": (3072, 768),
                "block_0/mlp/fc2/bias": (768,),
                "block_0/ls2/gamma": (768,),
                "norm/scale": (768,),
                "norm/bias": (768,),
            },
        )
        simmim = models.param_shapes(models.get_spec("simmim", "b"))
        self.assertEqual(simmim["rel_pos_bias/table"], (732, 12))
        self.assertNotIn("pos_embed", simmim)
        self.assertNotIn("pos_embed", models.param_shapes(models.get_spec("scalemae", "l")))
        decoder = models.param_shapes(models.get_spec("mae", "b"), decoder=True)
        self.assertEqual(decoder["decoder_pred/kernel"], (512, 768))
        self.assertEqual(decoder["decoder_pos_embed"], (1, 197, 512))
        self.assertEqual(decoder["mask_token"], (1, 1, 512))
        self.assertIn("decoder_block_7/attn/qkv/kernel", decoder)


class InitTest(absltest.TestCase):
    def test_init_params_has_module_init_tree(self):
        spec = models.get_spec("mae", "ti", depth=1)
        module = models.create_model(spec)
        images = jnp.zeros((1, 224, 224, 3))
        flax_tree = jax.eval_shape(module.init, jax.random.key(0), images)["params"]
        params = models.init_params(spec, jax.random.key(3))
        want = {k: v.shape for k, v in models.flatten_params(flax_tree).items()}
        got = {k: v.shape for k, v in models.flatten_params(params).items() if k[:8] != "decoder/"}
        self.assertEqual(got, want)
        decoder = {k: v.shape for k, v in models.flatten_params(params["decoder"]).items()}
        self.assertEqual(decoder, models.param_shapes(spec, decoder=True))
        # MAE's fixed tables are the sin-cos ones (cls row 0, patch (0, 1): sin(1), cos(1), 0, 1).
        for table in (params["pos_embed"], params["decoder"]["decoder_pos_embed"]):
            quarter = table.shape[-1] // 4
            np.testing.assert_array_equal(table[0, 0], 0.0)
            np.testing.assert_allclose(table[0, 2, 0], np.sin(1.0), rtol=1e-6)
            np.testing.assert_allclose(table[0, 2, quarter], np.cos(1.0), rtol=1e-6)
            np.testing.assert_allclose(table[0, 2, 2 * quarter : 3 * quarter], 0.0)
            np.testing.assert_allclose(table[0, 2, 3 * quarter :], 1.0)
        # Seeds are reproducible and matter.
        np.testing.assert_array_equal(
            models.init_params(spec, 7)["cls_token"], models.init_params(spec, 7)["cls_token"]
        )
        self.assertFalse(
            np.array_equal(models.init_params(spec, 7)["cls_token"], params["cls_token"])
        )


class SpecTest(parameterized.TestCase):
    def test_unknown_names_list_known_ones(self):
        with self.assertRaisesRegex(errors.ConfigError, "known families.*dinov2_reg"):
            models.get_spec("deit", "b")
        with self.assertRaisesRegex(errors.ConfigError, r"known sizes: \['ti', 'b'\]"):
            models.get_spec("simmim", "l")
        with self.assertRaisesRegex(errors.ConfigError, r"known: \[16, 8\]"):
            models.get_spec("dino", "s", patch_size=14)
        with self.assertRaisesRegex(errors.ConfigError, "unknown ModelSpec fields.*'dept'"):
            models.get_spec("dino", "s", dept=2)

    def test_overrides_are_reflected_in_name(self):
        self.assertEqual(models.get_spec("dino", "s").name, "dino_vits16")
        self.assertEqual(models.get_spec("dino", "s", 8).name, "dino_vits8")
        spec = models.get_spec("dinov2", "b", depth=2, native_grid=(16, 16))
        self.assertEqual(spec.name, "dinov2_vitb14-depth2-native_grid16x16")
        self.assertEqual((spec.depth, spec.native_grid), (2, (16, 16)))
        self.assertEqual(models.get_spec("mae", "b", weights_hash="abc").name, "mae_vitb16")
        self.assertEqual(models.get_spec("mae", "b", name="mine").name, "mine")

    def test_json_round_trip_of_every_variant(self):
        for variant in models.list_variants():
            spec = models.get_spec(*variant, weights_hash="random-seed0")
            again = models.ModelSpec.from_dict(json.loads(spec.to_json()))
            self.assertEqual(again, spec)
            self.assertIsInstance(again.preprocessing, models.Preprocessing)

    def test_invalid_specs_raise(self):
        data = models.get_spec("dino", "s").to_dict()
        with self.assertRaisesRegex(errors.ConfigError, r"unknown fields \['colour'\]"):
            models.ModelSpec.from_dict({**data, "colour": 1})
        del data["width"]
        with self.assertRaisesRegex(errors.ConfigError, r"missing fields \['width'\]"):
            models.ModelSpec.from_dict(data)
        with self.assertRaisesRegex(errors.ConfigError, "num_heads"):
            models.get_spec("dino", "s", num_heads=5)
        with self.assertRaisesRegex(errors.ConfigError, "pos_interp"):
            models.get_spec("dino", "s", pos_interp="nearest")

    def test_family_numerics_on_spec(self):
        self.assertEqual(models.get_spec("dinov2_reg", "b").num_registers, 4)
        self.assertEqual(models.get_spec("dinov2", "s").native_grid, (37, 37))
        self.assertEqual(models.get_spec("dinov2", "s").pos_interp, "scale_offset")
        self.assertEqual(models.get_spec("dinov2_reg", "s").pos_interp, "size_antialias")
        self.assertEqual(
            models.get_spec("torchvision", "b").preprocessing.interpolation, "bilinear"
        )
        simmim = models.get_spec("simmim", "b")
        self.assertEqual((simmim.qkv_bias, simmim.layerscale_init), ("qv", 0.1))

    @test_util.requires("torch", "torchvision")
    def test_preprocess_matches_torchvision_normalize(self):
        spec = models.get_spec("dino", "s")
        images = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
        got = models.preprocess(spec, images)
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        want = torchvision.transforms.functional.normalize(
            tensor, spec.preprocessing.mean, spec.preprocessing.std
        )
        self.assertEqual(got.dtype, jnp.float32)
        np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), atol=1e-6)
        with self.assertRaisesRegex(errors.ConfigError, "RGB"):
            models.preprocess(spec, images[..., :2])


def _apply(module, params, images, **kwargs):
    static = tuple(sorted(k for k in kwargs if k in ("layers", "norm")))
    fn = jax.jit(
        lambda p, x, dyn: module.apply({"params": p}, x, **{k: kwargs[k] for k in static}, **dyn)
    )
    dynamic = {k: v for k, v in kwargs.items() if k not in static}
    return fn(params, images, dynamic)


def _images(spec, batch=2, grid=None, seed=0):
    h, w = grid or spec.native_grid
    shape = (batch, h * spec.patch_size, w * spec.patch_size, 3)
    raw = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return models.preprocess(spec, raw)


def _layer_norm(x, scale, bias, eps=1e-6):
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(scale) + np.asarray(bias)


class ForwardTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.module, cls.params, cls.spec = models.random_model("dino", "ti", seed=0, depth=3)
        cls.images = _images(cls.spec)

    def test_layer_selection_and_negative_indices(self):
        out = _apply(self.module, self.params, self.images, layers=(0, -1, 2))
        self.assertEqual(set(out["patch"]), {0, 2})
        self.assertEqual(set(out["cls"]), {0, 2})
        self.assertEqual(out["registers"], {})
        self.assertEqual(out["patch"][0].shape, (2, 14, 14, 192))
        self.assertEqual(out["cls"][2].shape, (2, 192))
        self.assertEqual(out["patch"][2].dtype, jnp.float32)
        last = _apply(self.module, self.params, self.images, layers=(-1,))
        self.assertEqual(set(last["patch"]), {2})
        np.testing.assert_array_equal(last["patch"][2], out["patch"][2])

    def test_intermediate_layer_equals_truncated_model(self):
        """Block 0 collected in the loop equals the final output of a depth-1 copy."""
        shallow = models.create_model(models.get_spec("dino", "ti", depth=1))
        params = {k: v for k, v in self.params.items() if k not in ("block_1", "block_2")}
        want = _apply(shallow, params, self.images, layers=(-1,), norm=False)
        got = _apply(self.module, self.params, self.images, layers=(0, 2), norm=False)
        np.testing.assert_allclose(got["patch"][0], want["patch"][0], atol=1e-5)
        np.testing.assert_allclose(got["cls"][0], want["cls"][0], atol=1e-5)

    def test_norm_flag_applies_final_layernorm(self):
        raw = _apply(self.module, self.params, self.images, layers=(1,), norm=False)
        normed = _apply(self.module, self.params, self.images, layers=(1,), norm=True)
        scale, bias = self.params["norm"]["scale"], self.params["norm"]["bias"]
        np.testing.assert_allclose(
            normed["patch"][1], _layer_norm(raw["patch"][1], scale, bias), atol=2e-5
        )
        np.testing.assert_allclose(
            normed["cls"][1], _layer_norm(raw["cls"][1], scale, bias), atol=2e-5
        )

    def test_features_differ_per_patch(self):
        out = _apply(self.module, self.params, self.images, layers=(-1,))
        patches = np.asarray(out["patch"][2]).reshape(-1, 192)
        self.assertGreater(np.std(patches, axis=0).mean(), 0.1)

    def test_bad_inputs_raise(self):
        with self.assertRaisesRegex(errors.ConfigError, "layers: block index 3"):
            self.module.apply({"params": self.params}, self.images, layers=(3,))
        with self.assertRaisesRegex(errors.ConfigError, "multiples of the patch size 16"):
            self.module.apply({"params": self.params}, jnp.zeros((1, 224, 200, 3)))
        with self.assertRaisesRegex(errors.ConfigError, r"\[B, H, W, 3\]"):
            self.module.apply({"params": self.params}, jnp.zeros((224, 224, 3)))

    def test_bfloat16_is_close_to_float32(self):
        bf16 = models.create_model(self.spec, dtype=jnp.bfloat16)
        got = _apply(bf16, self.params, self.images, layers=(0, 2))
        want = _apply(self.module, self.params, self.images, layers=(0, 2))
        for layer in (0, 2):
            self.assertEqual(got["patch"][layer].dtype, jnp.float32)
            diff = np.abs(np.asarray(got["patch"][layer]) - np.asarray(want["patch"][layer]))
            self.assertGreater(diff.max(), 0.0)  # really computed in bfloat16
            self.assertLess(diff.mean(), 0.05)

    def test_jit_traces_once_per_shape(self):
        calls = []

        def forward(params, images):
            calls.append(1)
            return self.module.apply({"params": params}, images, layers=(1,))

        fn = jax.jit(forward)
        for seed in range(3):
            fn(self.params, _images(self.spec, seed=seed))
        self.assertLen(calls, 1)

    @parameterized.parameters(
        "dino", "mae", "simmim", "dinov2", "dinov2_reg", "torchvision", "scalemae"
    )
    def test_rectangular_inputs(self, family):
        module, params, spec = models.random_model(family, "ti", seed=1, depth=1)
        out = _apply(module, params, _images(spec, batch=1, grid=(5, 9)), layers=(-1,))
        self.assertEqual(out["patch"][0].shape, (1, 5, 9, 192))
        self.assertTrue(np.isfinite(np.asarray(out["patch"][0])).all())
        self.assertEqual(len(out["registers"]), 1 if spec.num_registers else 0)

    def test_simmim_resizes_its_bias_and_native_only_refuses(self):
        module, params, spec = models.random_model("simmim", "ti", seed=0, depth=1)
        self.assertEqual(spec.pos_interp, "rel_bias_geometric")
        # The native grid indexes the stored table as is (no resampling op in between).
        native = _apply(module, params, _images(spec, batch=1), layers=(0,))["patch"][0]
        table = np.asarray(params["rel_pos_bias"]["table"])
        bias = vit.RelativePositionBias(3, (14, 14), (14, 14)).apply(
            {"params": params["rel_pos_bias"]}
        )
        np.testing.assert_array_equal(
            bias, table[posembed.relative_position_index((14, 14))].transpose(2, 0, 1)
        )
        self.assertTrue(np.isfinite(np.asarray(native)).all())
        models.init_params(spec, 0, image_size=(224, 240))
        refusing = models.create_model(dataclasses.replace(spec, pos_interp="native_only"))
        with self.assertRaisesRegex(errors.ConfigError, r"native \(14, 14\) patch grid"):
            refusing.apply({"params": params}, _images(spec, batch=1, grid=(14, 15)))
        with self.assertRaisesRegex(errors.ConfigError, "keep_indices"):
            module.apply({"params": params}, _images(spec, batch=1), keep_indices=jnp.zeros((1, 3)))

    def test_gsd_ratio(self):
        module, params, spec = models.random_model("scalemae", "ti", seed=0, depth=1)
        images = _images(spec, batch=2)
        default = _apply(module, params, images, layers=(0,))["patch"][0]
        one = _apply(module, params, images, layers=(0,), gsd_ratio=1.0)["patch"][0]
        np.testing.assert_allclose(default, one, atol=1e-6)
        per_image = _apply(module, params, images, layers=(0,), gsd_ratio=jnp.array([2.0, 0.5]))
        for b, ratio in enumerate((2.0, 0.5)):
            single = _apply(module, params, images[b : b + 1], layers=(0,), gsd_ratio=ratio)
            np.testing.assert_allclose(per_image["patch"][0][b], single["patch"][0][0], atol=1e-5)
        self.assertGreater(np.abs(np.asarray(per_image["patch"][0][0]) - default[0]).max(), 1e-2)

    def test_keep_all_in_order_equals_plain_forward(self):
        module, params, spec = models.random_model("mae", "ti", seed=0, depth=2)
        images = _images(spec)
        plain = _apply(module, params, images, layers=(-1,))
        keep = jnp.tile(jnp.arange(196)[None], (2, 1))
        tokens = _apply(module, params, images, keep_indices=keep)["tokens"]
        self.assertEqual(tokens.shape, (2, 197, 192))
        np.testing.assert_allclose(tokens[:, 0], plain["cls"][1], atol=1e-5)
        np.testing.assert_allclose(
            tokens[:, 1:].reshape(2, 14, 14, 192), plain["patch"][1], atol=1e-5
        )


def _params_to_timm(params: dict, spec: models.ModelSpec) -> dict[str, torch.Tensor]:
    """Our tree -> timm state dict (inverse of the converter's mapping, for the oracle)."""
    state = {}
    for key, value in models.flatten_params(params).items():
        value = np.asarray(value, np.float32)
        if key.startswith("decoder/"):
            continue
        if key.startswith("patch_embed/"):
            kernel = key == "patch_embed/kernel"
            state["patch_embed.proj." + ("weight" if kernel else "bias")] = (
                value.transpose(3, 2, 0, 1) if kernel else value
            )
            continue
        if key in ("cls_token", "pos_embed"):
            state[key] = value
            continue
        if key == "register_tokens":
            state["reg_token"] = value
            continue
        if key == "rel_pos_bias/table":
            state["rel_pos_bias.relative_position_bias_table"] = value
            continue
        parts = key.split("/")
        prefix = ""
        if parts[0].startswith("block_"):
            prefix, parts = f"blocks.{parts[0][len('block_') :]}.", parts[1:]
        module, leaf = ".".join(parts[:-1]), parts[-1]
        if leaf == "kernel":
            state[f"{prefix}{module}.weight"] = value.T
        elif leaf == "scale":
            state[f"{prefix}{module}.weight"] = value
        elif leaf == "bias" and spec.qkv_bias == "qv" and module == "attn.qkv":
            third = value.shape[0] // 3
            state[f"{prefix}attn.q_bias"] = value[:third]
            state[f"{prefix}attn.v_bias"] = value[2 * third :]
        elif leaf == "gamma" and spec.family == "simmim":
            state[f"{prefix}gamma_{module[-1]}"] = value
        else:
            state[f"{prefix}{module}.{leaf}"] = value
    if spec.num_registers:
        # timm does not add a position to cls (no_embed_class); fold the cls entry into cls_token.
        state["cls_token"] = state["cls_token"] + state["pos_embed"][:, :1]
        state["pos_embed"] = state["pos_embed"][:, 1:]
    return {k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}


def _timm_blocks(model, x: torch.Tensor, layers) -> dict[int, torch.Tensor]:
    """Normed outputs of the given blocks of a timm ViT/BEiT on tokens `x` (cls first)."""
    bias = model.rel_pos_bias() if getattr(model, "rel_pos_bias", None) is not None else None
    out = {}
    for i, block in enumerate(model.blocks):
        x = block(x, shared_rel_pos_bias=bias) if bias is not None else block(x)
        if i in layers:
            out[i] = model.norm(x)
    return out


@test_util.requires("torch", "timm")
class TimmParityTest(parameterized.TestCase):
    """Sanity parity with timm (the converter's tests cover every family through the files)."""

    def _compare(self, spec, params, model, images, timm_tokens, skip=1, atol=2e-4, rtol=1e-4):
        ours = _apply(models.create_model(spec), params, images, layers=(0, 1))
        for layer in (0, 1):
            want = timm_tokens[layer].detach().numpy()
            h, w = ours["patch"][layer].shape[1:3]
            np.testing.assert_allclose(ours["cls"][layer], want[:, 0], atol=atol, rtol=rtol)
            np.testing.assert_allclose(
                ours["patch"][layer],
                want[:, skip:].reshape(-1, h, w, spec.width),
                atol=atol,
                rtol=rtol,
            )

    def _timm_model(self, name, params, spec, **kwargs):
        model = timm.create_model(
            name, num_classes=0, depth=2, embed_dim=192, num_heads=3, **kwargs
        ).eval()
        model.load_state_dict(_params_to_timm(params, spec), strict=True)
        return model

    def test_dino_native_and_offset_interpolated(self):
        _, params, spec = models.random_model("dino", "ti", seed=3, depth=2)
        for grid in ((14, 14), (5, 9)):
            with self.subTest(grid=grid):
                images = _images(spec, grid=grid)
                # DINO's interpolate_pos_encoding, reproduced with torch as the oracle.
                table = _params_to_timm(params, spec)["pos_embed"]
                patches = table[:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
                if grid != (14, 14):
                    scale = ((grid[0] + 0.1) / 14, (grid[1] + 0.1) / 14)
                    patches = torch.nn.functional.interpolate(
                        patches, scale_factor=scale, mode="bicubic"
                    )
                pos = torch.cat([table[:, :1], patches.permute(0, 2, 3, 1).reshape(1, -1, 192)], 1)
                model = timm.create_model(
                    "vit_tiny_patch16_224",
                    num_classes=0,
                    depth=2,
                    img_size=(16 * grid[0], 16 * grid[1]),
                ).eval()
                state = _params_to_timm(params, spec)
                state["pos_embed"] = pos
                model.load_state_dict(state, strict=True)
                x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
                with torch.no_grad():
                    tokens = _timm_blocks(model, model._pos_embed(model.patch_embed(x)), (0, 1))
                self._compare(spec, params, model, images, tokens)

    def test_dinov2_reg_rectangular_matches_timm_dynamic_size(self):
        _, params, spec = models.random_model("dinov2_reg", "ti", seed=4, depth=2)
        model = self._timm_model(
            "vit_small_patch14_reg4_dinov2", params, spec, dynamic_img_size=True
        )
        images = _images(spec, grid=(10, 13))
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
        with torch.no_grad():
            tokens = _timm_blocks(model, model._pos_embed(model.patch_embed(x)), (0, 1))
        self._compare(spec, params, model, images, tokens, skip=5)
        ours = _apply(models.create_model(spec), params, images, layers=(1,))
        np.testing.assert_allclose(
            ours["registers"][1], tokens[1][:, 1:5].numpy(), atol=2e-4, rtol=1e-4
        )

    def test_simmim_matches_timm_beit_shared_bias(self):
        _, params, spec = models.random_model("simmim", "ti", seed=5, depth=2)
        model = self._timm_model("beit_base_patch16_224", params, spec, **_BEIT_SHARED)
        images = _images(spec)
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
        with torch.no_grad():
            patches = model.patch_embed(x)
            tokens = torch.cat([model.cls_token.expand(2, -1, -1), patches], 1)
            tokens = _timm_blocks(model, tokens, (0, 1))
        self._compare(spec, params, model, images, tokens)

    def test_simmim_other_grids_match_timm_beit_set_input_size(self):
        # timm's BEiT resizes its shared bias table (resize_rel_pos_bias_table) in set_input_size.
        _, params, spec = models.random_model("simmim", "ti", seed=7, depth=2)
        for grid in ((16, 16), (10, 18)):
            with self.subTest(grid=grid):
                model = self._timm_model("beit_base_patch16_224", params, spec, **_BEIT_SHARED)
                model.set_input_size(img_size=(16 * grid[0], 16 * grid[1]))
                images = _images(spec, grid=grid, seed=1)
                x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
                with torch.no_grad():
                    patches = model.patch_embed(x)
                    tokens = torch.cat([model.cls_token.expand(2, -1, -1), patches], 1)
                    tokens = _timm_blocks(model, tokens, (0, 1))
                self._compare(spec, params, model, images, tokens, atol=1e-4, rtol=0)

    def test_mae_masked_encoder_matches_timm(self):
        module, params, spec = models.random_model("mae", "ti", seed=6, depth=2)
        model = self._timm_model("vit_tiny_patch16_224", params, spec)
        images = _images(spec)
        keep = np.stack([np.random.default_rng(i).permutation(196)[:49] for i in range(2)])
        got = _apply(module, params, images, keep_indices=jnp.asarray(keep))["tokens"]
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
        with torch.no_grad():
            # MAE forward_encoder: pos on patches, keep a subset, cls (+ its pos) in front.
            patches = model.patch_embed(x) + model.pos_embed[:, 1:]
            kept = torch.gather(patches, 1, torch.from_numpy(keep)[:, :, None].expand(-1, -1, 192))
            cls = (model.cls_token + model.pos_embed[:, :1]).expand(2, -1, -1)
            want = _timm_blocks(model, torch.cat([cls, kept], 1), (1,))[1].numpy()
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


class MAEDecoderTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.spec = models.get_spec("mae", "ti", depth=1)
        cls.decoder = models.create_decoder(cls.spec)
        cls.params = models.randomize_params(models.init_decoder_params(cls.spec, 0), cls.spec, 0)
        cls.tokens = jnp.asarray(
            np.random.default_rng(0).standard_normal((2, 197, 192)), jnp.float32
        )

    def _run(self, tokens, keep=None, grid=None):
        fn = jax.jit(lambda t, k: self.decoder.apply({"params": self.params}, t, k, grid=grid))
        return np.asarray(fn(tokens, keep))

    def test_shapes(self):
        self.assertEqual(self._run(self.tokens).shape, (2, 196, 768))
        keep = jnp.asarray([[0, 5, 7], [195, 1, 2]])
        self.assertEqual(self._run(self.tokens[:, :4], keep).shape, (2, 196, 768))
        tokens = self.tokens[:, : 1 + 8 * 10]
        self.assertEqual(self._run(tokens, grid=(8, 10)).shape, (2, 80, 768))
        with self.assertRaisesRegex(errors.ConfigError, "keep_indices"):
            self.decoder.apply({"params": self.params}, self.tokens[:, :4], keep[:, :2])

    def test_place_tokens_against_numpy(self):
        tokens = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
        keep = np.array([[4, 0, 2], [1, 3, 5]])
        mask = np.full((1, 1, 4), 7.0, np.float32)
        want = np.broadcast_to(mask, (2, 6, 4)).copy()
        for b in range(2):
            for k in range(3):
                want[b, keep[b, k]] = tokens[b, k]
        got = models.place_tokens(jnp.asarray(tokens), jnp.asarray(keep), jnp.asarray(mask), 6)
        np.testing.assert_array_equal(got, want)

    def test_permuted_keep_equals_in_order(self):
        """Giving all N tokens shuffled with their indices must undo the shuffle exactly."""
        perm = np.stack([np.random.default_rng(s).permutation(196) for s in range(2)])
        shuffled = np.concatenate(
            [
                self.tokens[:, :1],
                np.take_along_axis(np.asarray(self.tokens[:, 1:]), perm[..., None], 1),
            ],
            axis=1,
        )
        np.testing.assert_allclose(
            self._run(jnp.asarray(shuffled), jnp.asarray(perm)), self._run(self.tokens), atol=1e-5
        )

    def test_masked_positions_use_mask_token(self):
        """With the mask token set to the embedded token, masking changes nothing."""
        tokens = jnp.broadcast_to(self.tokens[:1, 1:2], (2, 196, 192))
        tokens = jnp.concatenate([self.tokens[:, :1], tokens], axis=1)
        params = dict(self.params)
        embed = self.params["decoder_embed"]
        params["mask_token"] = (tokens[:1, 1:2] @ embed["kernel"] + embed["bias"])[:1]
        keep = jnp.asarray([[3, 100], [0, 195]])
        fn = jax.jit(lambda p, t, k: self.decoder.apply({"params": p}, t, k))
        np.testing.assert_allclose(
            fn(params, tokens[:, :3], keep), fn(params, tokens, None), atol=1e-4
        )

    @test_util.requires("torch")
    def test_patchify_matches_mae_einsum(self):
        images = np.random.default_rng(2).standard_normal((2, 32, 48, 3)).astype(np.float32)
        # MAE's patchify: NCHW -> reshape (n, c, h, p, w, q) -> einsum('nchpwq->nhwpqc').
        x = torch.from_numpy(images).permute(0, 3, 1, 2).reshape(2, 3, 2, 16, 3, 16)
        want = torch.einsum("nchpwq->nhwpqc", x).reshape(2, 6, 16 * 16 * 3).numpy()
        got = models.patchify(jnp.asarray(images), 16)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(models.unpatchify(got, 16, (2, 3)), images)
        with self.assertRaises(errors.ConfigError):
            models.unpatchify(got, 16, (3, 3))


class IOTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

    def test_round_trip(self):
        module, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        path = os.path.join(self.root, "sub", "ckpt")
        self.assertEqual(models.save(path, params, spec), path)
        self.assertEqual(sorted(os.listdir(os.path.dirname(path))), ["ckpt"])  # no temporaries
        loaded_module, loaded, loaded_spec = models.load(path)
        self.assertEqual(loaded_spec, spec)
        self.assertEqual(loaded_module, module)
        jax.tree.map(np.testing.assert_array_equal, loaded, params)
        # Saving again is refused unless asked for; then it replaces the checkpoint atomically.
        _, params2, _ = models.random_model("dino", "ti", seed=1, depth=1)
        with self.assertRaisesRegex(errors.CheckpointError, "ckpt: already holds.*overwrite"):
            models.save(path, params2, spec)
        models.save(path, params2, spec, overwrite=True)
        _, loaded2, spec2 = models.load(path)
        np.testing.assert_array_equal(loaded2["cls_token"], params2["cls_token"])
        self.assertEqual(spec2.params_sha256, models.params_digest(params2))
        self.assertNotEqual(spec2.params_sha256, spec.params_sha256)
        self.assertEqual(sorted(os.listdir(os.path.dirname(path))), ["ckpt"])

    def test_round_trip_with_decoder(self):
        _, params, spec = models.random_model("mae", "ti", seed=0, depth=1)
        path = os.path.join(self.root, "mae")
        models.save(
            path, {k: v for k, v in params.items() if k != "decoder"}, spec, params["decoder"]
        )
        _, loaded, loaded_spec = models.load(path)
        self.assertTrue(loaded_spec.has_decoder)
        jax.tree.map(np.testing.assert_array_equal, loaded, params)
        decoder, dec_params = models.load_decoder(path)
        self.assertIsInstance(decoder, models.MAEDecoder)
        jax.tree.map(np.testing.assert_array_equal, dec_params, params["decoder"])
        # An encoder-only save of a decoder spec records has_decoder=False.
        enc_only = os.path.join(self.root, "enc")
        models.save(enc_only, {k: v for k, v in params.items() if k != "decoder"}, spec)
        self.assertFalse(models.load(enc_only)[2].has_decoder)
        with self.assertRaisesRegex(errors.CheckpointError, "has no MAE decoder"):
            models.load_decoder(enc_only)

    def test_errors_name_the_path(self):
        _, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        missing = os.path.join(self.root, "nothing")
        with self.assertRaisesRegex(errors.CheckpointError, "nothing: checkpoint directory"):
            models.load(missing)
        path = os.path.join(self.root, "ckpt")
        models.save(path, params, spec)
        spec_file = os.path.join(path, "spec.json")
        original = open(spec_file).read()

        with open(spec_file, "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(errors.CheckpointError, "spec.json: unreadable"):
            models.load(path)
        with open(spec_file, "w") as f:
            json.dump({**json.loads(original), "depth": 2}, f)
        with self.assertRaisesRegex(errors.CheckpointError, r"ckpt \(encoder params\).*block_1"):
            models.load(path)
        with open(spec_file, "w") as f:
            json.dump({**json.loads(original), "wings": 2}, f)
        with self.assertRaisesRegex(errors.CheckpointError, "spec.json: invalid model spec"):
            models.load(path)
        os.remove(spec_file)
        with self.assertRaisesRegex(errors.CheckpointError, "spec.json: missing"):
            models.load(path)

        with open(spec_file, "w") as f:
            f.write(original)
        for name in os.listdir(os.path.join(path, "params")):
            target = os.path.join(path, "params", name)
            if os.path.isfile(target):
                os.remove(target)
        with self.assertRaisesRegex(errors.CheckpointError, "params: unreadable orbax"):
            models.load(path)

    @parameterized.named_parameters(
        ("unrelated_files", {"input.pth": b"weights", "notes.txt": b"keep"}, False),
        ("unrelated_files_overwrite", {"input.pth": b"weights"}, True),
        ("checkpoint_plus_other_files", {"spec.json": b"{}", "notes.txt": b"keep"}, True),
    )
    def test_save_never_replaces_what_is_not_a_checkpoint(self, files, overwrite):
        _, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        path = os.path.join(self.root, "out")
        os.makedirs(path)
        for name, data in files.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(data)
        with self.assertRaisesRegex(errors.CheckpointError, f"{path}: "):
            models.save(path, params, spec, overwrite=overwrite)
        for name, data in files.items():
            with open(os.path.join(path, name), "rb") as f:
                self.assertEqual(f.read(), data)
        self.assertEqual(sorted(os.listdir(self.root)), ["out"])  # no temporaries left

    def test_save_refuses_a_file_and_protected_paths(self):
        _, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        target = os.path.join(self.root, "file")
        with open(target, "w") as f:
            f.write("x")
        with self.assertRaisesRegex(errors.CheckpointError, "file: exists and is not a dir"):
            models.save(target, params, spec, overwrite=True)
        # The input of a conversion may not live inside the output, even if the folder is new.
        with self.assertRaisesRegex(errors.CheckpointError, "contains .*input.pth"):
            models.save(
                os.path.join(self.root, "new"),
                params,
                spec,
                protect=[os.path.join(self.root, "new", "input.pth")],
            )
        # An existing empty directory is fine.
        os.makedirs(os.path.join(self.root, "empty"))
        models.save(os.path.join(self.root, "empty"), params, spec)
        self.assertEqual(models.load_spec(os.path.join(self.root, "empty")).name, spec.name)

    @parameterized.parameters(0o022, 0o027)
    def test_files_follow_the_umask(self, umask):
        _, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        old = os.umask(umask)
        try:
            path = models.save(os.path.join(self.root, "ckpt"), params, spec)
        finally:
            os.umask(old)
        modes = test_util.file_modes(path)
        self.assertIn("spec.json", modes)
        for name, (is_dir, mode) in modes.items():
            self.assertEqual(mode, (0o777 if is_dir else 0o666) & ~umask, name)

    def test_params_digest_is_checked_on_load(self):
        _, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        # Oracle: the documented formula, recomputed with hashlib over the sorted leaves.
        digest = hashlib.sha256(b"vitjax-params/1\n")
        for name, leaf in sorted(models.flatten_params(params).items()):
            array = np.asarray(leaf, "<f4")
            digest.update(f"{name}|<f4|{list(array.shape)}\n".encode())
            digest.update(array.tobytes())
        self.assertEqual(spec.params_sha256, digest.hexdigest())
        self.assertNotEqual(
            spec.params_sha256, models.random_model("dino", "ti", seed=1, depth=1)[2].params_sha256
        )
        a, b = os.path.join(self.root, "a"), os.path.join(self.root, "b")
        changed = jax.tree.map(np.array, params)
        changed["norm"]["bias"][0] += 1.0
        models.save(a, params, spec)
        models.save(b, changed, spec)
        self.assertNotEqual(models.load_spec(a).params_sha256, models.load_spec(b).params_sha256)
        # Parameters swapped behind spec.json's back are refused.
        shutil.rmtree(os.path.join(a, "params"))
        shutil.copytree(os.path.join(b, "params"), os.path.join(a, "params"))
        with self.assertRaisesRegex(errors.CheckpointError, "a/spec.json: params_sha256"):
            models.load(a)
        # A checkpoint written before digests were recorded gets one computed on load.
        spec_file = os.path.join(b, "spec.json")
        with open(spec_file) as f:
            data = json.load(f)
        with open(spec_file, "w") as f:
            json.dump({k: v for k, v in data.items() if k != "params_sha256"}, f)
        self.assertEqual(models.load(b)[2].params_sha256, models.params_digest(changed))

    def test_save_rejects_params_of_another_spec(self):
        _, params, _ = models.random_model("dino", "ti", seed=0, depth=1)
        other = models.get_spec("dino", "ti", depth=2)
        with self.assertRaisesRegex(errors.CheckpointError, r"missing \['block_1/"):
            models.save(os.path.join(self.root, "bad"), params, other)
        self.assertEqual(os.listdir(self.root), [])


class ImportTest(absltest.TestCase):
    def test_models_do_not_import_torch(self):
        code = "import sys, vitjax.models; print(sorted(m for m in sys.modules if m.startswith('torch')))"
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        self.assertEqual(result.stdout.strip(), "[]")


if __name__ == "__main__":
    absltest.main()
