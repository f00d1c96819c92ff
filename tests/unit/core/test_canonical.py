"""Canonical JSON and hashes: one text per value, independent of key order or process."""

import hashlib
import hmac
import math

import pytest

from worker.core.canonical import canonical_json, sha256_hex


def test_keys_are_sorted_at_every_level_spaces_dropped_and_output_ascii() -> None:
    value = {"b": 1, "a": {"z": [1, 2], "y": "é"}}
    assert canonical_json(value) == '{"a":{"y":"\\u00e9","z":[1,2]},"b":1}'


def test_insertion_order_does_not_matter() -> None:
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


@pytest.mark.parametrize(
    "value", [{"x": math.nan}, {"x": math.inf}, {"x": {1, 2}}, {"x": object()}]
)
def test_non_json_values_are_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_json(value)


def test_sha256_hex_is_the_standard_digest() -> None:
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_lone_surrogate_hashes_instead_of_failing() -> None:
    # Bot configs decoded from BSON/JSON can hold one; the hash must not raise on it.
    from worker.core.canonical import keyed_hash_hex

    lone = "a\ud800b"
    assert sha256_hex(lone) == hashlib.sha256(b"a\xed\xa0\x80b").hexdigest()
    assert keyed_hash_hex(b"key", lone) == hmac.new(b"key", b"a\xed\xa0\x80b",
                                                   hashlib.sha256).hexdigest()
