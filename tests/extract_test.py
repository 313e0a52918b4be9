"""Tests of vitjax/extract.py: sharded extraction, caching, resume after SIGKILL, disk full."""

import dataclasses
import errno
import glob
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import jax
import ml_dtypes
import numpy as np
from absl.testing import absltest, parameterized
from jax.sharding import Mesh
from PIL import Image

from tests import extract_worker as worker
from tests import test_util  # noqa: F401
from vitjax import extract, models, provenance
from vitjax import store as store_lib
from vitjax.errors import ConfigError, DatasetError, StoreError

torch = test_util.optional_import("torch")

REPO = Path(__file__).resolve().parents[1]


class CountingModule:
    """Delegates to a flax module and counts how often the forward is traced."""

    def __init__(self, module):
        self.module = module
        self.traces = 0

    def apply(self, variables, images, **kwargs):
        self.traces += 1
        return self.module.apply(variables, images, **kwargs)


class ExplodingModule:
    """A module that must never be called."""

    def apply(self, *args, **kwargs):
        raise AssertionError("the model was called for features already in the store")


def tree_bytes(root: Path) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def reference_features(module, params, spec, images, layers):
    """Oracle: the module run eagerly (no jit, one device) on the whole array."""
    out = module.apply(
        {"params": params}, models.preprocess(spec, images), layers=layers, norm=True
    )
    return jax.tree.map(np.asarray, out)


def run(module, params, spec, images, root=None, **kwargs):
    args = dict(key=worker.KEY, progress_interval_s=0.0)
    args.update(worker.EXTRACT_KWARGS)
    args.update(kwargs)
    store = store_lib.FeatureStore(root) if root is not None else None
    return extract.extract(module, params, spec, images, store=store, **args)


class ExtractTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.module, cls.params, cls.spec = worker.make_model()
        cls.images = worker.make_images()
        cls.tmp = Path(tempfile.mkdtemp())
        cls.reference_root = cls.tmp / "reference"
        cls.reference = run(cls.module, cls.params, cls.spec, cls.images, cls.reference_root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def new_root(self) -> Path:
        root = Path(tempfile.mkdtemp(dir=self.tmp))
        shutil.rmtree(root)
        return root

    def test_stored_features_match_eager_model(self):
        feats = self.reference
        want = reference_features(self.module, self.params, self.spec, self.images, (0, 1))
        self.assertIsInstance(feats.patch[-1], np.memmap)
        self.assertEqual(feats.patch[1].shape, (44, 2, 3, 192))
        self.assertEqual(feats.patch[1].dtype, np.float16)
        for layer in (0, 1):
            np.testing.assert_allclose(
                feats.patch[layer].astype(np.float32), want["patch"][layer], atol=2e-3, rtol=2e-3
            )
            np.testing.assert_allclose(
                feats.cls[layer].astype(np.float32), want["cls"][layer], atol=2e-3, rtol=2e-3
            )
        np.testing.assert_array_equal(feats.patch[-1], feats.patch[1])
        np.testing.assert_array_equal(feats.meta["image_id"], np.arange(44))
        self.assertEqual(feats.entry_dir.parent, self.reference_root)
        self.assertEqual(feats.key["user"], worker.KEY)

    def test_float32_in_memory_matches_eager_model(self):
        feats = run(self.module, self.params, self.spec, self.images[:13], dtype="float32")
        want = reference_features(self.module, self.params, self.spec, self.images[:13], (0, 1))
        for layer in (0, 1):
            np.testing.assert_allclose(feats.patch[layer], want["patch"][layer], atol=1e-5)
        self.assertIsNone(feats.entry_dir)

    def test_sharded_over_eight_devices_equals_one_device(self):
        self.assertEqual(jax.device_count(), 8)
        kwargs = dict(dtype="float32", batch_size=8)
        one = run(
            self.module,
            self.params,
            self.spec,
            self.images,
            mesh=Mesh(np.asarray(jax.devices()[:1]), ("data",)),
            **kwargs,
        )
        eight = run(self.module, self.params, self.spec, self.images, **kwargs)
        grid = run(
            self.module,
            self.params,
            self.spec,
            self.images,
            mesh=Mesh(np.asarray(jax.devices()).reshape(2, 4), ("a", "b")),
            **kwargs,
        )
        for layer in (0, 1):
            np.testing.assert_allclose(eight.patch[layer], one.patch[layer], atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(grid.patch[layer], one.patch[layer], atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(eight.cls[layer], one.cls[layer], atol=1e-5, rtol=1e-5)

    def test_compiles_once_per_input_shape(self):
        counting = CountingModule(self.module)
        # 44 images in batches of 8: five full batches and a padded one, one trace.
        run(counting, self.params, self.spec, self.images, dtype="float32")
        self.assertEqual(counting.traces, 1)
        # Another image count with the same batch shape reuses the executable.
        run(counting, self.params, self.spec, self.images[:13], dtype="float32")
        self.assertEqual(counting.traces, 1)
        bigger = np.repeat(np.repeat(self.images[:5], 2, axis=1), 2, axis=2)
        run(counting, self.params, self.spec, bigger, dtype="float32")
        self.assertEqual(counting.traces, 2)

    def test_many_models_in_turn_compile_once_each(self):
        # An experiment runs every model on one perturbation, then every model on the next: with
        # more models than the executable cache holds, a least-recently-used cache misses always.
        wrapped = [CountingModule(self.module) for _ in range(20)]
        for _ in range(2):
            for module in wrapped:
                run(module, self.params, self.spec, self.images[:8], dtype="float32")
        self.assertEqual([m.traces for m in wrapped], [1] * 20)

    def test_cached_features_do_not_call_the_model(self):
        again = run(ExplodingModule(), self.params, self.spec, self.images, self.reference_root)
        for layer in (0, 1):
            np.testing.assert_array_equal(again.patch[layer], self.reference.patch[layer])
        self.assertEqual(again.entry_dir, self.reference.entry_dir)
        plan = extract.plan(
            ExplodingModule(),
            self.params,
            self.spec,
            self.images,
            store=store_lib.FeatureStore(self.reference_root),
            key=worker.KEY,
            **worker.EXTRACT_KWARGS,
        )
        self.assertTrue(plan.cached)
        self.assertEqual(plan.num_batches_todo, 0)

    def test_store_key_names_code_dtype_and_preprocessing(self):
        store = store_lib.FeatureStore(self.new_root())
        images = self.images[:4]
        base = run(self.module, self.params, self.spec, images, store.root, compute_dtype=None)
        # None and "float32" are the same computation, so they share the entry.
        same = run(
            ExplodingModule(), self.params, self.spec, images, store.root, compute_dtype="float32"
        )
        self.assertEqual(same.entry_dir, base.entry_dir)
        self.assertEqual(base.key["code"], provenance.source_digest(*provenance.FEATURE_CODE))

        def halve(spec, x):
            return models.preprocess(spec, x) * 0.5

        with self.assertRaisesRegex(ConfigError, "key\\['preprocess'\\]"):
            run(self.module, self.params, self.spec, images, store.root, preprocess_fn=halve)
        custom = run(
            self.module,
            self.params,
            self.spec,
            images,
            store.root,
            preprocess_fn=halve,
            key={**worker.KEY, "preprocess": "halve"},
        )
        self.assertNotEqual(custom.entry_dir, base.entry_dir)
        self.assertIn("halve", custom.key["preprocess"])

        # A different code digest is a different entry: old features are never served.
        with mock.patch.object(provenance, "source_digest", return_value="0" * 16):
            changed = run(self.module, self.params, self.spec, images, store.root)
        self.assertNotEqual(changed.entry_dir, base.entry_dir)

    def test_mae_decoder_params_are_not_needed(self):
        module, params, spec = models.random_model("mae", "ti", depth=1, decoder_depth=1)
        self.assertIn("decoder", params)
        encoder_only = {k: v for k, v in params.items() if k != "decoder"}
        images = self.images[:2]
        with_decoder = extract.extract(module, params, spec, images, layers=(0,))
        without = extract.extract(module, encoder_only, spec, images, layers=(0,))
        np.testing.assert_array_equal(with_decoder.patch[0], without.patch[0])

    def test_plan_counts_and_writes_nothing(self):
        root = self.new_root()
        store = store_lib.FeatureStore(root)
        plan = extract.plan(
            self.module,
            self.params,
            self.spec,
            self.images,
            store=store,
            key=worker.KEY,
            **worker.EXTRACT_KWARGS,
        )
        self.assertEqual(sorted(p.name for p in root.iterdir()), ["store.json"])
        self.assertEqual((plan.num_images, plan.num_batches, plan.num_batches_todo), (44, 6, 6))
        self.assertEqual(plan.num_patches, 44 * 2 * 3)
        self.assertEqual(plan.memory_source, "XLA memory analysis")
        self.assertGreater(plan.peak_device_bytes, 0)
        self.assertIn("44 images", str(plan))
        # Bytes on disk: the data areas of the files the reference run wrote.
        data_bytes = 0
        for path in self.reference.entry_dir.glob("layer_*/*.npy"):
            data_bytes += path.stat().st_size - store_lib._npy_data_offset(path)[0]
        self.assertEqual(plan.bytes_on_disk, data_bytes)

    def test_resume_after_sigkill_gives_identical_store(self):
        root = self.new_root()
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        cmd = [sys.executable, "-m", "tests.extract_worker", "--mode=extract", f"--store={root}"]
        proc = subprocess.Popen(
            [*cmd, "--delay=0.1", "--devices=8"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 240
        markers = []
        while time.monotonic() < deadline and proc.poll() is None:
            # Layer 1 is written after layer 0: one marker there means a whole batch is done.
            markers = glob.glob(str(root / "*" / "layer_01" / "chunks" / "rows_*.json"))
            if markers:
                break
            time.sleep(0.02)
        if not markers:
            proc.kill()
            self.fail(f"worker wrote no chunk: {proc.communicate()[0][-3000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        manifests = [json.loads(p.read_text()) for p in root.glob("*/layer_*/manifest.json")]
        self.assertIn("incomplete", [m["status"] for m in manifests])

        plan = extract.plan(
            self.module,
            self.params,
            self.spec,
            self.images,
            store=store_lib.FeatureStore(root),
            key=worker.KEY,
            **worker.EXTRACT_KWARGS,
        )
        self.assertBetween(plan.num_batches_todo, 1, plan.num_batches - 1)
        counting = CountingModule(self.module)
        resumed = run(counting, self.params, self.spec, self.images, root)
        self.assertEqual(tree_bytes(root), tree_bytes(self.reference_root))
        for layer in (0, 1):
            np.testing.assert_array_equal(resumed.patch[layer], self.reference.patch[layer])

    def test_disk_full_mid_run_then_resume(self):
        root = self.new_root()
        calls = []
        real = store_lib.pwrite_all

        def fills_up(fd, data, offset):
            calls.append(offset)
            if len(calls) > 5:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(fd, data, offset)

        with mock.patch.object(store_lib, "pwrite_all", fills_up):
            with self.assertRaisesRegex(StoreError, "disk full writing rows .*resumable"):
                run(self.module, self.params, self.spec, self.images, root)
        # Batch 0 (2 layers x 2 arrays) was written; batch 1 died on its 2nd array: unmarked.
        for layer in (0, 1):
            markers = sorted(root.glob(f"*/layer_{layer:02d}/chunks/rows_*.json"))
            self.assertEqual([m.name for m in markers], ["rows_0000000000_0000000008.json"])
            # Rows marked done before the disk filled hold exactly the reference bytes.
            partial = np.load(markers[0].parents[1] / "patch.npy", mmap_mode="r")
            np.testing.assert_array_equal(partial[:8], self.reference.patch[layer][:8])
        # The rerun completes the same store as an uninterrupted run.
        run(self.module, self.params, self.spec, self.images, root)
        self.assertEqual(tree_bytes(root), tree_bytes(self.reference_root))

    def test_corrupted_manifest_in_store_names_file(self):
        root = self.new_root()
        shutil.copytree(self.reference_root, root)
        manifest = next(root.glob("*/layer_01/manifest.json"))
        manifest.write_text("{ not json")
        with self.assertRaisesRegex(StoreError, f"{manifest}"):
            run(self.module, self.params, self.spec, self.images, root)

    def test_file_image_source_matches_array(self):
        folder = self.tmp / "pngs"
        folder.mkdir(exist_ok=True)
        paths = []
        for i, image in enumerate(self.images[:10]):
            paths.append(folder / f"{i:03d}.png")
            Image.fromarray(image).save(paths[-1])
        from_files = run(
            self.module, self.params, self.spec, extract.FileImageSource(paths), num_workers=3
        )
        from_array = run(self.module, self.params, self.spec, self.images[:10])
        for layer in (0, 1):
            np.testing.assert_array_equal(from_files.patch[layer], from_array.patch[layer])

        resized = extract.FileImageSource(paths, resize_to=(16, 24))
        with Image.open(paths[3]) as image:
            want = np.asarray(image.convert("RGB").resize((24, 16), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(resized[3], want)
        self.assertEqual(resized.image_shape, (16, 24, 3))

        broken = folder / "broken.png"
        broken.write_bytes(b"not a png")
        with self.assertRaisesRegex(DatasetError, "broken.png"):
            run(self.module, self.params, self.spec, extract.FileImageSource([*paths, broken]))

    @test_util.requires("torch")
    def test_resize_on_device_matches_torch_bilinear(self):
        feats = run(
            self.module,
            self.params,
            self.spec,
            self.images[:4],
            dtype="float32",
            resize_to=(64, 96),
        )
        normalised = torch.from_numpy(
            np.array(models.preprocess(self.spec, self.images[:4]))
        ).permute(0, 3, 1, 2)
        upsampled = torch.nn.functional.interpolate(
            normalised, size=(64, 96), mode="bilinear", align_corners=False
        )
        want = self.module.apply(
            {"params": self.params}, upsampled.permute(0, 2, 3, 1).numpy(), layers=(0, 1)
        )
        self.assertEqual(feats.grid, (4, 6))
        np.testing.assert_allclose(feats.patch[1], np.asarray(want["patch"][1]), atol=1e-4)

    def test_bfloat16_compute_and_storage(self):
        root = self.new_root()
        f32 = run(self.module, self.params, self.spec, self.images[:16], dtype="float32")
        bf16 = run(
            self.module,
            self.params,
            self.spec,
            self.images[:16],
            root,
            dtype="bfloat16",
            compute_dtype="bfloat16",
        )
        self.assertEqual(bf16.patch[1].dtype, np.dtype(ml_dtypes.bfloat16))
        got = bf16.patch[1].astype(np.float32)
        want = f32.patch[1]
        self.assertGreater(np.abs(got - want).max(), 0)  # it really ran in bfloat16
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        self.assertLess(rel, 0.05)
        self.assertEqual(bf16.key["compute_dtype"], "bfloat16")

    def test_metadata_travels_with_features(self):
        labels = np.arange(13) % 4
        masks = np.random.default_rng(1).integers(0, 5, (13, 2, 3)).astype(np.uint8)
        root = self.new_root()
        feats = run(
            self.module,
            self.params,
            self.spec,
            self.images[:13],
            root,
            metadata={"label": labels, "patch_class": masks, "image_id": np.arange(100, 113)},
        )
        self.assertEqual(sorted(feats.meta), ["image_id", "label", "patch_class"])
        np.testing.assert_array_equal(feats.meta["image_id"], np.arange(100, 113))
        flat = feats.flat_patches(-1)
        coords = feats.patch_coords()
        self.assertEqual(flat.shape, (13 * 6, 192))
        for n in (0, 7, 77):
            image, row, col = coords["image"][n], coords["row"][n], coords["col"][n]
            np.testing.assert_array_equal(flat[n], feats.patch[1][image, row, col])
            self.assertEqual(feats.patch_meta("label")[n], labels[image])
            self.assertEqual(feats.patch_meta("patch_class")[n], masks[image, row, col])
        with self.assertRaisesRegex(DatasetError, "metadata 'label'"):
            run(
                self.module,
                self.params,
                self.spec,
                self.images[:13],
                metadata={"label": labels[:3]},
            )

    def test_registers(self):
        module, params, spec = worker.make_model("dinov2_reg")  # patch 14, 4 registers
        images = self.images[:9, :28, :42]
        feats = run(module, params, spec, images, dtype="float32")
        want = reference_features(module, params, spec, images, (0, 1))
        self.assertEqual(feats.registers[-1].shape, (9, 4, 192))
        np.testing.assert_allclose(feats.patch[0], want["patch"][0], atol=1e-4)
        np.testing.assert_allclose(feats.registers[1], want["registers"][1], atol=1e-5)

    def test_options_object_and_keywords_are_one_set_of_options(self):
        m, p, s = self.module, self.params, self.spec
        images = self.images[:5]
        opts = extract.ExtractOptions(batch_size=8, with_cls=True, dtype="float32")
        by_options = extract.extract(m, p, s, images, layers=(0, 1), options=opts)
        by_keywords = extract.extract(
            m, p, s, images, layers=(0, 1), batch_size=8, with_cls=True, dtype="float32"
        )
        want = reference_features(m, p, s, images, (0, 1))
        for layer in (0, 1):
            np.testing.assert_allclose(by_options.patch[layer], want["patch"][layer], atol=1e-5)
            np.testing.assert_allclose(by_options.cls[layer], want["cls"][layer], atol=1e-5)
            np.testing.assert_array_equal(by_options.patch[layer], by_keywords.patch[layer])
            np.testing.assert_array_equal(by_options.cls[layer], by_keywords.cls[layer])
        # A keyword replaces that one field of `options`, in extract and in plan alike.
        self.assertEmpty(
            extract.extract(m, p, s, images, layers=(0,), options=opts, with_cls=False).cls
        )
        self.assertEqual(extract.plan(m, p, s, images, layers=(0,), options=opts).batch_size, 8)
        plan = extract.plan(m, p, s, images, layers=(0,), options=opts, batch_size=16)
        self.assertEqual((plan.batch_size, plan.num_batches), (16, 1))
        with self.assertRaisesRegex(
            ConfigError, r"extract.extract: unexpected keyword\(s\) \['batchsize'\].*'batch_size'"
        ):
            extract.extract(m, p, s, images, batchsize=8)
        with self.assertRaisesRegex(ConfigError, "extract.plan: options=.*ExtractOptions"):
            extract.plan(m, p, s, images, options={"batch_size": 8})
        # The signatures list every option with its default (help(), IDEs).
        for fn in (extract.extract, extract.plan):
            params = inspect.signature(fn).parameters
            for field in dataclasses.fields(extract.ExtractOptions):
                self.assertEqual(params[field.name].default, field.default, field.name)

    def test_bad_inputs(self):
        m, p, s = self.module, self.params, self.spec
        with self.assertRaisesRegex(DatasetError, "uint8 array"):
            run(m, p, s, self.images.astype(np.float32))
        with self.assertRaisesRegex(ConfigError, r"layers: block index 5 is outside \[-2, 2\)"):
            run(m, p, s, self.images, layers=(5,))
        with self.assertRaisesRegex(ConfigError, "multiples of the patch size 16"):
            run(m, p, s, self.images[:, :30])
        with self.assertRaisesRegex(ConfigError, "dtype: 'int8'"):
            run(m, p, s, self.images, dtype="int8")
        with self.assertRaisesRegex(ConfigError, "key: required"):
            run(m, p, s, worker.SlowSource(self.images, 0), self.new_root(), key=None)


if __name__ == "__main__":
    absltest.main()
