"""Canonical JSON and content hashes that are stable across processes and Python versions.

Pure: no I/O. Never use Python's `hash()` for anything stored or compared between processes:
it is salted per process.
"""

import hashlib
import hmac
import json


def canonical_json(value: object) -> str:
    """Serialise `value` to one canonical JSON text: sorted keys, no spaces, no NaN/Infinity.

    Raises TypeError or ValueError when `value` is not plain JSON data.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of the UTF-8 encoding of `text`."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def keyed_hash_hex(key: bytes, text: str) -> str:
    """Hex HMAC-SHA-256 of the UTF-8 encoding of `text` under `key`: a digest of secret input
    (a bot's config) that nobody without the key can confirm a guess against."""
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
