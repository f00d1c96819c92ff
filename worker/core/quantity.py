"""Kubernetes resource quantities ("128Mi", "500m", "1e3"), validated and parsed to exact Decimals.

Pure: no I/O. The grammar follows k8s.io/apimachinery resource.Quantity:
optional sign, digits with an optional decimal part, then an optional suffix: a binary SI suffix
(Ki Mi Gi Ti Pi Ei), a decimal SI suffix (n u m k M G T P E) or a decimal exponent (e3, E-2).
"""

import re
from decimal import Decimal, localcontext

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)"
    r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
_BINARY_POWERS = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# Far beyond any real resource; bounding these keeps every Decimal below exact.
_MAX_LENGTH = 64
_MAX_EXPONENT = 64
_EXACT_PRECISION = 100  # 64 digits of mantissa times at most 2**60 (19 digits) fits exactly


def parse_quantity(text: str) -> Decimal:
    """Return the exact value of a Kubernetes quantity; ValueError if `text` is not one.

    The error message never repeats `text`: quantities come from the secret bot config.
    """
    match = _QUANTITY.fullmatch(text) if len(text) <= _MAX_LENGTH else None
    if match is None:
        raise ValueError("not a Kubernetes quantity")
    suffix = match["suffix"] or ""
    exponent, binary_power = 0, 0
    if suffix in _BINARY_POWERS:
        binary_power = _BINARY_POWERS[suffix]
    elif suffix in _DECIMAL_EXPONENTS:
        exponent = _DECIMAL_EXPONENTS[suffix]
    elif suffix:
        exponent = int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise ValueError("Kubernetes quantity exponent out of range")
    with localcontext(prec=_EXACT_PRECISION):
        return Decimal(match["sign"] + match["number"]).scaleb(exponent) * (1 << binary_power)
