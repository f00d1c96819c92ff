"""A bot's container resources from its config, as the0's original runtime reads them, made safe.

Pure: no I/O. the0's runtime honours `config.memory_limit`, `cpu_limit`, `memory_request` and
`cpu_request` only when they are strings that parse as Kubernetes quantities, and silently keeps
the default for anything else. Bots written against it (a number, "2GB") must keep running here,
so nothing in this module stops a bot: a value it cannot use is replaced by the default and
named in a warning, a value above the deployment's ceiling is clamped to it, and a request above
its limit is lowered to the limit (as Kubernetes itself defaults a missing request to the limit).
Warnings never quote a value that could be a secret: only short quantity-shaped text is shown.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from worker.core.quantity import parse_quantity

WARNING_REASON = "resources_ignored"
_SHOWN_LIMIT = 12  # a quantity is short; anything longer is not echoed into a status
# Digits with a unit: a mistyped quantity ("2GB", "1.5 Gi" is not), shown as typed.
_QUANTITY_LIKE = re.compile(r"[+-]?[0-9.]+[A-Za-z]{0,3}", re.ASCII)


@dataclass(frozen=True, kw_only=True)
class Resources:
    """Kubernetes quantities for the bot container, already validated."""

    memory_limit: str
    cpu_limit: str
    memory_request: str
    cpu_request: str


DEFAULT_RESOURCES = Resources(
    memory_limit="512Mi", cpu_limit="500m", memory_request="128Mi", cpu_request="100m"
)
"""The platform's defaults (DESIGN §1); settings may override them."""

DEFAULT_CEILINGS = Resources(
    memory_limit="4Gi", cpu_limit="2", memory_request="1Gi", cpu_request="1"
)
"""Highest value a bot may ask for (settings MAX_*; README "Configuration" says why)."""


@dataclass(frozen=True, kw_only=True)
class ResourcePolicy:
    """Deployment-wide: what a bot gets when it asks for nothing, and the most it may get."""

    defaults: Resources = DEFAULT_RESOURCES
    ceilings: Resources = DEFAULT_CEILINGS


DEFAULT_POLICY = ResourcePolicy()

_FIELDS = ("memory_limit", "cpu_limit", "memory_request", "cpu_request")


def resolve_resources(config: Mapping[str, Any], policy: ResourcePolicy
                      ) -> tuple[Resources, tuple[str, ...]]:
    """The bot's resources and one warning per value that was ignored, clamped or lowered."""
    warnings: list[str] = []
    chosen: dict[str, str] = {}
    for key in _FIELDS:
        default = getattr(policy.defaults, key)
        value = _usable_quantity(config.get(key))
        if value is None:
            if config.get(key) not in (None, ""):
                warnings.append(f"config.{key} {_shown(config.get(key))} is not a positive "
                                f"Kubernetes quantity string; using the default {default}")
            chosen[key] = default
            continue
        ceiling = getattr(policy.ceilings, key)
        if parse_quantity(value) > parse_quantity(ceiling):
            warnings.append(f"config.{key} {_shown(value)} is above the ceiling {ceiling}; "
                            f"using {ceiling}")
            value = ceiling
        chosen[key] = value
    for resource in ("memory", "cpu"):
        request, limit = chosen[f"{resource}_request"], chosen[f"{resource}_limit"]
        if parse_quantity(request) > parse_quantity(limit):
            if config.get(f"{resource}_request") not in (None, ""):
                warnings.append(f"config.{resource}_request {_shown(request)} is above its "
                                f"limit {limit}; using {limit}")
            chosen[f"{resource}_request"] = limit
    return Resources(**chosen), tuple(warnings)


def _usable_quantity(raw: object) -> str | None:
    """The value as the original runtime would use it: a non-blank string that is a valid,
    positive quantity. Zero is refused too: a 0 limit means "unlimited" to nobody here, and a
    zero memory limit is a container that cannot start."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    try:
        value: Decimal = parse_quantity(text)
    except ValueError:
        return None
    return text if value > 0 else None


def _shown(raw: object) -> str:
    """The value for a warning when it looks like a quantity someone mistyped ("2GB", 1024);
    anything else is described, not echoed: the config also holds the bot's secrets."""
    if isinstance(raw, bool) or raw is None:
        return f"({type(raw).__name__})"
    if isinstance(raw, int | float):
        return repr(raw) if len(repr(raw)) <= _SHOWN_LIMIT else "(a number)"
    if isinstance(raw, str) and len(raw) <= _SHOWN_LIMIT and _QUANTITY_LIKE.fullmatch(raw):
        return repr(raw)
    return f"(a {type(raw).__name__}, not shown)"
