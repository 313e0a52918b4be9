"""SigLIP / SigLIP 2: parity in all four official layouts, resampling rules, counts, refusals.

References with random weights: transformers' `SiglipVisionModel` (also written as a big_vision
`.npz` and checked with `reference_dinov3_siglip.bigvision_forward`, a numpy transcription of
big_vision's ViT + MAPHead with its `resample_posemb`), `Siglip2VisionModel` (NaFlex, any aspect
ratio) and timm's `vit_base_patch16_siglip_224`. Every block's patch tokens, the final-norm tokens
and the pooled (MAP head) output agree within 1e-4 (float32) at the native and a rectangular grid.
"""

import functools
import json
import os
import tempfile

import jax
import numpy as np
import safetensors.torch
import scipy.ndimage
import torch
import torch.nn.functional as F
import transformers
from absl.testing import absltest, parameterized

from checkpoints_convert import convert
from tests import reference_dinov3_siglip as ref
from tests import test_util  # noqa: F401  (sets CPU devices before JAX starts)
from vitjax import models
from vitjax.errors import CheckpointError
from vitjax.models import posembed

ATOL = 1e-4
W, H, M, P = 192, 3, 768, 16  # the registered 'ti' size, depth 2
NATIVE = 64  # 4 x 4 patches


def _images(size, seed):
    return np.random.default_rng(seed).standard_normal((2, *size, 3)).astype(np.float32)


@functools.cache
def _forward(module):
    def run(params, images):
        apply = functools.partial(module.apply, {"params": params}, images)
        return apply(layers=(0, 1), norm=False), apply(layers=(-1,), norm=True)

    return jax.jit(run)


class SigLIPParityTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext(tempfile.TemporaryDirectory())
        self.enterContext(jax.default_matmul_precision("highest"))

    def _convert(self, path):
        out = os.path.join(self.tmp, os.path.basename(path) + ".out")
        convert.convert_file("siglip", path, out, depth=2)
        with open(os.path.join(out, "conversion.json")) as f:
            report = json.load(f)
        return (*models.load(out), report)

    def _compare(self, module, params, images, blocks, final, pooled, what):
        raw, normed = _forward(module)(params, images)
        rows, cols = images.shape[1] // P, images.shape[2] // P

        def check(got, want, label):
            diff = float(np.abs(np.asarray(got) - want).max())
            self.assertLessEqual(diff, ATOL, f"{what} {images.shape[1:3]} {label}: {diff:.3g}")

        for i in (0, 1):
            check(raw["patch"][i], blocks[i].reshape(2, rows, cols, W), f"block {i}")
        check(normed["patch"][1], final.reshape(2, rows, cols, W), "final norm")
        check(normed["cls"][1], pooled, "pooled (MAP head)")
        check(normed["global"][1], pooled, "global")
        self.assertEqual(raw["registers"], {})

    def _hf(self, seed=0):
        return ref.build_hf_siglip(
            width=W, depth=2, heads=H, mlp_dim=M, image_size=NATIVE, patch=P, seed=seed
        )

    def test_hf_siglip(self):
        model = self._hf(seed=1)
        path = os.path.join(self.tmp, "model.safetensors")
        safetensors.torch.save_file(ref.hf_siglip_file_state(model), path)
        module, params, spec, report = self._convert(path)
        self.assertEqual((spec.size, spec.native_grid, spec.pos_interp), ("ti", (4, 4), "size"))
        self.assertIn("text_model.embeddings.token_embedding.weight", report["ignored"])
        self.assertEqual(report["ignored"]["logit_scale"], "sigmoid-loss temperature and bias")
        for size in ((NATIVE, NATIVE), (48, 80)):
            images = _images(size, seed=2)
            outs = ref.run_hf_siglip(model, images)
            self._compare(module, params, images, *outs, what="hf siglip")

    def test_big_vision_npz(self):
        model = self._hf(seed=3)
        arrays = ref.hf_siglip_to_bigvision(ref.hf_siglip_file_state(model, prefix=""), heads=H)
        images = _images((NATIVE, NATIVE), seed=4)
        # The numpy big_vision reference agrees with HF at the native grid (no resampling).
        for got, want in zip(
            ref.bigvision_forward(arrays, images, 2)[1:],
            ref.run_hf_siglip(model, images)[1:],
            strict=True,
        ):
            np.testing.assert_allclose(got, want, atol=ATOL)
        path = os.path.join(self.tmp, "webli_en_b16_224_63724782.npz")
        np.savez(path, **arrays)
        module, params, spec, report = self._convert(path)
        self.assertEqual(spec.pos_interp, "bilinear_zoom")
        for key in ("params/txt/Embed_0/embedding", "params/t", "params/b"):
            self.assertIn(key, report["ignored"])
        for size in ((NATIVE, NATIVE), (48, 80), (96, 96)):
            images = _images(size, seed=5)
            outs = ref.bigvision_forward(arrays, images, 2)
            self._compare(module, params, images, *outs, what="big_vision npz")

    def test_hf_siglip2_naflex_any_aspect_ratio(self):
        model = ref.build_hf_siglip2(
            width=W, depth=2, heads=H, mlp_dim=M, num_patches=16, patch=P, seed=6
        )
        path = os.path.join(self.tmp, "naflex.safetensors")
        safetensors.torch.save_file(ref.hf_siglip_file_state(model), path)
        module, params, spec, _ = self._convert(path)
        self.assertEqual(spec.pos_interp, "bilinear_antialias")
        for size in ((NATIVE, NATIVE), (48, 80), (128, 32)):
            images = _images(size, seed=7)
            outs = ref.run_hf_siglip2(model, images, P)
            self._compare(module, params, images, *outs, what="hf siglip2")

    def test_timm(self):
        model = ref.build_timm_siglip(width=W, depth=2, heads=H, mlp_dim=M, image_size=NATIVE)
        path = os.path.join(self.tmp, "timm.safetensors")
        safetensors.torch.save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()}, path
        )
        module, params, spec, _ = self._convert(path)
        self.assertEqual((spec.pos_interp, spec.mlp), ("size_antialias", "gelu"))
        for size in ((NATIVE, NATIVE), (48, 80)):
            images = _images(size, seed=8)
            outs = ref.run_timm_siglip(model, images)
            self._compare(module, params, images, *outs, what="timm siglip")


class ResamplingRuleTest(parameterized.TestCase):
    @parameterized.parameters(((4, 4), (7, 5)), ((16, 16), (12, 20)), ((14, 14), (1, 3)))
    def test_big_vision_zoom(self, native, target):
        table = np.random.default_rng(0).standard_normal((*native, 6))
        want = scipy.ndimage.zoom(table, (target[0] / native[0], target[1] / native[1], 1), order=1)
        rows = posembed.resample_matrix(native[0], target[0], "bilinear_zoom")
        cols = posembed.resample_matrix(native[1], target[1], "bilinear_zoom")
        np.testing.assert_allclose(np.einsum("ih,jw,hwd->ijd", rows, cols, table), want, atol=1e-12)

    @parameterized.parameters((16, 7), (16, 40), (4, 4), (5, 3))
    def test_naflex_antialiased_bilinear(self, native, target):
        table = torch.randn(1, 3, native, native, dtype=torch.float64)
        want = F.interpolate(table, size=(target, target), mode="bilinear", antialias=True)
        m = posembed.resample_matrix(native, target, "bilinear_antialias")
        got = np.einsum("ih,jw,bchw->bcij", m, m, table.numpy())
        np.testing.assert_allclose(got, want.numpy(), atol=1e-10)


# Published HF configs (hidden, intermediate, layers, heads, patch, image size): siglip-base-patch16-224,
# siglip-large-patch16-256, siglip-so400m-patch14-224, siglip2-so400m-patch16-256,
# siglip2-giant-opt-patch16-256; 'ti' is vitjax's test size.
HF_SIGLIP = {
    ("ti", 16): (192, 768, 12, 3, 16, 224),
    ("b", 16): (768, 3072, 12, 12, 16, 224),
    ("l", 16): (1024, 4096, 24, 16, 16, 256),
    ("so400m", 14): (1152, 4304, 27, 16, 14, 224),
    ("so400m", 16): (1152, 4304, 27, 16, 16, 256),
    ("g", 16): (1536, 6144, 40, 16, 16, 256),
}


class SigLIPCountTest(parameterized.TestCase):
    @parameterized.parameters(*HF_SIGLIP)
    def test_parameter_count_matches_transformers(self, size, patch):
        hidden, mlp, depth, heads, patch, image = HF_SIGLIP[(size, patch)]
        config = transformers.SiglipVisionConfig(
            hidden_size=hidden,
            intermediate_size=mlp,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            image_size=image,
            patch_size=patch,
        )
        with torch.device("meta"):
            model = transformers.SiglipVisionModel(config)
        want = sum(p.numel() for p in model.parameters())
        # The registered native grid may differ from this file's (so400m/16 at 256 px): the
        # converter reads the grid off the table, so compare at the file's grid.
        spec = models.get_spec("siglip", size, patch_size=patch, native_grid=(image // patch,) * 2)
        self.assertEqual(models.count_params(spec), want)


class SigLIPLayoutTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext(tempfile.TemporaryDirectory())
        model = ref.build_hf_siglip(
            width=W, depth=2, heads=H, mlp_dim=M, image_size=NATIVE, patch=P, seed=9
        )
        state = ref.hf_siglip_file_state(model, text=False)
        self.hf = {k: v.numpy() for k, v in state.items()}
        self.npz = ref.hf_siglip_to_bigvision(ref.hf_siglip_file_state(model, prefix=""), H)

    def _error(self, checkpoint, family="siglip") -> str:
        with self.assertRaises(CheckpointError) as ctx:
            convert.convert_checkpoint(family, checkpoint, depth=2, source="f")
        return str(ctx.exception)

    def test_wrong_family_and_truncated_tower(self):
        self.assertIn("the keys match family ['siglip'] exactly", self._error(self.npz, "dinov3"))
        cut = {k: v for k, v in self.npz.items() if "encoderblock_1/" not in k}
        message = self._error(cut)
        self.assertIn("missing (16, official names)", message)
        self.assertIn("img/Transformer/encoderblock_1/MlpBlock_0/Dense_1/kernel", message)

    def test_mixed_layout_lists_every_foreign_key(self):
        timm_like = {"blocks.0.attn.qkv.weight": np.zeros((3 * W, W), np.float32)}
        timm_like["attn_pool.latent"] = np.zeros((1, 1, W), np.float32)
        message = self._error({**self.hf, **timm_like})
        self.assertIn("unexpected (2): attn_pool.latent, blocks.0.attn.qkv.weight", message)

    def test_npz_files_are_read_without_pickle(self):
        path = os.path.join(self.tmp, "bad.npz")
        np.savez(path, **{"params/img/embedding/kernel": np.asarray([object()], dtype=object)})
        with self.assertRaisesRegex(CheckpointError, "pickled objects, which are refused"):
            convert.convert_file("siglip", path, os.path.join(self.tmp, "out"))
        path = os.path.join(self.tmp, "cut.npz")
        np.savez(path, **self.npz)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        with self.assertRaisesRegex(CheckpointError, "truncated"):
            convert.convert_file("siglip", path, os.path.join(self.tmp, "out"))


if __name__ == "__main__":
    absltest.main()
