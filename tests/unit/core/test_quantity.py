"""Kubernetes quantities: the grammar of resource.Quantity and exact values."""

import random
from decimal import Decimal

import pytest

from worker.core.quantity import parse_quantity

Ki, Mi, Gi = 2**10, 2**20, 2**30


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("1", 1),
        ("128Mi", 128 * Mi),
        ("1.5Gi", Gi + Gi // 2),
        ("1Ki", Ki),
        ("1Ti", 2**40),
        ("1Pi", 2**50),
        ("1Ei", 2**60),
        ("500m", Decimal("0.5")),
        ("100m", Decimal("0.1")),
        ("1n", Decimal("1e-9")),
        ("1u", Decimal("1e-6")),
        ("2k", 2000),
        ("1M", 10**6),
        ("1G", 10**9),
        ("1T", 10**12),
        ("1P", 10**15),
        ("1E", 10**18),
        ("1e3", 1000),
        ("1E3", 1000),
        ("1e+3", 1000),
        ("5e-1", Decimal("0.5")),
        ("1e0", 1),
        (".5", Decimal("0.5")),
        ("1.", 1),
        ("0.25", Decimal("0.25")),
        ("+1", 1),
        ("-1", -1),
        ("-.5Gi", -Gi // 2),
        ("007", 7),
    ],
)
def test_valid_quantities_parse_to_exact_values(text: str, value: int | Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "Mi",
        "m",
        ".",
        "+",
        "1.2.3",
        "1 Mi",
        " 1",
        "1Mi ",
        "1mi",
        "1K",
        "1KiB",
        "1MB",
        "1ki",
        "e3",
        "1e",
        "1e+",
        "1e1.5",
        "1Ki2",
        "--1",
        "+-1",
        "1..",
        "inf",
        "nan",
        "Infinity",
        "0x10",
        "1_000",
        "\uff11",  # a full-width digit one: not an ASCII digit
        "1\n",
        "1" * 65,  # longer than any sane quantity
        "1e65",
        "1e-65",
        "1e99999999999999999999999",
    ],
)
def test_invalid_quantities_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_the_error_never_repeats_the_input() -> None:
    with pytest.raises(ValueError) as caught:
        parse_quantity("SECRET-VALUE")
    assert "SECRET" not in str(caught.value)


def test_generated_quantities_from_the_grammar_are_accepted() -> None:
    rng = random.Random(1234)
    suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"]
    for _ in range(2000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6)))
        fraction = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 3)))
        number = rng.choice([digits, f"{digits}.{fraction}", f".{digits}"])
        suffix = rng.choice([*suffixes, f"e{rng.randint(-9, 9)}", f"E+{rng.randint(0, 9)}"])
        sign = rng.choice(["", "+", "-"])
        text = f"{sign}{number}{suffix}"
        value = parse_quantity(text)
        assert (value < 0) == (sign == "-" and value != 0), text


def test_comparisons_across_suffixes_are_exact() -> None:
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1000m") == parse_quantity("1")
    assert parse_quantity("1024Ki") == parse_quantity("1Mi")
    assert parse_quantity("0.1") == parse_quantity("100m")


def test_the_length_limit_is_64_characters() -> None:
    assert parse_quantity("1" * 64) == int("1" * 64)
    with pytest.raises(ValueError, match=r"^not a Kubernetes quantity$"):
        parse_quantity("1" * 65)


def test_the_exponent_limit_is_64_either_way_and_the_errors_never_repeat_the_text() -> None:
    assert parse_quantity("1e64") == 10**64
    assert parse_quantity("1e-64") == Decimal("1e-64")
    for text in ("1e65", "1e-65"):
        with pytest.raises(ValueError, match=r"^Kubernetes quantity exponent out of range$"):
            parse_quantity(text)
    with pytest.raises(ValueError, match=r"^not a Kubernetes quantity$"):
        parse_quantity("12 sk-live-SECRET")


def test_values_beyond_the_default_decimal_precision_stay_exact() -> None:
    # 40 significant digits times 2**60: Python's default context (28 digits) would round it.
    digits = "1234567890123456789012345678901234567891"
    assert parse_quantity(digits + "Ei") == int(digits) * 2**60
    assert parse_quantity(digits + "E") == int(digits) * 10**18
