"""vitjax.canonical: one JSON text per value for keys, NaN rejected in keys and null in results."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from absl.testing import absltest, parameterized

from vitjax import canonical, errors, experiments, store


class CanonicalTest(parameterized.TestCase):
    def test_canonical_json_matches_hand_written_text(self):
        key = {"b": (1, np.int64(2)), "a": np.float32(0.5), "c": {"z": None, "y": Path("/x")}}
        # Written by hand: sorted keys at every level, no spaces, tuples and numpy as lists/scalars.
        expected = '{"a":0.5,"b":[1,2],"c":{"y":"/x","z":null}}'
        self.assertEqual(canonical.canonical_json(key), expected)
        self.assertEqual(canonical.key_hash(key), hashlib.sha256(expected.encode()).hexdigest())

    def test_digest_keeps_the_digests_of_stored_keys(self):
        # The text the digests inside existing cache keys were made from (the former
        # experiments.stable_hash): json.dumps with default separators, sorted keys.
        value = {"train": ["b", "a"], "n": 3, "size": (224, 224), "x": np.float64(1.25)}
        legacy = json.dumps({"n": 3, "size": [224, 224], "train": ["b", "a"], "x": 1.25})
        self.assertEqual(canonical.digest(value), hashlib.sha256(legacy.encode()).hexdigest()[:16])
        self.assertLen(canonical.digest(value, length=64), 64)
        self.assertIs(experiments.stable_hash, canonical.digest)

    @parameterized.parameters(float("nan"), float("inf"), -float("inf"), np.float32("nan"))
    def test_keys_reject_non_finite(self, value):
        for fn in (canonical.canonical_json, canonical.key_hash, canonical.digest):
            with self.assertRaisesRegex(canonical.CanonicalError, r"key field a\.b\[1\]"):
                fn({"a": {"b": [0.0, value]}})
        with self.assertRaisesRegex(errors.StoreError, "non-finite"):
            store.canonical_json({"sigma": value})

    def test_keys_reject_non_json_values(self):
        with self.assertRaisesRegex(canonical.CanonicalError, "key field fn: .* got object"):
            canonical.digest({"fn": object()})
        with self.assertRaisesRegex(canonical.CanonicalError, "dict keys must be str"):
            canonical.canonical_json({1: "a"})

    def test_results_write_non_finite_as_null(self):
        value = canonical.to_jsonable(
            {"a": np.float32(1.5), "b": (np.int64(2), float("nan")), 3: np.array([np.inf, 1.0])}
        )
        self.assertEqual(value, {"a": 1.5, "b": [2, None], "3": [None, 1.0]})
        text = json.dumps(value, allow_nan=False)  # valid JSON: no NaN token
        self.assertEqual(json.loads(text), value)
        self.assertFalse(any(isinstance(v, float) and math.isnan(v) for v in value["b"]))


if __name__ == "__main__":
    absltest.main()
