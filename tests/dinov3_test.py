"""DINOv3: parity with transformers (and timm) in both official layouts, counts, refusals, sharding.

The reference is transformers' `DINOv3ViTModel` with random weights, written as its own
safetensors file and, renamed, as the official facebookresearch/dinov3 `.pth` (timm's loader for
official files cross-checks that renaming); the converted vitjax model must reproduce every block's
patch, CLS and storage tokens (max abs diff <= 1e-4, float32) at the native and a rectangular size.
"""

import functools
import json
import os
import tempfile
from unittest import mock

import flax
import jax
import jax.numpy as jnp
import numpy as np
import safetensors.torch
import torch
import transformers
from absl.testing import absltest, parameterized
from jax.sharding import Mesh

from checkpoints_convert import convert
from tests import reference_dinov3_siglip as ref
from tests import test_util  # noqa: F401  (sets CPU devices before JAX starts)
from tests import torch_reference as tr
from vitjax import extract, models, sharding
from vitjax.errors import CheckpointError, ConfigError

ATOL = 1e-4
# (width, heads, mlp_dim, swiglu) of the depth-2 references: the registered 'ti' and S+ sizes.
TI = (192, 3, 768, False)
SPLUS = (384, 6, 1536, True)


def _images(size, seed):
    return np.random.default_rng(seed).standard_normal((2, *size, 3)).astype(np.float32)


@functools.cache
def _forward(module):
    def run(params, images):
        apply = functools.partial(module.apply, {"params": params}, images)
        return apply(layers=(0, 1), norm=False), apply(layers=(-1,), norm=True)

    return jax.jit(run)


def _reference(dims, seed=0):
    width, heads, mlp, gated = dims
    return ref.build_hf_dinov3(
        width=width, depth=2, heads=heads, mlp_dim=mlp, gated=gated, seed=seed
    )


class DINOv3ParityTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext(tempfile.TemporaryDirectory())
        self.enterContext(jax.default_matmul_precision("highest"))

    def _convert(self, path):
        out = os.path.join(self.tmp, os.path.basename(path) + ".out")
        conversion = convert.convert_file("dinov3", path, out, depth=2)
        return (*models.load(out), conversion, out)

    def _compare(self, module, params, model, size, what):
        images = _images(size, seed=3)
        blocks, final = ref.run_hf_dinov3(model, images)
        raw, normed = _forward(module)(params, images)
        rows, cols = size[0] // 16, size[1] // 16
        for label, out, i, tokens in (
            ("block 0", raw, 0, blocks[0]),
            ("block 1", raw, 1, blocks[1]),
            ("final norm", normed, 1, final),
        ):
            want = {
                "cls": tokens[:, 0],
                "registers": tokens[:, 1:5],
                "patch": tokens[:, 5:].reshape(2, rows, cols, -1),
            }
            for key, value in want.items():
                diff = float(np.abs(np.asarray(out[key][i]) - value).max())
                self.assertLessEqual(diff, ATOL, f"{what} {size} {label} {key}: {diff:.3g}")

    @parameterized.named_parameters(("official_ti", "official", TI), ("hf_splus", "hf", SPLUS))
    def test_parity(self, layout, dims):
        model = _reference(dims, seed=1)
        hf = ref.hf_dinov3_state(model)
        if layout == "hf":
            path = os.path.join(self.tmp, "model.safetensors")
            safetensors.torch.save_file(hf, path)
        else:
            official = ref.hf_dinov3_to_official(hf, seed=2, local_cls_norm=True)
            official["rope_embed.periods"] = ref.official_periods(dims[0] // dims[1])
            path = tr.save(official, os.path.join(self.tmp, "dinov3_vits16_pretrain.pth"))
        module, params, spec, conversion, _ = self._convert(path)
        self.assertEqual(spec.size, "splus" if dims[3] else "ti")
        self.assertEqual((spec.pos_embed, spec.num_registers, spec.norm_eps), ("rope", 4, 1e-5))
        for size in ((64, 64), (48, 80)):
            self._compare(module, params, model, size, layout)

    def test_official_names_are_what_timm_loads(self):
        """The test's official renaming agrees with timm's own loader of official files."""
        width, heads, mlp, gated = SPLUS
        model = _reference(SPLUS, seed=4)
        official = ref.hf_dinov3_to_official(ref.hf_dinov3_state(model))
        timm_model = ref.timm_dinov3_from_official(
            official, width=width, depth=2, heads=heads, mlp_dim=mlp
        )
        images = _images((48, 80), seed=5)
        with torch.no_grad():
            got = timm_model.forward_features(torch.from_numpy(images.transpose(0, 3, 1, 2)))
        np.testing.assert_allclose(got.numpy(), ref.run_hf_dinov3(model, images)[1], atol=ATOL)

    def test_official_swiglu_and_report(self):
        model = _reference(SPLUS, seed=6)
        official = ref.hf_dinov3_to_official(ref.hf_dinov3_state(model), seed=7)
        path = tr.save(official, os.path.join(self.tmp, "dinov3_vits16plus_pretrain.pth"))
        module, params, spec, conversion, out = self._convert(path)
        self.assertEqual((spec.size, spec.mlp), ("splus", "swiglu"))
        self._compare(module, params, model, (48, 80), "official S+")
        with open(os.path.join(out, "conversion.json")) as f:
            report = json.load(f)
        self.assertEqual(
            report["ignored"], {"mask_token": "DINOv3 mask token (masked-image training only)"}
        )


class DINOv3LayoutTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext(tempfile.TemporaryDirectory())
        model = _reference(TI, seed=8)
        self.hf = {k: v.numpy() for k, v in ref.hf_dinov3_state(model).items()}
        official = ref.hf_dinov3_to_official(ref.hf_dinov3_state(model), seed=9)
        official["rope_embed.periods"] = ref.official_periods(64)
        self.official = {k: v.numpy() for k, v in official.items()}

    def _error(self, checkpoint, family="dinov3") -> str:
        with self.assertRaises(CheckpointError) as ctx:
            convert.convert_checkpoint(family, checkpoint, depth=2, source="f.pth")
        return str(ctx.exception)

    def test_masked_k_bias_is_zero_and_k_bias_mask_is_checked(self):
        conversion = convert.convert_checkpoint("dinov3", self.official, depth=2)
        bias = conversion.params["block_0"]["attn"]["qkv"]["bias"]
        np.testing.assert_array_equal(bias[192:384], 0.0)
        np.testing.assert_array_equal(bias[:192], self.official["blocks.0.attn.qkv.bias"][:192])
        bad = dict(self.official)
        bad["blocks.1.attn.qkv.bias_mask"] = np.ones(576, np.float32)
        self.assertIn("blocks.1.attn.qkv.bias_mask: expected ones for q and v", self._error(bad))

    def test_rope_periods_are_checked(self):
        bad = dict(self.official)
        bad["rope_embed.periods"] = ref.official_periods(64, base=10000.0).numpy()
        self.assertIn("rope_embed.periods: expected base-100 periods", self._error(bad))

    def test_mixed_layout_lists_every_foreign_key(self):
        mixed = {**self.official, **{k: v for k, v in self.hf.items() if k.startswith("model.")}}
        message = self._error(mixed)
        foreign = [k for k in self.hf if k.startswith("model.")]
        self.assertIn(f"unexpected ({len(foreign)})", message)
        for key in foreign:
            self.assertIn(key, message)

    def test_truncated_and_wrong_family(self):
        del_keys = {k: v for k, v in self.hf.items() if not k.startswith("model.layer.1.")}
        message = self._error(del_keys)
        self.assertIn("missing (", message)
        self.assertIn("layer.1.attention.q_proj.weight", message)
        message = self._error(self.official, family="siglip")
        self.assertIn("the keys match family ['dinov3'] exactly", message)
        path = tr.save(
            tr.wrap("dino", {"x": torch.zeros(3)}, "flat"), os.path.join(self.tmp, "t.pth")
        )
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        with self.assertRaisesRegex(CheckpointError, "truncated"):
            convert.convert_file("dinov3", path, os.path.join(self.tmp, "out"))

    def test_satellite_weights_get_their_statistics(self):
        path = tr.save(
            {k: torch.from_numpy(v) for k, v in self.official.items()},
            os.path.join(self.tmp, "dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth"),
        )
        conversion = convert.convert_file("dinov3", path, os.path.join(self.tmp, "sat"), depth=2)
        self.assertEqual(conversion.spec.preprocessing.mean, (0.430, 0.411, 0.296))
        self.assertEqual(conversion.spec.preprocessing.std, (0.213, 0.156, 0.143))
        lvd = convert.convert_checkpoint("dinov3", self.official, depth=2)
        self.assertEqual(
            lvd.spec.preprocessing.mean, models.get_spec("dinov3", "ti").preprocessing.mean
        )


# The official constructor arguments (facebookresearch/dinov3 `hub/backbones.py`): embed_dim, depth,
# heads, ffn_ratio, ffn_layer (SwiGLU alignment; 0 = plain MLP), qkv_bias. 'ti' is vitjax's test size.
OFFICIAL_DINOV3 = {
    "ti": (192, 12, 3, 4, 0, True),
    "s": (384, 12, 6, 4, 0, True),
    "splus": (384, 12, 6, 6, 8, True),
    "b": (768, 12, 12, 4, 0, True),
    "l": (1024, 24, 16, 4, 0, True),
    "hplus": (1280, 32, 20, 6, 8, True),
    "7b": (4096, 40, 32, 3, 64, False),
}


class DINOv3CountTest(parameterized.TestCase):
    @parameterized.parameters(*OFFICIAL_DINOV3)
    def test_parameter_count_matches_transformers(self, size):
        width, depth, heads, ratio, align, qkv_bias = OFFICIAL_DINOV3[size]
        hidden = int(width * ratio)
        if align:  # SwiGLUFFN: int(hidden * 2 / 3) rounded up to the alignment
            hidden = int(hidden * 2 / 3)
            hidden += -hidden % align
        config = transformers.DINOv3ViTConfig(
            hidden_size=width,
            intermediate_size=hidden,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            num_register_tokens=4,
            use_gated_mlp=bool(align),
            query_bias=qkv_bias,
            value_bias=qkv_bias,
            key_bias=False,
        )
        with torch.device("meta"):  # shapes only: the 7B is never allocated
            model = transformers.DINOv3ViTModel(config)
        # HF has no k bias; vitjax keeps a zero k third in the fused qkv bias (as the official
        # file does), and has no mask token.
        want = sum(p.numel() for n, p in model.named_parameters() if "mask_token" not in n)
        want += depth * width if qkv_bias else 0
        spec = models.get_spec("dinov3", size)
        self.assertEqual((spec.width, spec.num_heads, spec.mlp_dim), (width, heads, hidden))
        self.assertEqual(models.count_params(spec), want)

    def test_7b_count(self):
        self.assertEqual(models.count_params(models.get_spec("dinov3", "7b")), 6_716_030_976)


class ShardedDINOv3Test(absltest.TestCase):
    def test_7b_width_depth_2_sharded_over_model_axis(self):
        """A 7B-width (4096, 32 heads, SwiGLU 8192, no qkv bias) depth-2 model, bfloat16 parameters
        sharded over the 'model' axis of 8 simulated devices, gives the unsharded output."""
        spec = models.get_spec("dinov3", "7b", depth=2)
        module = models.create_model(spec)
        images = _images((32, 32), seed=10)
        shapes = jax.eval_shape(module.init, jax.random.key(0), images)["params"]
        mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(1, 8), ("data", "model"))
        shardings = sharding.param_shardings(shapes, mesh)

        def make(phase):
            # Deterministic non-degenerate bfloat16 parameters made in place, already sharded
            # (never on the host; cheaper than a random draw of 336M values on CPU).
            flat = flax.traverse_util.flatten_dict(shapes)
            out = {}
            for j, (path, leaf) in enumerate(flat.items()):
                index = jnp.arange(leaf.size, dtype=jnp.float32).reshape(leaf.shape)
                wave = 0.02 * jnp.sin(index * 0.7548776662 + phase * (j + 1))
                out[path] = (wave + (path[-1] in ("scale", "gamma"))).astype(jnp.bfloat16)
            return flax.traverse_util.unflatten_dict(out)

        placed = jax.jit(make, out_shardings=shardings)(jnp.float32(0.3))
        qkv = placed["block_0"]["attn"]["qkv"]["kernel"]
        self.assertEqual(qkv.sharding.spec, jax.sharding.PartitionSpec(None, "model"))
        self.assertEqual(qkv.addressable_shards[0].data.shape, (4096, 12288 // 8))
        self.assertNotIn("bias", placed["block_0"]["attn"]["qkv"])

        def run(p, x):
            return module.apply({"params": p}, x, layers=(0, 1))

        got = jax.jit(run)(placed, images)
        want = jax.jit(run)(jax.device_put(placed, jax.devices()[0]), images)
        for key in ("patch", "cls", "registers"):
            for i in (0, 1):
                np.testing.assert_allclose(
                    np.asarray(got[key][i]), np.asarray(want[key][i]), rtol=2e-2, atol=2e-2
                )


class ModelAxisExtractionTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.module, self.params, self.spec = models.random_model("dinov3", "ti", seed=3, depth=2)
        self.images = np.random.default_rng(0).integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)

    def _extract(self, mesh, **kwargs):
        return extract.extract(
            self.module,
            self.params,
            self.spec,
            self.images,
            layers=(0, 1),
            batch_size=4,
            mesh=mesh,
            with_cls=True,
            **kwargs,
        )

    def test_parameters_split_over_model_axis_give_the_same_features(self):
        one = self._extract(Mesh(np.asarray(jax.devices()[:1]), ("data",)))
        split = self._extract(Mesh(np.asarray(jax.devices()).reshape(2, 4), ("data", "model")))
        for layer in (0, 1):
            for got, want in ((split.patch, one.patch), (split.cls, one.cls)):
                np.testing.assert_allclose(got[layer], want[layer], atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(
                split.registers[layer], one.registers[layer], atol=1e-5, rtol=1e-5
            )

    def test_plan_refuses_a_model_that_does_not_fit(self):
        mesh = Mesh(np.asarray(jax.devices()).reshape(2, 4), ("data", "model"))
        with mock.patch.object(sharding, "device_memory_limit", return_value=1 << 20):
            with self.assertRaisesRegex(ConfigError, "needs about .* GiB per device") as ctx:
                extract.plan(self.module, self.params, self.spec, self.images, mesh=mesh)
        self.assertIn("4 model-axis device(s)", str(ctx.exception))
        self.assertIn("a mesh with a 'model' axis", str(ctx.exception))
        with mock.patch.object(sharding, "device_memory_limit", return_value=1 << 40):
            plan = extract.plan(self.module, self.params, self.spec, self.images, mesh=mesh)
        self.assertGreater(plan.peak_device_bytes, 0)

    def test_7b_parameter_bytes_per_device(self):
        spec = models.get_spec("dinov3", "7b")
        shapes = jax.eval_shape(
            models.create_model(spec).init, jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)
        )["params"]
        bf16 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16), shapes)
        whole = sharding.param_bytes_per_device(bf16, 1)
        self.assertEqual(whole, 2 * 6_716_030_976)
        # Everything but norms, tokens, LayerScale and the patch embedding splits 8 ways.
        self.assertLess(sharding.param_bytes_per_device(bf16, 8), whole / 7)


if __name__ == "__main__":
    absltest.main()
