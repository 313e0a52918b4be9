"""Tests of checkpoints_convert: layouts, wrappers, strictness, safe reading, CLI.

Numerical parity with the reference models is in parity_test.py; here tiny (width 192) reference
models give official-layout state dicts, and the checks are on keys, shapes, values and errors.
"""

# Annotations name torch, which a venv without the oracles lacks: keep them unevaluated.
from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import re
import shlex
import subprocess
import sys
import tempfile
import types
import warnings

import numpy as np
from absl.testing import absltest, parameterized

from checkpoints_convert import convert, layouts, reader
from tests import test_util  # (sets CPU devices before JAX starts)
from vitjax import models
from vitjax.errors import CheckpointError

torch = test_util.optional_import("torch")
timm = test_util.optional_import("timm")
test_util.optional_import("safetensors.torch")  # binds safetensors.torch
safetensors = test_util.optional_import("safetensors")
tr = test_util.torch_reference()

TINY = dict(embed_dim=192, num_heads=3)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_state(family: str, depth: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-layout state dict of a width-192 ('ti') reference model."""
    if family == "torchvision":
        model = tr.build_torchvision(depth, seed, width=192, num_heads=3)
    else:
        model = tr.build_timm(family, depth, seed, **TINY)
    return tr.official_state_dict(family, model, seed=seed)


def _numpy(tree):
    if isinstance(tree, dict):
        return {k: _numpy(v) for k, v in tree.items()}
    return tree.numpy() if isinstance(tree, torch.Tensor) else tree


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = np.asarray(value)
    return out


@test_util.requires(*test_util.TORCH_REFERENCE, "safetensors")
class ConvertTestCase(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.enterContext(tempfile.TemporaryDirectory())

    def convert(self, family, checkpoint, **kwargs):
        return convert.convert_checkpoint(family, _numpy(checkpoint), **kwargs)

    def assertTreesEqual(self, a, b):
        fa, fb = _flat(a), _flat(b)
        self.assertEqual(sorted(fa), sorted(fb))
        for key in fa:
            np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)

    def save(self, obj, name):
        return tr.save(obj, os.path.join(self.tmp, name))


class MappingTest(ConvertTestCase):
    def test_dino_values_follow_the_mapping_rules(self):
        # Oracle: the documented rules (docs/checkpoints.md §3), applied to the timm tensors directly.
        state = _tiny_state("dino")
        params = self.convert("dino", state, depth=2).params
        w = state["patch_embed.proj.weight"].numpy()
        np.testing.assert_array_equal(params["patch_embed"]["kernel"], w.transpose(2, 3, 1, 0))
        qkv = state["blocks.1.attn.qkv.weight"].numpy()
        np.testing.assert_array_equal(params["block_1"]["attn"]["qkv"]["kernel"], qkv.T)
        np.testing.assert_array_equal(
            params["block_0"]["norm2"]["scale"], state["blocks.0.norm2.weight"].numpy()
        )
        np.testing.assert_array_equal(params["pos_embed"], state["pos_embed"].numpy())
        for leaf in _flat(params).values():
            self.assertEqual(leaf.dtype, np.float32)

    def test_simmim_qv_bias_and_layerscale(self):
        state = _tiny_state("simmim")
        params = self.convert("simmim", {"model": state}, depth=2).params
        q = state["encoder.blocks.0.attn.q_bias"].numpy()
        v = state["encoder.blocks.0.attn.v_bias"].numpy()
        np.testing.assert_array_equal(
            params["block_0"]["attn"]["qkv"]["bias"], np.concatenate([q, np.zeros_like(q), v])
        )
        np.testing.assert_array_equal(
            params["block_1"]["ls2"]["gamma"], state["encoder.blocks.1.gamma_2"].numpy()
        )
        self.assertEqual(params["rel_pos_bias"]["table"].shape, (732, 3))

    def test_relative_position_index_matches_timm(self):
        # Oracle: timm's BEiT buffer for the 14 x 14 window.
        model = tr.build_timm("simmim", depth=1, seed=0, **TINY)
        np.testing.assert_array_equal(
            layouts.expected_relative_position_index(14, 14),
            model.rel_pos_bias.relative_position_index.numpy(),
        )

    def test_bad_relative_position_index_is_refused(self):
        state = _tiny_state("simmim")
        index = state["encoder.rel_pos_bias.relative_position_index"].clone()
        index[3, 5] += 1
        state["encoder.rel_pos_bias.relative_position_index"] = index
        with self.assertRaisesRegex(CheckpointError, "relative_position_index: does not equal"):
            self.convert("simmim", {"model": state}, depth=2)

    def test_dinov2_reg_registers(self):
        state = _tiny_state("dinov2_reg")
        conversion = self.convert("dinov2_reg", state, depth=2)
        np.testing.assert_array_equal(
            conversion.params["register_tokens"], state["register_tokens"].numpy()
        )
        self.assertEqual(conversion.spec.num_registers, 4)
        self.assertEqual(conversion.ignored, {"mask_token": "DINOv2 mask token"})

    def test_sizes_and_patch_sizes_are_inferred(self):
        state = tr.official_state_dict(
            "dino", tr.build_timm("dino", 1, 0, embed_dim=384, num_heads=6, patch_size=8)
        )
        spec = self.convert("dino", state, depth=1).spec
        self.assertEqual((spec.size, spec.patch_size, spec.width), ("s", 8, 384))
        self.assertEqual(spec.name, "dino_vits8-depth1")
        self.assertEqual(self.convert("dino", _tiny_state("dino"), depth=2).spec.size, "ti")

    def test_explicit_size_that_disagrees_reports_shapes(self):
        with self.assertRaisesRegex(CheckpointError, r"mis-shaped .*patch_embed.proj.weight"):
            self.convert("dino", _tiny_state("dino"), size="s", depth=2)

    def test_native_grid_is_read_from_the_position_table(self):
        model = tr.build_timm("dinov2", 1, 0, img_size=224, **TINY)
        spec = self.convert("dinov2", tr.official_state_dict("dinov2", model), depth=1).spec
        self.assertEqual(spec.native_grid, (16, 16))

    def test_bfloat16_file_gives_float32_params(self):
        state = {k: v.to(torch.bfloat16) for k, v in _tiny_state("dino").items()}
        path = self.save(state, "bf16.pth")
        params = convert.convert_checkpoint("dino", reader.read_checkpoint(path), depth=2).params
        self.assertEqual(params["cls_token"].dtype, np.float32)
        np.testing.assert_array_equal(params["cls_token"], state["cls_token"].float().numpy())


class LayoutTest(parameterized.TestCase):
    @parameterized.parameters(
        # family, size, converted tensors, known-ignorable tensors of the released file (§2)
        ("dino", "b", 150, 0),
        ("ibot", "b", 150, 0),
        ("mae", "b", 150, 0),
        ("dinov2", "b", 174, 1),  # + mask_token = 175
        ("dinov2_reg", "b", 175, 1),  # + mask_token = 176
        ("torchvision", "b", 150, 2),  # + heads.head.{weight,bias} = 152
        ("simmim", "b", 186, 4),  # + mask_token, relative_position_index, decoder.0.* = 190
        ("scalemae", "l", 293, 1),  # + the unused pos_embed = 294 encoder tensors
    )
    def test_released_file_tensor_counts(self, family, size, converted, ignorable):
        spec = models.get_spec(family, size)
        keys = [
            k for r in layouts.encoder_rules(family, convert.encoder_dims(spec)) for k in r.sources
        ]
        self.assertLen(keys, converted)
        self.assertLen(set(keys), converted)
        extra = {
            "dinov2": ["mask_token"],
            "dinov2_reg": ["mask_token"],
            "torchvision": ["heads.head.weight", "heads.head.bias"],
            "simmim": [
                "mask_token",
                "rel_pos_bias.relative_position_index",
                "decoder.0.weight",
                "decoder.0.bias",
            ],
            "scalemae": ["pos_embed"],
        }.get(family, [])
        self.assertLen(extra, ignorable)
        for key in extra:
            self.assertIsNotNone(layouts.ignorable_reason(family, key), key)
            self.assertNotIn(key, keys)

    def test_mae_decoder_tensor_count(self):
        spec = models.get_spec("mae", "b")
        rules = layouts.decoder_rules(spec.width, convert.decoder_dims(spec))
        self.assertLen([k for r in rules for k in r.sources], 254 - 150)


class WrapperTest(ConvertTestCase):
    @parameterized.parameters("flat", "model", "state_dict", "teacher_full", "module", "backbone")
    def test_dino_wrappers_convert_identically(self, variant):
        state = _tiny_state("dino")
        reference = self.convert("dino", state, depth=2).params
        conversion = self.convert("dino", tr.wrap("dino", state, variant), depth=2)
        self.assertTreesEqual(conversion.params, reference)

    def test_dino_full_checkpoint_reports_what_it_leaves(self):
        state = _tiny_state("dino")
        conversion = self.convert("dino", tr.wrap("dino", state, "teacher_full"), depth=2)
        self.assertEqual(conversion.wrapper, "checkpoint['teacher']")
        self.assertEqual(
            conversion.other_entries, ["args", "dino_loss", "epoch", "optimizer", "student"]
        )
        heads = [k for k, why in conversion.ignored.items() if why == "DINO projection head"]
        self.assertLen(heads, 8)
        self.assertTrue(all(k.startswith("head.") for k in heads))

    def test_student_is_picked_by_checkpoint_key(self):
        state = _tiny_state("dino")
        student = {k: v + 1.0 for k, v in state.items()}
        expected = self.convert("dino", student, depth=2).params
        wrapped = tr.wrap("dino", state, "student_full")
        conversion = self.convert("dino", wrapped, depth=2, checkpoint_key="student")
        self.assertTreesEqual(conversion.params, expected)

    def test_ibot_student_masked_embed_is_ignored(self):
        state = _tiny_state("ibot")
        reference = self.convert("ibot", {"state_dict": state}, depth=2).params
        student = dict(state, masked_embed=tr.random_tensor((1, 192), 0))
        conversion = self.convert("ibot", {"state_dict": student}, depth=2)
        self.assertTreesEqual(conversion.params, reference)
        self.assertIn("masked_embed", conversion.ignored)

    @parameterized.parameters(
        ("dinov2_train", None, False),
        ("dinov2_train", "teacher", False),
        ("dinov2_train", "student", True),
        ("dinov2_eval", None, False),
    )
    def test_dinov2_training_layouts(self, variant, key, is_student):
        state = _tiny_state("dinov2")
        source = {k: v + 1.0 for k, v in state.items()} if is_student else state
        expected = self.convert("dinov2", source, depth=2).params
        conversion = self.convert(
            "dinov2", tr.wrap("dinov2", state, variant), depth=2, checkpoint_key=key
        )
        self.assertTreesEqual(conversion.params, expected)
        reasons = set(conversion.ignored.values())
        self.assertIn("DINOv2 training heads", reasons)
        if variant == "dinov2_train":
            other = "teacher" if is_student else "student"
            self.assertIn(f"{other} branch (reading {key or 'teacher'})", reasons)

    def test_dinov2_block_chunks(self):
        state = _tiny_state("dinov2", depth=4)
        reference = self.convert("dinov2", state, depth=4).params
        chunked = tr.chunk_blocks(state, chunk=2)
        self.assertIn("blocks.1.3.norm1.weight", chunked)
        self.assertTreesEqual(self.convert("dinov2", chunked, depth=4).params, reference)
        train = tr.wrap("dinov2", chunked, "dinov2_train")
        self.assertTreesEqual(self.convert("dinov2", train, depth=4).params, reference)

    def test_torchvision_old_and_new_mlp_names(self):
        state = _tiny_state("torchvision")
        reference = self.convert("torchvision", state, depth=2)
        old = tr.torchvision_old_mlp_names(state)
        self.assertIn("encoder.layers.encoder_layer_0.mlp.linear_1.weight", old)
        self.assertTreesEqual(self.convert("torchvision", old, depth=2).params, reference.params)
        self.assertEqual(set(reference.ignored), {"heads.head.weight", "heads.head.bias"})

    def test_simmim_training_checkpoint_with_yacs_config(self):
        # SimMIM's save_checkpoint pickles a yacs CfgNode; a stand-in module plays yacs here.
        yacs = types.ModuleType("yacs")
        yacs_config = types.ModuleType("yacs.config")

        class CfgNode(dict):
            def __init__(self, init=None):
                super().__init__(init or {})
                self.__dict__["__immutable__"] = True

        CfgNode.__module__ = "yacs.config"
        CfgNode.__qualname__ = "CfgNode"
        yacs_config.CfgNode = CfgNode
        state = _tiny_state("simmim")
        checkpoint = {
            "model": state,
            "optimizer": {"state": {}, "param_groups": []},
            "lr_scheduler": {"last_epoch": 3},
            "max_accuracy": np.float64(0.0),
            "epoch": 799,
            "config": CfgNode({"MODEL": CfgNode({"TYPE": "vit"})}),
        }
        with absltest.mock.patch.dict(sys.modules, {"yacs": yacs, "yacs.config": yacs_config}):
            path = self.save(checkpoint, "simmim_full.pth")
        loaded = reader.read_checkpoint(path)
        self.assertEqual(loaded["config"], {"MODEL": {"TYPE": "vit"}})
        conversion = convert.convert_checkpoint("simmim", loaded, depth=2)
        self.assertEqual(conversion.wrapper, "checkpoint['model']")
        self.assertIn("encoder.mask_token", conversion.ignored)

    def test_mae_with_and_without_decoder(self):
        hf_model = tr.build_hf_mae(depth=1, decoder_depth=1, seed=0)
        state = tr.hf_mae_to_official(hf_model.state_dict())
        full = self.convert("mae", {"model": state}, depth=1, decoder_depth=1)
        self.assertTrue(full.spec.has_decoder)
        self.assertEqual(full.spec.name, "mae_vitb16-decoder_depth1-depth1")
        np.testing.assert_array_equal(
            full.decoder_params["decoder_pred"]["kernel"], state["decoder_pred.weight"].numpy().T
        )
        encoder_only = {
            k: v for k, v in state.items() if not k.startswith(("decoder", "mask_token"))
        }
        enc = self.convert("mae", {"model": encoder_only}, depth=1)
        self.assertFalse(enc.spec.has_decoder)
        self.assertIsNone(enc.decoder_params)
        self.assertTreesEqual(enc.params, full.params)
        partial = dict(encoder_only, mask_token=state["mask_token"])
        with self.assertRaisesRegex(
            CheckpointError, r"missing \(\d+, official names\):.*decoder_embed.weight"
        ):
            self.convert("mae", {"model": partial}, depth=1, decoder_depth=1)

    def test_scalemae_ignores_documented_keys(self):
        model = tr.build_timm("scalemae", 1, 0, **TINY)
        state = tr.official_state_dict("scalemae", model)
        conversion = self.convert("scalemae", {"model": state, "epoch": 1}, depth=1)
        ignored = set(conversion.ignored)
        self.assertEqual(
            ignored,
            {k for k in state if k.startswith(("decoder", "fpn", "fcn", "mask_token"))}
            | {"pos_embed"},
        )
        self.assertNotIn("pos_embed", conversion.params)


class StrictnessTest(ConvertTestCase):
    def test_complete_lists_of_missing_unexpected_and_misshaped(self):
        state = _tiny_state("dino")
        del state["blocks.1.norm1.bias"], state["norm.weight"]
        state["blocks.0.attn.extra"] = torch.zeros(3)
        state["surprise"] = torch.zeros(1)
        state["blocks.0.mlp.fc1.weight"] = torch.zeros(10, 192)
        state["cls_token"] = torch.zeros(1, 2, 192)
        with self.assertRaises(CheckpointError) as ctx:
            self.convert("dino", {"model": state}, depth=2)
        message = str(ctx.exception)
        self.assertIn("missing (2, official names): blocks.1.norm1.bias, norm.weight", message)
        self.assertIn("unexpected (2): blocks.0.attn.extra, surprise", message)
        self.assertIn("mis-shaped (2)", message)
        self.assertIn("blocks.0.mlp.fc1.weight: file (10, 192), expected (768, 192)", message)
        self.assertIn("cls_token: file (1, 2, 192), expected (1, 1, 192)", message)
        self.assertIn("checkpoint['model']", message)

    def test_wrong_family_names_the_right_one(self):
        state = _tiny_state("dinov2")
        with self.assertRaises(CheckpointError) as ctx:
            self.convert("dino", state, depth=2)
        message = str(ctx.exception)
        self.assertIn("blocks.0.ls1.gamma", message)
        self.assertIn("mask_token", message)
        self.assertIn("the keys match family ['dinov2']", message)

    def test_torchvision_file_as_dino_lists_everything(self):
        state = _tiny_state("torchvision")
        with self.assertRaises(CheckpointError) as ctx:
            self.convert("dino", state, depth=2)
        message = str(ctx.exception)
        expected_missing = 5 + 1 + 2 * 12  # cls, patch w/b, norm w/b, pos, 12 per block
        self.assertIn(f"missing ({expected_missing}, official names)", message)
        self.assertIn(f"unexpected ({len(state)})", message)
        self.assertIn("['torchvision']", message)

    def test_missing_blocks_are_not_a_shallower_model(self):
        state = _tiny_state("dino", depth=2)
        with self.assertRaises(CheckpointError) as ctx:
            self.convert("dino", state)  # 'ti' has 12 blocks
        message = str(ctx.exception)
        self.assertIn("blocks.11.mlp.fc2.bias", message)
        self.assertIn("missing (120, official names)", message)
        self.assertIn("the file has 2 blocks; pass depth=2", message)

    def test_unknown_family(self):
        with self.assertRaisesRegex(CheckpointError, "unknown family 'deit'"):
            self.convert("deit", _tiny_state("dino"), depth=2)

    def test_ambiguous_keys(self):
        state = _tiny_state("dino")
        doubled = dict(state, **{"module.cls_token": state["cls_token"]})
        with self.assertRaisesRegex(CheckpointError, "'cls_token' and 'module.cls_token'"):
            self.convert("dino", doubled, depth=2)

    def test_unknown_checkpoint_key(self):
        with self.assertRaisesRegex(CheckpointError, "--checkpoint_key='ema' is not a top-level"):
            self.convert("dino", {"model": _tiny_state("dino")}, depth=2, checkpoint_key="ema")
        with self.assertRaisesRegex(CheckpointError, "'student' names neither .* at top level"):
            self.convert("dino", _tiny_state("dino"), depth=2, checkpoint_key="student")


def _supervised_timm_state(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """The state dict of a supervised timm ViT (what timm's `vit_*_patch16_224` files hold)."""
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, depth=2
    )
    return tr.randomize_(model, 0).state_dict()


class ClassifierHeadTest(ConvertTestCase):
    @parameterized.parameters(
        ("dino", "flat"), ("ibot", "state_dict"), ("mae", "model"), ("dinov2", "flat")
    )
    def test_supervised_classifier_is_refused_for_backbone_families(self, family, wrapper):
        state = tr.wrap(family, _supervised_timm_state(), wrapper)
        with self.assertRaisesRegex(
            CheckpointError,
            r"looks like a supervised classifier with a 1000-way head: "
            r"head.weight \[1000, 192\].*--allow_classifier_head",
        ):
            self.convert(family, state, depth=2)

    def test_allowed_classifier_converts_its_backbone(self):
        state = _supervised_timm_state()
        conversion = self.convert("dino", state, depth=2, allow_classifier_head=True)
        reference = self.convert(
            "dino", {k: v for k, v in state.items() if "head" not in k}, depth=2
        )
        self.assertTreesEqual(conversion.params, reference.params)
        self.assertEqual(
            conversion.ignored["head.weight"],
            "classification head (allowed by --allow_classifier_head)",
        )

    def test_official_training_heads_are_not_classifiers(self):
        # An iBOT training checkpoint: teacher with its projection head. (DINO's and DINOv2's
        # training layouts are converted by WrapperTest, which runs through the same check.)
        ibot = self.convert("ibot", tr.wrap("ibot", _tiny_state("ibot"), "teacher_full"), depth=2)
        self.assertEqual(ibot.ignored["head.last_layer.weight_v"], "iBOT projection head")


class OutputSafetyTest(ConvertTestCase):
    """Conversion never deletes or overwrites anything that is not a previous conversion."""

    def setUp(self):
        super().setUp()
        self.folder = os.path.join(self.tmp, "downloads")
        os.makedirs(self.folder)
        self.input = self.save(_tiny_state("dino"), os.path.join("downloads", "dino.pth"))
        with open(os.path.join(self.folder, "notes.txt"), "w") as f:
            f.write("keep me")
        self.before = self.snapshot()

    def snapshot(self):
        out = {}
        for folder, _, files in os.walk(self.tmp):
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, self.tmp)] = hashlib.sha256(f.read()).hexdigest()
        return out

    def assertUntouched(self, before):
        after = self.snapshot()
        self.assertEqual({k: after.get(k) for k in before}, before)

    @parameterized.parameters(False, True)
    def test_folder_holding_the_input_is_refused(self, overwrite):
        with self.assertRaisesRegex(CheckpointError, f"{self.folder}: .*dino.pth"):
            convert.convert_file("dino", self.input, self.folder, depth=2, overwrite=overwrite)
        self.assertUntouched(self.before)

    def test_dot_from_the_input_folder_is_refused(self):
        cwd = os.getcwd()
        os.chdir(self.folder)
        self.addCleanup(os.chdir, cwd)
        with self.assertRaisesRegex(CheckpointError, "contains dino.pth"):
            convert.convert_file("dino", "dino.pth", ".", depth=2, overwrite=True)
        self.assertUntouched(self.before)

    def test_parent_of_conversions_is_refused_and_previous_one_replaced_on_request(self):
        checkpoints = os.path.join(self.tmp, "checkpoints")
        first = os.path.join(checkpoints, "dino_vitti16")
        convert.convert_file("dino", self.input, first, depth=2)
        convert.convert_file("dino", self.input, os.path.join(checkpoints, "other"), depth=2)
        before = self.snapshot()
        for overwrite in (False, True):
            with self.assertRaisesRegex(CheckpointError, "checkpoints: directory is not empty"):
                convert.convert_file("dino", self.input, checkpoints, depth=2, overwrite=overwrite)
        self.assertUntouched(before)
        # A previous conversion is replaced only on request, and then completely.
        with self.assertRaisesRegex(CheckpointError, "dino_vitti16: already holds.*--overwrite"):
            convert.convert_file("dino", self.input, first, depth=2)
        self.assertUntouched(before)
        other = self.save(_tiny_state("dino", seed=1), "other.pth")
        conversion = convert.convert_file("dino", other, first, depth=2, overwrite=True)
        self.assertEqual(models.load_spec(first), conversion.spec)
        self.assertEqual(sorted(os.listdir(checkpoints)), ["dino_vitti16", "other"])
        # ... but never when something else was added to it.
        with open(os.path.join(first, "mine.txt"), "w") as f:
            f.write("x")
        with self.assertRaisesRegex(CheckpointError, r"also other files \['mine.txt'\]"):
            convert.convert_file("dino", self.input, first, depth=2, overwrite=True)
        self.assertTrue(os.path.exists(os.path.join(first, "mine.txt")))

    @parameterized.parameters(0o022, 0o027)
    def test_outputs_follow_the_umask(self, umask):
        old = os.umask(umask)
        try:
            out = os.path.join(self.tmp, "out")
            convert.convert_file("dino", self.input, out, depth=2)
        finally:
            os.umask(old)
        modes = test_util.file_modes(out)
        self.assertIn(convert.CONVERSION_REPORT, modes)
        for name, (is_dir, mode) in modes.items():
            self.assertEqual(oct(mode), oct((0o777 if is_dir else 0o666) & ~umask), name)


class ReadmeTest(absltest.TestCase):
    """The README's conversion commands produce exactly the folders the configs read."""

    def test_readme_conversions_match_the_configs(self):
        from checkpoints_convert import __main__ as cli  # defines the CLI's flags

        with open(os.path.join(REPO_ROOT, "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("## Using your own checkpoints") :]
        section = section[: section.index("\n## ")]
        produced = {}
        for line in section.splitlines():
            if not line.startswith("python -m checkpoints_convert"):
                continue
            args = dict(arg[2:].split("=", 1) for arg in shlex.split(line, comments=True)[3:])
            self.assertContainsSubset(
                args, {f.name for f in cli.flags.FLAGS.get_flags_for_module(cli)}
            )
            self.assertIn(args["family"], layouts.FAMILIES, line)
            self.assertNotIn(args["output"], produced, f"two commands write {args['output']}")
            produced[args["output"]] = (args["family"], args["input"])
        # family:size:patch:checkpoints/<folder> strings of the configs and the README.
        pattern = re.compile(r"([a-z0-9_]+):([a-z]+):(\d+):(checkpoints/[A-Za-z0-9_.-]+)")
        read = {}
        for name in sorted(os.listdir(os.path.join(REPO_ROOT, "configs"))):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(REPO_ROOT, "configs", name)) as f:
                tree = ast.parse(f.read())
            # String values the configs use (docstrings only show examples).
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.FunctionDef)
                and node.body
                and isinstance(node.body[0], ast.Expr)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if id(node) not in docstrings:
                        for family, _, _, folder in pattern.findall(node.value):
                            read.setdefault(folder, set()).add(family)
        self.assertNotEmpty(read)
        for folder, families in read.items():
            self.assertIn(folder, produced, f"configs read {folder}; no README command writes it")
            self.assertEqual(families, {produced[folder][0]}, folder)
        examples = {folder for *_, folder in pattern.findall(section)}
        for folder in produced:
            self.assertTrue(
                folder in read or folder in examples, f"README writes {folder}; nothing reads it"
            )
        with open(os.path.join(REPO_ROOT, "docs", "checkpoints.md")) as f:
            docs = f.read()
        for family, input_file in produced.values():
            self.assertIn(input_file, docs)
            self.assertIn(f"`--family={family}`", docs)


class ReaderTest(ConvertTestCase):
    def test_malicious_pickle_is_refused_and_not_executed(self):
        marker = os.path.join(self.tmp, "pwned")

        class Payload:
            def __reduce__(self):
                return (exec, (f"open({marker!r}, 'w').write('x')",))

        zipped = self.save({"model": _tiny_state("dino"), "x": Payload()}, "evil.pth")
        raw = os.path.join(self.tmp, "evil_raw.pth")
        with open(raw, "wb") as f:
            pickle.dump({"x": Payload()}, f)
        with self.assertRaisesRegex(CheckpointError, r"refused to unpickle.*\(builtins.exec\)"):
            reader.read_checkpoint(zipped)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch notes the pickle protocol
            with self.assertRaisesRegex(CheckpointError, "refused to unpickle"):
                reader.read_checkpoint(raw)
        with self.assertRaises(CheckpointError):
            convert.convert_file("dino", zipped, os.path.join(self.tmp, "out"))
        self.assertFalse(os.path.exists(marker))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "out")))

    def test_truncated_files(self):
        path = self.save(_tiny_state("dino"), "full.pth")
        with open(path, "rb") as f:
            data = f.read()
        for name, cut in (("half.pth", len(data) // 2), ("nearly.pth", len(data) - 10)):
            truncated = os.path.join(self.tmp, name)
            with open(truncated, "wb") as f:
                f.write(data[:cut])
            with self.assertRaisesRegex(CheckpointError, f"{name}.*truncated or corrupted"):
                reader.read_checkpoint(truncated)
        tensors = os.path.join(self.tmp, "full.safetensors")
        safetensors.torch.save_file(_tiny_state("dino"), tensors)
        with open(tensors, "rb") as f:
            data = f.read()
        with open(tensors, "wb") as f:
            f.write(data[: len(data) - 100])
        with self.assertRaisesRegex(CheckpointError, "full.safetensors.*truncated or corrupted"):
            reader.read_checkpoint(tensors)

    def test_missing_file(self):
        with self.assertRaisesRegex(CheckpointError, "nope.pth: checkpoint file not found"):
            reader.read_checkpoint(os.path.join(self.tmp, "nope.pth"))

    def test_training_metadata_is_read_inertly(self):
        checkpoint = tr.wrap("dino", _tiny_state("dino"), "teacher_full")
        checkpoint["best"] = np.float64(0.5)
        loaded = reader.read_checkpoint(self.save(checkpoint, "full.pth"))
        self.assertIsInstance(loaded["args"], reader.OpaqueObject)
        self.assertEqual(loaded["args"].state["arch"], "vit_base")
        self.assertIsInstance(loaded["teacher"]["backbone.cls_token"], np.ndarray)


class FileTest(ConvertTestCase):
    def test_safetensors_input(self):
        state = _tiny_state("dino")
        pth = self.save(state, "dino.pth")
        tensors = os.path.join(self.tmp, "dino.safetensors")
        safetensors.torch.save_file(tr.wrap("dino", state, "module"), tensors)
        a = convert.convert_file("dino", pth, os.path.join(self.tmp, "a"), depth=2)
        b = convert.convert_file("dino", tensors, os.path.join(self.tmp, "b"), depth=2)
        self.assertTreesEqual(a.params, b.params)
        with open(tensors, "rb") as f:
            self.assertEqual(b.spec.weights_hash, hashlib.sha256(f.read()).hexdigest())
        _, params, spec = models.load(os.path.join(self.tmp, "b"))
        self.assertEqual(spec, b.spec)
        self.assertTreesEqual(params, b.params)

    def test_cli_end_to_end(self):
        state = tr.wrap("dinov2_reg", _tiny_state("dinov2_reg"), "dinov2_eval")
        path = self.save(state, "reg.pth")
        out = os.path.join(self.tmp, "reg_ckpt")
        cmd = [
            sys.executable,
            "-m",
            "checkpoints_convert",
            "--family=dinov2_reg",
            f"--input={path}",
            f"--output={out}",
            "--depth=2",
            "--checkpoint_key=teacher",
        ]
        env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
        done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(os.path.join(out, "spec.json")) as f:
            spec = json.load(f)
        with open(path, "rb") as f:
            self.assertEqual(spec["weights_hash"], hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(
            (spec["family"], spec["size"], spec["patch_size"]), ("dinov2_reg", "ti", 14)
        )
        self.assertEqual(spec["preprocessing"]["crop"], 224)
        with open(os.path.join(out, convert.CONVERSION_REPORT)) as f:
            report = json.load(f)
        self.assertEqual(report["wrapper"], "checkpoint['teacher']")
        self.assertIn("backbone.mask_token", report["ignored"])
        _, params, _ = models.load(out)
        np.testing.assert_array_equal(
            params["register_tokens"], state["teacher"]["backbone.register_tokens"].numpy()
        )
        # The same command as the wrong family fails with the key report, printed once and
        # without a traceback, and a non-zero status; the previous conversion is kept.
        bad = subprocess.run(
            [c.replace("--family=dinov2_reg", "--family=dino") for c in cmd] + ["--overwrite"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        self.assertEqual(bad.returncode, 1)
        self.assertIn("register_tokens", bad.stderr)
        self.assertEqual(bad.stderr.count("cannot convert as family 'dino'"), 1, bad.stderr)
        self.assertNotIn("Traceback", bad.stderr)
        self.assertEqual(models.load_spec(out).family, "dinov2_reg")

    def test_cli_never_writes_into_the_input_folder(self):
        # Observed before the fix: --output=<the input's folder> deleted the input and every
        # other file there, and exited 0.
        path = self.save(_tiny_state("dino"), "dino.pth")
        with open(os.path.join(self.tmp, "notes.txt"), "w") as f:
            f.write("keep me")
        before = sorted(os.listdir(self.tmp))
        with open(path, "rb") as f:
            content = f.read()
        cmd = [sys.executable, "-m", "checkpoints_convert", "--family=dino", "--depth=2"]
        cmd += [f"--input={path}", f"--output={self.tmp}"]
        env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
        done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertEqual(sorted(os.listdir(self.tmp)), before)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), content)
        message = f"{self.tmp}: the output directory contains {path}"
        self.assertEqual(done.stderr.count(message), 1, done.stderr)
        self.assertNotIn("Traceback", done.stderr)

    def test_vitjax_does_not_import_torch(self):
        code = (
            "import sys, vitjax, vitjax.models, vitjax.errors; "
            "assert 'torch' not in sys.modules, 'torch imported'"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
        )
        self.assertEqual(done.returncode, 0, done.stderr)


if __name__ == "__main__":
    absltest.main()
