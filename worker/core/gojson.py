"""Go's `encoding/json.Marshal` text for the values the0's runtime decodes from MongoDB.

the0's Go runtime decodes `config` into `map[string]interface{}` (mongo-go-driver v1: BSON
double → float64, int32 → int32, int64 → int64, documents → maps, arrays → []interface{})
and writes BOT_CONFIG with `json.Marshal` (the0's go.mod says `go 1.24.1`; its image builds
with golang:1.24). Bots parse that text, so ours must be byte-identical: `5`, not `5.0`.
PyMongo keeps the same distinction (double → float, int32/int64 → int), so the Python types
say which Go type the value had.

What Go writes, and so what this writes:
- objects: keys sorted by their UTF-8 bytes, no spaces;
- float64: strconv's shortest round-trip digits, as 'f' for 1e-6 <= |x| < 1e21 and 'e'
  otherwise, with a negative exponent unpadded (`1e-7`, `1e+21`); -0.0 is `-0`;
- strings: `"` `\\` and control characters escaped (`\\b` `\\f` `\\n` `\\r` `\\t` short forms
  since Go 1.22, the rest as `\\u00XX`), HTML-escaped (`<` `>` `&` as `\\u003c` `\\u003e`
  `\\u0026`), U+2028/U+2029 escaped, everything else raw UTF-8; an ill-formed character
  becomes `\\ufffd` (Go replaces each invalid byte; a Python string can only hold one as a
  lone surrogate, which stands for one such byte under the `surrogateescape` convention).
NaN and infinities are refused (ValueError), as Go's Marshal refuses them; so is a reference
cycle. Anything that is not plain JSON data (non-string keys, sets, bytes, dates) is a
TypeError.

Pure: no I/O. Unlike `canonical.canonical_json` this is for text a bot reads, never for
hashes (changing a hash's input would replace every running pod).
"""

import math
import re
from collections.abc import Mapping

_LOWEST_FIXED = 1e-6  # Go's floatEncoder: below this (and at 1e21 or above) it writes 'e' form
_HIGHEST_FIXED = 1e21

_SHORT_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
}
_ESCAPES: dict[int, str] = {
    **{code: f"\\u{code:04x}" for code in range(0x20)},
    **{ord(char): escaped for char, escaped in _SHORT_ESCAPES.items()},
    **{ord(char): f"\\u{ord(char):04x}" for char in "<>&\u2028\u2029"},
    **{code: "\\ufffd" for code in range(0xD800, 0xE000)},
}
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')


def go_json(value: object) -> str:
    """The text Go's `json.Marshal` writes for `value` (the Go value the0 decodes it as).

    Raises ValueError for NaN, infinities and cycles, TypeError for what is not JSON data.
    """
    parts: list[str] = []
    _append(value, parts, set())
    return "".join(parts)


def _append(value: object, parts: list[str], open_containers: set[int]) -> None:
    # bool before int: Python's bool is an int, Go's is not.
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_string(value))
    elif isinstance(value, int):
        parts.append(int.__repr__(value))  # not str(): an IntEnum would print its name
    elif isinstance(value, float):
        parts.append(_float64(value))
    elif isinstance(value, Mapping):
        _enter(value, open_containers)
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
        parts.append("{")
        for index, key in enumerate(sorted(keys, key=_go_bytes)):
            if index:
                parts.append(",")
            parts.append(_string(key))
            parts.append(":")
            _append(value[key], parts, open_containers)
        parts.append("}")
        open_containers.discard(id(value))
    elif isinstance(value, list | tuple):
        _enter(value, open_containers)
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _append(item, parts, open_containers)
        parts.append("]")
        open_containers.discard(id(value))
    else:
        raise TypeError(f"{type(value).__name__} is not JSON data")


def _enter(container: object, open_containers: set[int]) -> None:
    # A container already being written is a cycle: Go errors on one, json.dumps too.
    if id(container) in open_containers:
        raise ValueError("circular reference")
    open_containers.add(id(container))


def _string(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: nothing to escape
        return f'"{text}"'
    return f'"{text.translate(_ESCAPES)}"'


def _go_bytes(key: str) -> bytes:
    """The bytes Go compares when it sorts map keys."""
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: U+DC80..U+DCFF stands for the raw byte it escapes; any other keeps
        # its code point order (and goes out as \ufffd, whatever its place).
        return b"".join(
            bytes([ord(char) - 0xDC00]) if 0xDC80 <= ord(char) <= 0xDCFF
            else char.encode("utf-8", "surrogatepass")
            for char in key
        )


def _float64(number: float) -> str:
    if math.isnan(number) or math.isinf(number):
        raise ValueError("NaN and infinities are not JSON (Go's Marshal refuses them)")
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign = "-" if number < 0 else ""
    magnitude = abs(number)
    digits, point = _shortest_digits(magnitude)
    if _LOWEST_FIXED <= magnitude < _HIGHEST_FIXED:
        return sign + _fixed(digits, point)
    exponent = point - 1
    mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
    # strconv pads the exponent to two digits; Go's encoder then strips the pad of e-0X.
    suffix = f"e-{-exponent}" if exponent < 0 else f"e+{exponent:02d}"
    return sign + mantissa + suffix


def _shortest_digits(magnitude: float) -> tuple[str, int]:
    """(digits, point) with magnitude == 0.<digits> * 10**point, digits the shortest that
    round-trip: Python's repr and Go's strconv (-1 precision) both pick those, nearest first."""
    text = repr(magnitude)  # "5.0", "0.0001", "1e-07", "1.2345e+22"
    mantissa, _, exponent_text = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = (int(exponent_text) if exponent_text else 0) + len(whole)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    return significant.rstrip("0"), point


def _fixed(digits: str, point: int) -> str:
    # strconv 'f' with precision -1: exactly the shortest digits, no trailing ".0".
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    if point > 0:
        return f"{digits[:point]}.{digits[point:]}"
    return "0." + "0" * -point + digits
