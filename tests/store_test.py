"""Tests of vitjax/store.py: keys, round trips, resumable writes, crash and disk-full safety."""

import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
import zlib
from pathlib import Path
from unittest import mock

import jax
import ml_dtypes
import numpy as np
from absl.testing import absltest, parameterized

from tests import test_util
from vitjax import extract, models
from vitjax import store as store_lib
from vitjax.errors import StoreError

KEY = {"model": "dino_vits16", "weights_hash": "abc", "input_size": [32, 48], "split": "val"}


def _arrays(dtype: str, n: int = 10):
    rng = np.random.default_rng(0)
    logical = store_lib.STORAGE_DTYPES[dtype][0]
    return {
        "patch": rng.normal(size=(n, 2, 3, 4)).astype(logical),
        "cls": rng.normal(size=(n, 4)).astype(logical),
    }


def _shapes(arrays, dtype):
    return {name: (value.shape, dtype) for name, value in arrays.items()}


class KeyTest(absltest.TestCase):
    def test_hash_is_sha256_of_sorted_compact_json(self):
        key = {"b": (1, 2), "a": {"y": np.int64(3), "x": np.float32(0.5)}, "c": None}
        oracle = json.dumps(
            {"a": {"x": 0.5, "y": 3}, "b": [1, 2], "c": None}, sort_keys=True, separators=(",", ":")
        )
        self.assertEqual(store_lib.canonical_json(key), oracle)
        self.assertEqual(store_lib.key_hash(key), hashlib.sha256(oracle.encode()).hexdigest())

    def test_hash_ignores_dict_order_and_sees_every_field(self):
        reordered = dict(reversed(list(KEY.items())))
        self.assertEqual(store_lib.key_hash(KEY), store_lib.key_hash(reordered))
        self.assertNotEqual(store_lib.key_hash(KEY), store_lib.key_hash(dict(KEY, split="train")))

    def test_unhashable_value_names_the_field(self):
        with self.assertRaisesRegex(StoreError, r"transform\.fn"):
            store_lib.canonical_json({"transform": {"fn": object()}})
        with self.assertRaisesRegex(StoreError, "non-finite"):
            store_lib.canonical_json({"sigma": float("nan")})


class WeightsKeyTest(parameterized.TestCase):
    """Features are keyed on the parameters themselves, not on the spec's names for them."""

    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)

    def extract(self, store, module, params, spec):
        return extract.extract(module, params, spec, self.images, layers=(-1,), store=store)

    def test_changed_weights_saved_under_the_same_spec_get_new_features(self):
        _, params, spec = models.random_model("dino", "ti", seed=0, depth=1)
        store = store_lib.FeatureStore(os.path.join(self.root, "features"))
        models.save(os.path.join(self.root, "a"), params, spec)
        module, loaded, loaded_spec = models.load(os.path.join(self.root, "a"))
        first = np.array(self.extract(store, module, loaded, loaded_spec).patch[-1])
        # A user ablates one parameter and saves under the unchanged spec (same name and
        # weights_hash) into a new folder.
        ablated = jax.tree.map(np.array, params)
        ablated["norm"]["bias"][:] += 1.0
        models.save(os.path.join(self.root, "b"), ablated, spec)
        module, loaded, loaded_spec = models.load(os.path.join(self.root, "b"))
        self.assertEqual(loaded_spec.weights_hash, spec.weights_hash)
        second = self.extract(store, module, loaded, loaded_spec)
        # Oracle: the same model run in memory, without a store.
        fresh = extract.extract(module, loaded, loaded_spec, self.images, layers=(-1,))
        np.testing.assert_allclose(second.patch[-1], fresh.patch[-1], rtol=1e-6, atol=1e-6)
        # Only the final LayerNorm's bias moved (by +1), so every normed feature moved by +1.
        np.testing.assert_allclose(np.asarray(second.patch[-1]) - first, 1.0, atol=1e-5)

    def test_hand_built_specs_are_keyed_on_their_params(self):
        # A spec without a digest (built with get_spec) gets one from the params it is run with.
        spec = models.get_spec("dino", "ti", depth=1)
        module = models.create_model(spec)
        store = store_lib.FeatureStore(os.path.join(self.root, "features"))
        keys = set()
        for seed in (0, 1):
            params = models.randomize_params(models.init_params(spec, seed), spec, seed)
            self.assertEqual(spec.params_sha256, "")
            keys.add(self.extract(store, module, params, spec).key_hash)
        self.assertLen(keys, 2)

    @parameterized.parameters(0o022, 0o027)
    def test_store_files_follow_the_umask(self, umask):
        old = os.umask(umask)
        try:
            store = store_lib.FeatureStore(os.path.join(self.root, f"s{umask:o}"))
            group = store.group(KEY, name="m")
            arrays = _arrays("float32", n=2)
            entry = group.entry(0, _shapes(arrays, "float32"))
            entry.write_rows(0, arrays)
            entry.finalize()
            group.write_metadata({"label": np.arange(2)}, 2)
        finally:
            os.umask(old)
        modes = test_util.file_modes(str(store.root))
        self.assertIn(os.path.join(group.path.name, "meta", "label.npy"), modes)
        for name, (is_dir, mode) in modes.items():
            self.assertEqual(oct(mode), oct((0o777 if is_dir else 0o666) & ~umask), name)


class StoreTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.store = store_lib.FeatureStore(self.root)
        self.group = self.store.group(KEY, name="dino_vits16")

    @parameterized.parameters("float32", "float16", "bfloat16")
    def test_round_trip_in_chunks_out_of_order(self, dtype):
        arrays = _arrays(dtype)
        entry = self.group.entry(11, _shapes(arrays, dtype))
        for start, stop in [(6, 10), (0, 3), (3, 6)]:
            entry.write_rows(start, {k: v[start:stop] for k, v in arrays.items()})
        np.testing.assert_array_equal(entry.done_rows(), np.ones(10, bool))
        entry.finalize()
        opened = self.group.entry(11, _shapes(arrays, dtype))
        self.assertTrue(opened.is_complete)
        got = opened.open_arrays()
        for name, value in arrays.items():
            self.assertIsInstance(got[name], np.memmap)
            self.assertEqual(got[name].dtype, value.dtype)
            np.testing.assert_array_equal(got[name].view(np.uint8), value.view(np.uint8))
            # Readable with plain numpy, no vitjax involved.
            raw = np.load(opened.path / f"{name}.npy", allow_pickle=False)
            np.testing.assert_array_equal(raw.view(np.uint8), value.view(np.uint8))
            crc = zlib.crc32(np.ascontiguousarray(value).view(np.uint8).tobytes())
            self.assertEqual(opened.manifest["checksums"][name], f"crc32:{crc:08x}")
        if dtype == "bfloat16":
            self.assertEqual(got["patch"].dtype, np.dtype(ml_dtypes.bfloat16))
        self.assertFalse((opened.path / store_lib.CHUNKS_DIR).exists())
        opened.verify()

    def test_in_order_and_out_of_order_writes_give_the_same_checksums(self):
        arrays = _arrays("float16")
        in_order = self.group.entry(7, _shapes(arrays, "float16"))
        shuffled = self.group.entry(8, _shapes(arrays, "float16"))
        for start, stop in [(0, 4), (4, 8), (8, 10)]:
            in_order.write_rows(start, {k: v[start:stop] for k, v in arrays.items()})
        for start, stop in [(8, 10), (4, 8), (0, 4)]:
            shuffled.write_rows(start, {k: v[start:stop] for k, v in arrays.items()})
        in_order.finalize()
        shuffled.finalize()
        self.assertEqual(in_order.manifest["checksums"], shuffled.manifest["checksums"])
        crc = zlib.crc32(arrays["patch"].tobytes())
        self.assertEqual(in_order.manifest["checksums"]["patch"], f"crc32:{crc:08x}")
        in_order.verify()

    def test_verify_detects_flipped_byte(self):
        arrays = _arrays("float32")
        entry = self.group.entry(0, _shapes(arrays, "float32"))
        entry.write_rows(0, arrays)
        entry.finalize()
        with open(entry.path / "cls.npy", "r+b") as f:
            f.seek(-1, os.SEEK_END)
            byte = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(bytes([byte[0] ^ 1]))
        with self.assertRaisesRegex(StoreError, "cls.npy: checksum"):
            entry.verify()

    def test_incomplete_entry_is_not_readable_and_not_finalizable(self):
        arrays = _arrays("float16")
        entry = self.group.entry(3, _shapes(arrays, "float16"))
        entry.write_rows(2, {k: v[2:5] for k, v in arrays.items()})
        np.testing.assert_array_equal(np.flatnonzero(entry.done_rows()), [2, 3, 4])
        with self.assertRaisesRegex(StoreError, "incomplete"):
            entry.open_arrays()
        with self.assertRaisesRegex(StoreError, "7 rows are not written"):
            entry.finalize()

    def test_failed_write_leaves_rows_unmarked(self):
        arrays = _arrays("float32")
        entry = self.group.entry(1, _shapes(arrays, "float32"))
        entry.write_rows(0, {k: v[:4] for k, v in arrays.items()})
        real = store_lib.pwrite_all

        def half_then_fail(fd, data, offset):
            real(fd, data[: len(data) // 2], offset)
            raise OSError(errno.EIO, "I/O error")

        with mock.patch.object(store_lib, "pwrite_all", half_then_fail):
            with self.assertRaises(OSError):
                entry.write_rows(4, {k: v[4:8] for k, v in arrays.items()})
        # The half-written rows are not done; a reopened entry agrees.
        reopened = self.group.entry(1, _shapes(arrays, "float32"))
        np.testing.assert_array_equal(np.flatnonzero(reopened.done_rows()), [0, 1, 2, 3])

    def test_disk_full_while_writing_keeps_entry_resumable(self):
        arrays = _arrays("float32")
        shapes = _shapes(arrays, "float32")
        entry = self.group.entry(2, shapes)
        entry.write_rows(0, {k: v[:5] for k, v in arrays.items()})
        before = (entry.path / "patch.npy").read_bytes()

        def disk_full(fd, data, offset):
            raise OSError(errno.ENOSPC, "No space left on device")

        with mock.patch.object(store_lib, "pwrite_all", disk_full):
            with self.assertRaisesRegex(StoreError, r"disk full writing rows 5:10 .*resumable"):
                entry.write_rows(5, {k: v[5:] for k, v in arrays.items()})
        self.assertEqual((entry.path / "patch.npy").read_bytes(), before)
        resumed = self.group.entry(2, shapes)
        todo = ~resumed.done_rows()
        np.testing.assert_array_equal(np.flatnonzero(todo), np.arange(5, 10))
        resumed.write_rows(5, {k: v[5:] for k, v in arrays.items()})
        resumed.finalize()
        np.testing.assert_array_equal(resumed.open_arrays()["patch"], arrays["patch"])

    def test_disk_full_at_creation_leaves_nothing(self):
        arrays = _arrays("float32")

        def no_space(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")

        with mock.patch.object(os, "posix_fallocate", no_space):
            with self.assertRaisesRegex(StoreError, "disk full creating feature entry"):
                self.group.entry(5, _shapes(arrays, "float32"))
        self.assertEqual(sorted(p.name for p in self.group.path.iterdir()), ["key.json", "meta"])

    def test_corrupted_manifest_names_the_file(self):
        arrays = _arrays("float32")
        entry = self.group.entry(4, _shapes(arrays, "float32"))
        (entry.path / "manifest.json").write_text('{"format": "vitjax-feature-st')
        with self.assertRaisesRegex(StoreError, r"manifest .*layer_04/manifest.json is corrupted"):
            self.group.entry(4, _shapes(arrays, "float32"))

    def test_corrupted_group_key_names_the_file(self):
        (self.group.path / "key.json").write_text("[1, 2")
        with self.assertRaisesRegex(StoreError, r"key.json is corrupted"):
            self.store.group(KEY, name="dino_vits16")

    def test_group_of_another_model_or_geometry(self):
        other = dict(KEY, model="mae_vitb16", input_size=[64, 64])
        # A group directory that holds another key (copied or renamed by hand).
        shutil.copytree(self.group.path, self.store.group_dir(other, "mae_vitb16"))
        with self.assertRaisesRegex(StoreError, r"another model or geometry: input_size.*model"):
            self.store.group(other, name="mae_vitb16")

    def test_entry_of_another_geometry(self):
        arrays = _arrays("float32")
        self.group.entry(6, _shapes(arrays, "float32"))
        wrong = {"patch": ((10, 4, 4, 4), "float32"), "cls": ((10, 4), "float32")}
        with self.assertRaisesRegex(StoreError, r"layer_06 .*another model or geometry: arrays"):
            self.group.entry(6, wrong)

    def test_root_that_is_not_a_store(self):
        other = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, other, ignore_errors=True)
        (other / "notes.txt").write_text("hello")
        with self.assertRaisesRegex(StoreError, "not a vitjax store"):
            store_lib.FeatureStore(other)
        (self.root / "store.json").write_text('{"format": "something-else/9"}')
        with self.assertRaisesRegex(StoreError, "store.json: format 'something-else/9'"):
            store_lib.FeatureStore(self.root)

    def test_metadata_round_trip_and_errors(self):
        meta = {"label": np.arange(10) % 3, "boxes": np.zeros((10, 2, 4), np.float32)}
        self.group.write_metadata(meta, 10)
        got = self.group.read_metadata()
        self.assertEqual(sorted(got), ["boxes", "label"])
        np.testing.assert_array_equal(got["label"], meta["label"])
        with self.assertRaisesRegex(StoreError, r"metadata 'label': expected shape \[N=10"):
            self.group.write_metadata({"label": np.arange(9)}, 10)
        with self.assertRaisesRegex(StoreError, "metadata 'bad/name'"):
            self.group.write_metadata({"bad/name": np.arange(10)}, 10)

    def test_concurrent_creation_yields_one_entry(self):
        arrays = _arrays("float32")
        shapes = _shapes(arrays, "float32")
        barrier = threading.Barrier(4)
        opened, failures = [], []

        def create():
            barrier.wait()
            try:
                opened.append(self.store.group(KEY, name="dino_vits16").entry(9, shapes))
            except Exception as err:  # noqa: BLE001 - collected for the assertion below
                failures.append(err)

        threads = [threading.Thread(target=create) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(failures, [])
        self.assertLen({entry.path for entry in opened}, 1)
        leftovers = [p.name for p in self.group.path.iterdir() if ".tmp-" in p.name]
        self.assertEqual(leftovers, [])


if __name__ == "__main__":
    absltest.main()
