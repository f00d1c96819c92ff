"""Whether the buckets bots need exist, said so that an operator knows what to change. Pure.

the0's seed names `MINIO_BUCKET=the0-custom-bots` as the default, and this project keeps it,
but the0's API stores bot code in `custom-bots`: pointed at a real installation with the
defaults, every bot would get `code_not_found`. The check names the bucket and says that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

THE0_CODE_BUCKET = "custom-bots"
"""Where the0's API stores bots' code zips."""


@dataclass(frozen=True, kw_only=True)
class BucketCheck:
    name: str
    exists: bool | None  # None: could not be checked (error says why)
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "exists": self.exists, "error": self.error}


def bucket_problem(role: str, check: BucketCheck) -> str | None:
    """None when the bucket exists, else one sentence naming it (and the hint for code)."""
    if check.exists:
        return None
    if check.exists is None:
        return f"{role} bucket {check.name!r} could not be checked: {check.error}"
    if role == "state":
        return (f"state bucket {check.name!r} does not exist (STATE_BUCKET); it is created "
                "on the first pod's signing, which needs the right to create buckets")
    hint = ("" if check.name == THE0_CODE_BUCKET else
            f"; the0's API stores bot code in {THE0_CODE_BUCKET!r}: set "
            f"MINIO_BUCKET={THE0_CODE_BUCKET}")
    return f"code bucket {check.name!r} does not exist (MINIO_BUCKET){hint}"


def problems(checks: Mapping[str, BucketCheck]) -> dict[str, str]:
    """role → problem, for the buckets that have one."""
    found = {role: bucket_problem(role, check) for role, check in checks.items()}
    return {role: text for role, text in found.items() if text is not None}
