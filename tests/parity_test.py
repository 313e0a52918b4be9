"""Parity of converted checkpoints with the PyPI reference implementations, family by family.

For every family: build the reference (timm, torchvision, transformers) with random weights, write
it in the official file layout and wrapper, convert it with the CLI's `convert_file`, load it with
`models.load`, and compare every block's raw output and the final-norm output at the native and at
one rectangular resolution (max abs diff <= 1e-4, float32).
"""

import functools
import os
import tempfile

import jax
import numpy as np
from absl import logging
from absl.testing import absltest, parameterized

from checkpoints_convert import convert
from tests import test_util  # noqa: F401  (sets CPU devices before JAX starts)
from vitjax import models

torch = test_util.optional_import("torch")
tr = test_util.torch_reference()

ATOL = 1e-4
BATCH = 2


def _images(size: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, *size, 3)).astype(np.float32)


@functools.cache
def _forward(module):
    """jit of (raw outputs of every block, final-norm output of the last block)."""
    depth = module.depth

    def run(params, images, gsd_ratio):
        apply = functools.partial(module.apply, {"params": params}, images, gsd_ratio=gsd_ratio)
        return apply(layers=tuple(range(depth)), norm=False), apply(layers=(-1,), norm=True)

    return jax.jit(run)


@test_util.requires(*test_util.TORCH_REFERENCE)
class ParityTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext(tempfile.TemporaryDirectory())
        torch.manual_seed(0)

    def _convert(self, family: str, checkpoint, name: str, **kwargs):
        path = os.path.join(self.tmp, f"{name}.pth")
        tr.save(checkpoint, path)
        out = os.path.join(self.tmp, name)
        conversion = convert.convert_file(family, path, out, **kwargs)
        module, params, spec = models.load(out)
        self.assertEqual(spec.weights_hash, convert.reader.file_sha256(path))
        return module, params, spec, conversion

    def _assert_randomized(self, state):
        """Every float tensor of the official state dict varies (no default ones/zeros left)."""
        for key, value in state.items():
            if value.is_floating_point() and value.numel() > 1:
                self.assertGreater(float(value.std()), 1e-3, f"{key} is not randomised")

    def _assert_close(self, got, want, what: str):
        got = np.asarray(got)
        self.assertEqual(got.shape, want.shape, what)
        diff = float(np.abs(got - want).max())
        self.assertLessEqual(diff, ATOL, f"{what}: max abs diff {diff:.3g}")
        logging.info(
            "parity %s: max abs diff %.2e (max |ref| %.2f)", what, diff, np.abs(want).max()
        )

    def _compare(self, module, params, spec, images, blocks, final, gsd_ratio=None, what=""):
        """Checks every block's tokens and the final-norm tokens against the reference."""
        raw, normed = _forward(module)(params, images, gsd_ratio)
        registers = spec.num_registers
        rows, cols = images.shape[1] // spec.patch_size, images.shape[2] // spec.patch_size
        self.assertLen(blocks, spec.depth)

        def check(out, i, ref, label):
            self._assert_close(out["cls"][i], ref[:, 0], f"{what} {label} cls")
            patches = ref[:, 1 + registers :].reshape(BATCH, rows, cols, -1)
            self._assert_close(out["patch"][i], patches, f"{what} {label} patches")
            if registers:
                self._assert_close(
                    out["registers"][i], ref[:, 1 : 1 + registers], f"{what} {label} registers"
                )

        for i, ref in enumerate(blocks):
            check(raw, i, ref, f"block {i}")
        check(normed, spec.depth - 1, final, "final norm")

    @parameterized.named_parameters(
        ("dino_teacher_full", "dino", "teacher_full"),
        ("ibot_state_dict", "ibot", "state_dict"),
        ("mae_encoder", "mae", "model"),
        ("dinov2", "dinov2", "flat"),
        ("dinov2_reg", "dinov2_reg", "flat"),
    )
    def test_timm_family(self, family, variant):
        model = tr.build_timm(family, depth=2, seed=1)
        state = tr.official_state_dict(family, model, seed=2)
        self._assert_randomized(state)
        checkpoint = tr.wrap(family, state, variant)
        module, params, spec, conversion = self._convert(family, checkpoint, family, depth=2)
        self.assertEqual(spec.family, family)
        self.assertEqual(spec.size, "b")
        native = spec.native_image_size
        rect = (native[0] - 4 * spec.patch_size, native[1] + 3 * spec.patch_size)
        if family.startswith("dinov2"):
            self.assertEqual(native, (518, 518))
            rect = (224, 308)  # the 518 px model at 224-ish sizes (16 x 22 patches)
        for size in (native, rect):
            images = _images(size, seed=3)
            blocks, final = tr.run_timm(family, model, images)
            self._compare(module, params, spec, images, blocks, final, what=f"{family} {size}")

    def test_simmim(self):
        model = tr.build_timm("simmim", depth=2, seed=4)
        state = tr.official_state_dict("simmim", model, seed=5)
        self._assert_randomized(state)
        checkpoint = {"model": state, "epoch": 799, "max_accuracy": 0.0}
        module, params, spec, conversion = self._convert("simmim", checkpoint, "simmim", depth=2)
        self.assertIn("encoder.rel_pos_bias.relative_position_index", conversion.ignored)
        self.assertIn("decoder.0.weight", conversion.ignored)
        images = _images((224, 224), seed=6)
        blocks, final = tr.run_timm("simmim", model, images)
        self._compare(module, params, spec, images, blocks, final, what="simmim 224")
        # Another (rectangular) grid: timm's BEiT resizes the shared bias table in set_input_size.
        self.assertEqual(spec.pos_interp, "rel_bias_geometric")
        model.set_input_size(img_size=(160, 288))
        images = _images((160, 288), seed=6)
        blocks, final = tr.run_timm("simmim", model, images)
        self._compare(module, params, spec, images, blocks, final, what="simmim 160x288")

    def test_torchvision(self):
        model = tr.build_torchvision(depth=2, seed=7)
        state = tr.official_state_dict("torchvision", model)
        self._assert_randomized(state)
        module, params, spec, _ = self._convert("torchvision", state, "tv", depth=2)
        for size in ((224, 224), (192, 272)):
            images = _images(size, seed=8)
            blocks, final = tr.run_torchvision(model, images)
            self._compare(module, params, spec, images, blocks, final, what=f"torchvision {size}")

    def test_scalemae(self):
        model = tr.build_timm("scalemae", depth=2, seed=9)
        state = tr.official_state_dict("scalemae", model, seed=10)
        self._assert_randomized(state)
        checkpoint = {
            "model": state,
            "epoch": 800,
            "args": tr.training_args(),
            "scaler": {"scale": 65536.0},
        }
        module, params, spec, conversion = self._convert("scalemae", checkpoint, "smae", depth=2)
        self.assertEqual((spec.size, spec.width), ("l", 1024))
        self.assertIn("pos_embed", conversion.ignored)
        self.assertIn("fpn.fpn1.0.weight", conversion.ignored)
        for size, ratio in (((224, 224), 1.0), ((160, 256), 2.5)):
            images = _images(size, seed=11)
            blocks, final = tr.run_timm("scalemae", model, images, gsd_ratio=ratio)
            self._compare(
                module,
                params,
                spec,
                images,
                blocks,
                final,
                gsd_ratio=ratio,
                what=f"scalemae {size}",
            )

    def test_mae_decoder(self):
        hf_model = tr.build_hf_mae(depth=2, decoder_depth=2, seed=12)
        state = tr.hf_mae_to_official(hf_model.state_dict())
        self._assert_randomized(state)
        module, params, spec, conversion = self._convert(
            "mae", {"model": state}, "mae_dec", depth=2, decoder_depth=2
        )
        self.assertTrue(spec.has_decoder)
        decoder, decoder_params = models.load_decoder(os.path.join(self.tmp, "mae_dec"))
        images = _images((224, 224), seed=13)
        encoded, kept, logits = tr.run_hf_mae(hf_model, images)
        tokens = jax.jit(lambda p, x, k: module.apply({"params": p}, x, keep_indices=k))(
            params, images, kept
        )["tokens"]
        self._assert_close(tokens, encoded, "mae encoder tokens (75% masked)")
        pred = jax.jit(lambda p, t, k: decoder.apply({"params": p}, t, keep_indices=k))(
            decoder_params, tokens, kept
        )
        self._assert_close(pred, logits, "mae decoder pixel predictions")

    def test_full_depth_dino_vitb16(self):
        model = tr.build_timm("dino", depth=12, seed=14)
        checkpoint = tr.official_state_dict("dino", model)
        module, params, spec, conversion = self._convert("dino", checkpoint, "dino_full")
        self.assertEqual(spec.name, "dino_vitb16")
        self.assertLen(conversion.converted, 150)  # the released file's tensor count (§2)
        images = _images((224, 224), seed=15)
        blocks, final = tr.run_timm("dino", model, images)
        self._compare(module, params, spec, images, blocks, final, what="dino vitb16 full depth")


if __name__ == "__main__":
    absltest.main()
