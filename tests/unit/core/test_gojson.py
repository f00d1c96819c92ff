"""go_json: Go's json.Marshal text for the values the0 decodes (known answers, written by hand
from Go's encoder; tests/integration/stack/test_gojson_oracle.py checks thousands against Go)."""

import enum
import math
from typing import Any

import pytest

from worker.core.gojson import go_json


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (5.0, "5"),  # the reason for this module: Python writes 5.0
        (-3.0, "-3"),
        (0.0, "0"),
        (-0.0, "-0"),
        (123456789.0, "123456789"),
        (0.1, "0.1"),
        (2.5, "2.5"),
        (19.99, "19.99"),
        (1 / 3, "0.3333333333333333"),
        (2.0**53, "9007199254740992"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),  # the last 'f' decade
        (1e21, "1e+21"),
        (-1e21, "-1e+21"),
        (1.5e300, "1.5e+300"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (0.000001, "0.000001"),  # 1e-6 is still 'f'
        (0.0000012345, "0.0000012345"),
        (math.nextafter(1e-6, 0.0), "9.999999999999997e-7"),
        (1e-7, "1e-7"),  # strconv's e-07, unpadded by the encoder
        (-2.5e-9, "-2.5e-9"),
        (1e-10, "1e-10"),
        (1.25e-100, "1.25e-100"),
        (5e-324, "5e-324"),  # the smallest subnormal
        (2.2250738585072014e-308, "2.2250738585072014e-308"),
    ],
)
def test_float64_as_go_writes_it(number: float, text: str) -> None:
    assert go_json(number) == text


@pytest.mark.parametrize(
    ("number", "text"),
    [(0, "0"), (5, "5"), (-2**31, "-2147483648"), (2**63 - 1, "9223372036854775807")],
)
def test_integers_are_integers(number: int, text: str) -> None:
    assert go_json(number) == text


def test_an_int_enum_writes_its_number() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    assert go_json(Level.HIGH) == "3"


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("plain", '"plain"'),
        ("<&>", '"\\u003c\\u0026\\u003e"'),  # Go's HTML escaping
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ('"\\', '"\\"\\\\"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),  # \b and \f short since Go 1.22
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("\x7f", '"\x7f"'),  # DEL is not escaped
        ("/", '"/"'),
        ("é€", '"é€"'),  # non-ASCII stays raw UTF-8
        ("\U0001f600\U0010ffff", '"\U0001f600\U0010ffff"'),
        ("\udc80", '"\\ufffd"'),  # an invalid byte (surrogateescape)
        ("a\ud800b", '"a\\ufffdb"'),  # a lone surrogate
        (b"\xf0\x9f\x98".decode("utf-8", "surrogateescape"), '"\\ufffd\\ufffd\\ufffd"'),
    ],
)
def test_strings_as_go_escapes_them(text: str, written: str) -> None:
    assert go_json(text) == written


def test_literals() -> None:
    assert go_json([None, True, False]) == "[null,true,false]"


def test_objects_sort_keys_by_utf8_bytes_at_every_level_without_spaces() -> None:
    value = {"b": 1.0, "a": {"z": [1, 2.0], "y": "é"}, "B": [], "": {}}
    assert go_json(value) == '{"":{},"B":[],"a":{"y":"é","z":[1,2]},"b":1}'


def test_keys_sort_as_bytes_an_invalid_byte_after_every_valid_character() -> None:
    # U+FFFF is EF BF BF; the raw byte 0xFF sorts after it (Go compares bytes).
    value = {"\udcff": 1, "\uffff": 2, "\U00010000": 3, "$schema": 4, "é": 5}
    assert go_json(value) == '{"$schema":4,"é":5,"\uffff":2,"\U00010000":3,"\\ufffd":1}'


def test_keys_are_escaped_like_strings() -> None:
    assert go_json({"<k>": "&"}) == '{"\\u003ck\\u003e":"\\u0026"}'


def test_a_tuple_is_an_array_and_nesting_is_kept() -> None:
    deep: Any = 5.0
    for _ in range(100):
        deep = {"k": [deep]}
    text = go_json(deep)
    assert text == '{"k":[' * 100 + "5" + "]}" * 100
    assert go_json((1, (2.0,))) == "[1,[2]]"


def test_a_typical_config() -> None:
    config = {"symbol": "BTC/USDT", "amount": 100.0, "threshold": 0.015, "enabled": True,
              "$schema": "x", "levels": [1.0, 2.5], "note": None}
    assert go_json(config) == (
        '{"$schema":"x","amount":100,"enabled":true,"levels":[1,2.5],"note":null,'
        '"symbol":"BTC/USDT","threshold":0.015}'
    )


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_as_go_refuses_them(number: float) -> None:
    with pytest.raises(ValueError):
        go_json({"x": [number]})


def test_a_cycle_is_refused() -> None:
    looped: dict[str, Any] = {}
    looped["self"] = [looped]
    with pytest.raises(ValueError):
        go_json(looped)


def test_a_shared_value_is_not_a_cycle() -> None:
    shared = [1]
    assert go_json({"a": shared, "b": shared}) == '{"a":[1],"b":[1]}'


@pytest.mark.parametrize("value", [{1: "x"}, {"x": {1, 2}}, {"x": b"raw"}, {"x": object()}])
def test_what_is_not_json_data_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        go_json(value)


def test_lone_surrogates_sort_as_the_bytes_go_would_compare() -> None:
    # By hand: U+DC80..U+DCFF stand for the raw bytes 0x80..0xFF; other lone surrogates keep
    # their UTF-8 form (U+D800 = ED A0 80, U+DC7F = ED B1 BF). So: "ab" (61 62) < "a"+0x80 <
    # "z" (7A) < 0x80 < "é" (C3 A9) < U+D800 < U+DC7F < 0xFF. Every lone surrogate goes out as
    # \ufffd, as Go writes an invalid byte.
    keys = ["\udcff", "é", "\ud800", "z", "\udc80", "ab", "a\udc80", "\udc7f"]
    value = {key: number for number, key in enumerate(keys, start=1)}
    assert go_json(value) == ('{"ab":6,"a\\ufffd":7,"z":4,"\\ufffd":5,"é":2,"\\ufffd":3,'
                              '"\\ufffd":8,"\\ufffd":1}')


def test_refusals_say_why() -> None:
    with pytest.raises(ValueError, match=r"^NaN and infinities are not JSON \(Go's Marshal "
                                         r"refuses them\)$"):
        go_json(math.nan)
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(ValueError, match=r"^circular reference$"):
        go_json(looped)
    with pytest.raises(TypeError, match=r"^object keys must be strings, not int$"):
        go_json({1: 2})
    with pytest.raises(TypeError, match=r"^set is not JSON data$"):
        go_json({1, 2})


def test_a_container_closed_is_no_longer_open() -> None:
    # The same list twice in a row, and nested twice: only a container inside itself is a cycle.
    inner = [1]
    outer = [inner, [inner, inner]]
    assert go_json([outer, outer]) == "[[[1],[[1],[1]]],[[1],[[1],[1]]]]"
