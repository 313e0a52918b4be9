"""Family records: one registry that the zoo and the converter both follow."""

import os
import subprocess
import sys

import numpy as np
from absl.testing import absltest, parameterized

from tests import test_util  # noqa: F401
from vitjax import errors, models
from vitjax.models import families

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RegistryTest(parameterized.TestCase):
    def test_registry_converter_and_zoo_agree(self):
        import checkpoints_convert
        from checkpoints_convert import layouts

        names = [f.name for f in families.list_families()]
        self.assertLen(set(names), len(names))
        self.assertGreaterEqual(len(names), 8)
        zoo = {family for family, _, _ in models.list_variants()}
        self.assertEqual(set(names), zoo)
        self.assertEqual(tuple(names), models.FAMILIES)
        self.assertEqual(tuple(names), checkpoints_convert.FAMILIES)
        self.assertEqual(tuple(names), layouts.convertible_families())
        # Every record names a registered layout and every layout belongs to a family.
        used = {f.layout for f in families.list_families()}
        self.assertEqual(used, set(layouts.layout_names()))
        for family in names:
            with self.subTest(family=family):
                self.assertEqual(
                    layouts.get_layout(family).name, families.get_family(family).layout
                )

    def test_the_cli_offers_every_family(self):
        from absl import flags

        from checkpoints_convert import __main__  # noqa: F401  (defines --family)

        self.assertEqual(tuple(flags.FLAGS["family"].parser.enum_values), models.FAMILIES)

    def test_unknown_names_list_the_known_ones(self):
        from checkpoints_convert import layouts

        with self.assertRaisesRegex(errors.ConfigError, r"known families: \['dino', 'ibot'"):
            families.get_family("deit3")
        with self.assertRaisesRegex(errors.CheckpointError, "known families: .*'dinov2_reg'"):
            layouts.get_layout("deit3")
        with self.assertRaisesRegex(errors.ConfigError, r"known sizes: \['ti', 'b'\]"):
            families.get_family("simmim").variant("g")
        with self.assertRaisesRegex(errors.ConfigError, "already registered"):
            families.register_family(families.get_family("dino"))

    def test_bad_records_are_refused(self):
        variants = families.standard_variants({"ti": (16,)})
        with self.assertRaisesRegex(errors.ConfigError, "mlp 'relu' is not one of"):
            families.FamilyRecord("x", variants, layout="dino", mlp="relu")
        with self.assertRaisesRegex(errors.ConfigError, "unique sizes"):
            families.FamilyRecord("x", variants + variants, layout="dino")

    def test_record_and_spec_defaults_agree(self):
        # The architecture defaults are written in both dataclasses (a hand-built ModelSpec needs
        # them too); they must say the same thing.
        record = families.FamilyRecord.__dataclass_fields__
        spec = models.ModelSpec.__dataclass_fields__
        for field in families.ARCH_FIELDS:
            self.assertEqual(record[field].default, spec[field].default, field)

    def test_record_fields_become_spec_fields(self):
        spec_fields = {f for f in models.ModelSpec.__dataclass_fields__}
        self.assertEqual(set(families.ARCH_FIELDS) - spec_fields, set())
        for record in families.list_families():
            for variant in record.variants:
                spec = models.get_spec(record.name, variant.size, variant.patch_sizes[0])
                overridden = dict(variant.overrides)
                want = {f: overridden.get(f, getattr(record, f)) for f in families.ARCH_FIELDS}
                got = {f: getattr(spec, f) for f in families.ARCH_FIELDS}
                self.assertEqual(got, want, spec.name)
                self.assertEqual(
                    (spec.width, spec.depth, spec.num_heads, spec.mlp_dim),
                    (variant.width, variant.depth, variant.num_heads, variant.mlp_dim),
                )

    def test_a_new_family_is_one_record_and_one_layout(self):
        """Registering a record and a layout module is all the zoo and the converter need."""
        script = """
import numpy as np
from checkpoints_convert import convert, layouts
from checkpoints_convert.layouts.base import TIMM_BLOCK, Layout, register_layout
from vitjax import models
from vitjax.models import families

families.register_family(families.FamilyRecord(
    "toy", families.standard_variants({"ti": (16,)}), layout="toy_layout"))
register_layout(Layout(name="toy_layout", block=TIMM_BLOCK, ignorable=((r"head\\..*", "head"),)))
spec = models.get_spec("toy", "ti", depth=1)
tensors = {}
for rule in layouts.encoder_rules("toy", convert.encoder_dims(spec)):
    for key, shape in zip(rule.sources, rule.shapes):
        tensors[key] = np.zeros(shape, np.float32)
tensors["head.weight"] = np.zeros((10, 192), np.float32)
conversion = convert.convert_checkpoint("toy", tensors, depth=1)
print(conversion.spec.name, len(conversion.converted), sorted(conversion.ignored.values()))
"""
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO_ROOT},
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertEqual(result.stdout.strip().splitlines()[-1], "toy_vitti16-depth1 18 ['head']")


class ParamShapesTest(parameterized.TestCase):
    @parameterized.parameters(("dinov2_reg", "ti", 12), ("clip", "ti", 11), ("dinov2", "g", 3))
    def test_shapes_and_order_equal_a_full_trace(self, family, size, depth):
        """param_shapes traces two blocks and repeats the last; the full module must agree."""
        import jax
        import jax.numpy as jnp

        spec = models.get_spec(family, size, depth=depth)
        images = jax.ShapeDtypeStruct((1, *spec.native_image_size, 3), jnp.float32)
        tree = jax.eval_shape(models.create_model(spec).init, jax.random.key(0), images)
        full = [(k, tuple(v.shape)) for k, v in models.flatten_params(tree["params"]).items()]
        self.assertEqual(list(models.param_shapes(spec).items()), full)


class GlobalOutputTest(absltest.TestCase):
    def test_global_is_the_cls_token_without_a_projection(self):
        module, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        images = np.random.default_rng(0).normal(size=(2, 32, 48, 3)).astype(np.float32)
        out = module.apply({"params": params}, images)
        self.assertEqual(spec.global_pool, "cls")
        np.testing.assert_array_equal(out["global"][0], out["cls"][0])


if __name__ == "__main__":
    absltest.main()
