"""Parity of the newer families' converted checkpoints with their PyPI reference implementations.

DINOv2 ViT-g (SwiGLU), CLIP (open_clip and transformers layouts), any timm ViT and timm's Eva
DINOv3 ports (converted onto dinov3): each reference is built with random weights (depth 2, full
width), written in the official file layout, converted with `convert_file`, loaded with
`models.load` and compared block by block (raw tokens), after the final norm, and on the family's
global output, at the checkpoint's native resolution and at a rectangular one (max abs diff
<= 1e-4, float32).
"""

import functools
import json
import os
import tempfile

import jax
import numpy as np
from absl import logging
from absl.testing import absltest, parameterized

from checkpoints_convert import convert
from tests import test_util  # noqa: F401  (sets CPU devices before JAX starts)
from vitjax import models
from vitjax.errors import CheckpointError

timm = test_util.optional_import("timm")
torch = test_util.optional_import("torch")
tr = test_util.torch_reference()
fr = test_util.reference_module("family_references", *test_util.TORCH_REFERENCE)

ATOL = 1e-4
BATCH = 2


def _images(size: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, *size, 3)).astype(np.float32)


@functools.cache
def _forward(module):
    """jit of (raw outputs of every block, final-norm output of the last block)."""
    depth = module.depth

    def run(params, images):
        apply = functools.partial(module.apply, {"params": params}, images)
        return apply(layers=tuple(range(depth)), norm=False), apply(layers=(-1,), norm=True)

    return jax.jit(run)


@test_util.requires(*test_util.TORCH_REFERENCE)
class FamilyParityTestCase(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext(tempfile.TemporaryDirectory())
        torch.manual_seed(0)
        # float32 at the highest matmul precision on every backend.
        self.enterContext(jax.default_matmul_precision("highest"))

    def _convert_in_memory(self, family: str, state: dict, **kwargs):
        """convert_checkpoint on the tensors (the file route is the CLI's; see `_convert`)."""
        arrays = {k: v.detach().numpy() for k, v in state.items()}
        conversion = convert.convert_checkpoint(family, arrays, **kwargs)
        params = jax.tree.map(np.asarray, conversion.params)
        return models.create_model(conversion.spec), params, conversion.spec, conversion.report()

    def _convert(self, family: str, checkpoint, name: str, suffix: str = ".pth", **kwargs):
        """Writes the checkpoint file, converts it like the CLI and loads the result."""
        path = os.path.join(self.tmp, f"{name}{suffix}")
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in checkpoint.items()}, path)
        else:
            tr.save(checkpoint, path)
        out = os.path.join(self.tmp, name)
        convert.convert_file(family, path, out, **kwargs)
        module, params, spec = models.load(out)
        with open(os.path.join(out, convert.CONVERSION_REPORT)) as f:
            report = json.load(f)
        return module, params, spec, report

    def _assert_close(self, got, want, what: str):
        got = np.asarray(got)
        self.assertEqual(got.shape, want.shape, what)
        diff = float(np.abs(got - want).max())
        self.assertLessEqual(diff, ATOL, f"{what}: max abs diff {diff:.3g}")
        logging.info(
            "parity %s: max abs diff %.2e (max |ref| %.2f)", what, diff, np.abs(want).max()
        )

    def _compare(self, module, params, spec, images, blocks, final, pooled, what=""):
        """Every block's raw tokens, the final-norm tokens and the global output vs the reference.

        blocks: per-block [B, T, D] in the official token order; final: final-norm [B, T, D];
        pooled: the reference's global output [B, D or E].
        """
        raw, normed = _forward(module)(params, images)
        registers = spec.num_registers
        rows, cols = images.shape[1] // spec.patch_size, images.shape[2] // spec.patch_size
        self.assertLen(blocks, spec.depth)

        # Without a class token (MAP pooling) "cls" is the pooled vector, checked as "global".
        cls = 1 if spec.class_token else 0

        def check(out, i, ref, label):
            if cls:
                self._assert_close(out["cls"][i], ref[:, 0], f"{what} {label} cls")
            patches = ref[:, cls + registers :].reshape(BATCH, rows, cols, -1)
            self._assert_close(out["patch"][i], patches, f"{what} {label} patches")
            if registers:
                self._assert_close(
                    out["registers"][i], ref[:, cls : cls + registers], f"{what} {label} registers"
                )

        for i, ref in enumerate(blocks):
            check(raw, i, ref, f"block {i}")
        check(normed, spec.depth - 1, final, "final norm")
        self._assert_close(normed["global"][spec.depth - 1], pooled, f"{what} global")


class DinoV2GiantTest(FamilyParityTestCase):
    @parameterized.named_parameters(
        ("dinov2", "dinov2", "vit_giant_patch14_dinov2", 1),
        ("dinov2_reg", "dinov2_reg", "vit_giant_patch14_reg4_dinov2", 2),
    )
    def test_swiglu_giant(self, family, timm_name, depth):
        # Full ViT-g width (SwiGLU hidden 4096), 1-2 blocks (30M parameters each), an 8 x 8 native
        # grid (112 px).
        model = tr.build_timm(family, depth=depth, seed=1, timm_name=timm_name, img_size=112)
        state = tr.swiglu_official_names(tr.official_state_dict(family, model, seed=2))
        self.assertEqual(tuple(state["blocks.0.mlp.w12.weight"].shape), (8192, 1536))
        self.assertEqual(tuple(state["blocks.0.mlp.w3.weight"].shape), (1536, 4096))
        # In memory: the 60M-parameter file round trip costs seconds and tests nothing new here.
        module, params, spec, report = self._convert_in_memory(family, state, depth=depth)
        self.assertEqual((spec.size, spec.mlp, spec.native_grid), ("g", "swiglu", (8, 8)))
        self.assertEqual(report["ignored"], {"mask_token": "DINOv2 mask token"})
        for size in ((112, 112), (70, 154)):
            images = _images(size, seed=3)
            blocks, final = tr.run_timm(family, model, images)
            self._compare(
                module, params, spec, images, blocks, final, final[:, 0], f"{family}-g {size}"
            )


def _text_tower_keys(report: dict) -> list[str]:
    return [k for k, why in report["ignored"].items() if why.startswith("CLIP text tower")]


@test_util.requires("open_clip")
class ClipTest(FamilyParityTestCase):
    @parameterized.named_parameters(
        ("openai_quickgelu_pth", "clip", True, ".bin"),
        ("openclip_gelu_safetensors", "openclip", False, ".safetensors"),
    )
    def test_open_clip_layout(self, family, quick_gelu, suffix):
        model = fr.build_open_clip(
            width=192,
            depth=2,
            patch=16,
            image_size=224,
            embed_dim=128,
            quick_gelu=quick_gelu,
            seed=1,
        )
        state = model.state_dict()
        module, params, spec, report = self._convert(family, state, family, suffix, depth=2)
        self.assertEqual(spec.name, f"{family}_vitti16-depth2")
        self.assertEqual(spec.mlp, "quick_gelu" if quick_gelu else "gelu")
        self.assertEqual((spec.global_pool, spec.proj_dim), ("cls_proj", 128))
        # Every text-tower key is ignored, with its reason recorded.
        text = sorted(k for k in state if not k.startswith("visual."))
        self.assertEqual(sorted(report["ignored"]), text)
        self.assertLen(_text_tower_keys(report), len(text) - 1)
        self.assertIn("logit_scale", report["ignored"])
        for size in ((224, 224), (160, 288)):
            reference = (
                model if size == (224, 224) else fr.open_clip_at(model, size, quick_gelu=quick_gelu)
            )
            images = _images(size, seed=2)
            blocks, final, pooled = fr.run_open_clip(reference, images)
            self._compare(module, params, spec, images, blocks, final, pooled, f"{family} {size}")

    def test_transformers_layout_with_and_without_projection(self):
        model = fr.build_hf_clip(width=192, depth=2, patch=16, embed_dim=128, seed=3)
        state = dict(model.state_dict())
        # A CLIPModel file also holds the text model: it must be ignored with its reason.
        state["text_model.embeddings.token_embedding.weight"] = torch.zeros(fr.VOCAB, 64)
        state["text_projection.weight"] = torch.zeros(128, 64)
        state["logit_scale"] = torch.tensor(4.6)
        module, params, spec, report = self._convert(
            "clip_hf", state, "hf", ".safetensors", depth=2
        )
        self.assertEqual((spec.name, spec.proj_dim), ("clip_hf_vitti16-depth2", 128))
        self.assertLen(_text_tower_keys(report), 2)
        for size in ((224, 224), (192, 256)):
            images = _images(size, seed=4)
            blocks, final, embeds, pooler = fr.run_hf_clip(model, images)
            self._compare(module, params, spec, images, blocks, final, embeds, f"clip_hf {size}")
        # CLIPVisionModel (no visual_projection): the global output is transformers' pooler_output.
        del state["visual_projection.weight"]
        module, params, spec, _ = self._convert(
            "clip_hf", state, "hf_noproj", ".safetensors", depth=2
        )
        self.assertEqual((spec.global_pool, spec.proj_dim), ("cls", 0))
        images = _images((224, 224), seed=5)
        blocks, final, _, pooler = fr.run_hf_clip(model, images)
        self._compare(module, params, spec, images, blocks, final, pooler, "clip_hf no projection")

    def test_torchscript_archive_is_refused_without_running_it(self):
        class Scripted(torch.nn.Module):
            def forward(self, x):
                return x + 1

        path = os.path.join(self.tmp, "ViT-B-16.pt")
        torch.jit.save(torch.jit.script(Scripted()), path)
        with self.assertRaisesRegex(
            CheckpointError,
            r"TorchScript archive.*open_clip_pytorch_model\.bin.*model\.safetensors",
        ):
            convert.convert_file("clip", path, os.path.join(self.tmp, "out"))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "out")))

    def test_wrong_family_truncated_and_mixed_files_list_every_key(self):
        model = fr.build_open_clip(
            width=192, depth=1, patch=16, image_size=224, embed_dim=128, quick_gelu=True, seed=6
        )
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        # As another family: every key the dino layout misses and every visual key it does not know.
        with self.assertRaises(CheckpointError) as ctx:
            convert.convert_checkpoint("dino", state, depth=1)
        message = str(ctx.exception)
        self.assertIn("visual.conv1.weight", message)
        self.assertIn("patch_embed.proj.weight", message)
        self.assertRegex(message, r"match family \['clip', 'openclip'\]")
        # Truncated: a missing block tensor and a missing ln_post are both listed.
        partial = {k: v for k, v in state.items() if "resblocks.0.mlp.c_fc" not in k}
        del partial["visual.ln_post.bias"]
        with self.assertRaisesRegex(
            CheckpointError, r"missing \(3.*ln_post\.bias, .*c_fc\.bias, .*c_fc\.weight"
        ):
            convert.convert_checkpoint("clip", partial, depth=1)
        # Mixed: an open_clip file with transformers keys added is refused, naming them.
        mixed = dict(state)
        mixed["vision_model.pre_layrnorm.weight"] = np.ones(192, np.float32)
        with self.assertRaisesRegex(
            CheckpointError, r"unexpected \(1\): vision_model\.pre_layrnorm"
        ):
            convert.convert_checkpoint("clip", mixed, depth=1)
        path = os.path.join(self.tmp, "cut.safetensors")
        from safetensors.numpy import save_file

        save_file(state, path)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        with self.assertRaisesRegex(CheckpointError, "truncated or corrupted"):
            convert.convert_file("clip", path, os.path.join(self.tmp, "cut"))


def _timm_count(model) -> int:
    """Parameters of a timm model without its classifier head."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head."))


class TimmTest(FamilyParityTestCase):
    @parameterized.named_parameters(
        # (timm name, model_args, native size, rectangular size, class row added by vitjax)
        ("deit_tiny", "deit_tiny_patch16_224", {"depth": 2}, (224, 224), (160, 288), 0),
        (
            "augreg_small",
            "vit_small_patch16_224.augreg_in21k_ft_in1k",
            {"depth": 2, "img_size": 128},
            (128, 128),
            (96, 160),
            0,
        ),
        # no_embed_class, registers and LayerScale.
        (
            "dinov2_reg_no_embed_class",
            "vit_small_patch14_reg4_dinov2",
            {"depth": 2, "img_size": 112},
            (112, 112),
            (84, 140),
            384,
        ),
        # norm_pre, no patch-embedding bias, 1e-5 LayerNorm (CLIP towers in timm).
        (
            "clip_pre_norm",
            "vit_base_patch16_clip_224.openai",
            {"depth": 2, "embed_dim": 192, "num_heads": 3},
            (224, 224),
            (176, 240),
            0,
        ),
        # qkv_bias=False in every block.
        (
            "no_qkv_bias",
            "vit_small_patch16_224",
            {"depth": 2, "qkv_bias": False, "img_size": 96},
            (96, 96),
            (64, 128),
            0,
        ),
        # No class token, attention-pooling (MAP) head: timm's SigLIP definition.
        (
            "siglip_map_no_cls",
            "vit_base_patch16_siglip_224",
            {"depth": 2, "embed_dim": 192, "num_heads": 3, "img_size": 64},
            (64, 64),
            (48, 80),
            0,
        ),
    )
    def test_hub_pair_converts_with_parity(self, name, args, native, rect, cls_row):
        args = {**args, "dynamic_img_size": True}
        model = tr.randomize_(timm.create_model(name, pretrained=False, **args), seed=11)
        directory = os.path.join(self.tmp, "hub")
        weights = fr.save_timm_hub_pair(model, directory, args)
        out = os.path.join(self.tmp, "out")
        conversion = convert.convert_file("timm", weights, out)
        module, params, spec = models.load(out)
        tag = model.pretrained_cfg.get("tag")
        self.assertEqual(spec.name, f"timm_{name.split('.')[0]}.{tag}")
        # Parameter count: timm's own without the head (+ the zero class position row that
        # vitjax stores for no_embed_class tables).
        self.assertEqual(models.count_params(spec), _timm_count(model) + cls_row)
        # Preprocessing from pretrained_cfg.
        pretrained = model.pretrained_cfg
        self.assertEqual(spec.preprocessing.mean, tuple(pretrained["mean"]))
        self.assertEqual(spec.preprocessing.std, tuple(pretrained["std"]))
        self.assertEqual(spec.preprocessing.crop, pretrained["input_size"][1])
        self.assertEqual(
            spec.preprocessing.resize, int(pretrained["input_size"][1] / pretrained["crop_pct"])
        )
        head = {k for k in model.state_dict() if k.startswith("head.")}
        self.assertEqual(set(conversion.ignored), head)
        for size in (native, rect):
            images = _images(size, seed=12)
            blocks, final, pooled = fr.run_timm_vit(model, images)
            self._compare(module, params, spec, images, blocks, final, pooled, f"{name} {size}")

    @parameterized.named_parameters(
        (
            "gap_no_cls_no_qkv_bias",
            "vit_medium_patch16_gap_256",
            {"depth": 1},
            ["class_token=False with global_pool='avg'", "global_pool='avg' (only"],
        ),
        (
            "map_with_class_token_and_registers",
            "vit_base_patch16_siglip_224",
            {"depth": 1, "embed_dim": 192, "num_heads": 3, "class_token": True, "reg_tokens": 2},
            ["global_pool='map' with a class token", "global_pool='map' with register tokens"],
        ),
        (
            "eva02_rope",
            "eva02_tiny_patch14_224",
            {"depth": 1},
            [
                "rotary position embedding RotaryEmbeddingCat (only timm's DINOv3 RoPE",
                "absolute position table (use_abs_pos_emb=True) next to RoPE",
                "blocks.0: interleaved RoPE in attention",
                "fc_norm (pooled-feature norm)",
            ],
        ),
        (
            "eva02_sub_layernorms",
            "eva02_base_patch14_224",
            {"depth": 1, "embed_dim": 192, "num_heads": 3},
            ["blocks.0: sub-LayerNorm in the MLP (scale_mlp)", "RotaryEmbeddingCat"],
        ),
        (
            "dinov3_port_other_rope_and_qk_norm",
            "vit_small_patch16_dinov3",
            {"depth": 1, "rope_temperature": 10000, "rope_rotate_half": False, "qk_norm": True},
            [
                "rope_temperature=10000 (only DINOv3's base 100)",
                "interleaved RoPE layout (rope_rotate_half=False",
                "blocks.0.attn.q_norm (qk_norm)",
                "blocks.0.attn.k_norm (qk_norm)",
            ],
        ),
        (
            "dinov3_port_post_norm_blocks",
            "vit_small_patch16_dinov3_qkvb",
            {"depth": 1, "use_post_norm": True, "use_abs_pos_emb": True},
            ["blocks.0: EvaBlockPostNorm (use_post_norm", "absolute position table"],
        ),
        (
            "qk_norm_prefix_positions",
            "vit_small_patch16_224",
            {"depth": 2, "qk_norm": True, "reg_tokens": 2},
            ["blocks.0.attn.q_norm", "blocks.1.attn.k_norm", "reg_tokens with position"],
        ),
    )
    def test_unsupported_options_are_all_listed(self, name, args, expected):
        model = timm.create_model(name, pretrained=False, **args)
        weights = fr.save_timm_hub_pair(model, os.path.join(self.tmp, "hub"), args)
        with self.assertRaises(CheckpointError) as ctx:
            convert.convert_file("timm", weights, os.path.join(self.tmp, "out"))
        message = str(ctx.exception)
        self.assertIn("cannot express", message)
        for option in expected:
            self.assertIn(option, message)
        # qkv_bias=False (vit_medium_patch16_gap_256) is expressible: not listed.
        self.assertNotIn("qkv_bias", message)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "out")))

    @parameterized.named_parameters(
        # (timm name, model_args, dinov3 size, qkv_bias): timm's default 'avg' pool, GELU, no
        # qkv bias; then SwiGLU (fc1_g/fc1_x) with q/v biases and CLS pooling.
        ("small", "vit_small_patch16_dinov3", {}, "s", "none"),
        (
            "small_plus_qkvb",
            "vit_small_plus_patch16_dinov3_qkvb",
            {"global_pool": "token"},
            "splus",
            "qv",
        ),
    )
    def test_dinov3_port_converts_onto_dinov3(self, name, args, size, qkv_bias):
        """timm's Eva DINOv3 ports: per-block tokens equal timm's at native and rectangular size."""
        args = {"depth": 2, "img_size": 64, **args}
        model = tr.randomize_(timm.create_model(name, pretrained=False, **args), seed=11)
        weights = fr.save_timm_hub_pair(model, os.path.join(self.tmp, "hub"), args)
        out = os.path.join(self.tmp, "out")
        conversion = convert.convert_file("timm", weights, out)
        module, params, spec = models.load(out)
        self.assertEqual((spec.family, spec.size, spec.qkv_bias), ("dinov3", size, qkv_bias))
        self.assertEqual((spec.pos_embed, spec.num_registers, spec.layerscale), ("rope", 4, True))
        self.assertEqual(spec.name, f"timm_{name}.lvd1689m")
        self.assertEqual(spec.norm_eps, model.norm.eps)
        # timm's count without head; vitjax stores the zero k third of a q/v bias.
        zero_k = spec.width * spec.depth if qkv_bias == "qv" else 0
        self.assertEqual(models.count_params(spec), _timm_count(model) + zero_k)
        pretrained = model.pretrained_cfg
        self.assertEqual(spec.preprocessing.mean, tuple(pretrained["mean"]))
        self.assertEqual(spec.preprocessing.crop, pretrained["input_size"][1])
        self.assertEqual(conversion.ignored, {})
        for size_px in ((64, 64), (48, 80)):
            images = _images(size_px, seed=12)
            blocks, final, _ = fr.run_timm_vit(model, images)
            # The vitjax global output is the normed CLS token (upstream DINOv3's); timm's own
            # token pooling of its final tokens is the reference, whatever its global_pool.
            pooled = model.pool(torch.from_numpy(final), pool_type="token").numpy()
            self._compare(module, params, spec, images, blocks, final, pooled, f"{name} {size_px}")

    def test_missing_config_is_named(self):
        model = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=1)
        weights = fr.save_timm_hub_pair(model, os.path.join(self.tmp, "hub"), {"depth": 1})
        os.remove(os.path.join(self.tmp, "hub", "config.json"))
        with self.assertRaisesRegex(CheckpointError, r"needs config\.json beside the weights"):
            convert.convert_file("timm", weights, os.path.join(self.tmp, "out"))


if __name__ == "__main__":
    absltest.main()
