"""No default Flower login anywhere: Flower's app refuses to start without a real one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from worker.settings import flower_login_problem


@pytest.mark.parametrize(("value", "problem"), [
    ("", "is not set"),
    ("   ", "is not set"),
    ("SET-ME", "login 1 is not user:password"),
    ("admin:", "login 1 is not user:password"),
    (":long-enough-password", "login 1 is not user:password"),
    ("admin:tiny1", "shorter than 12"),
    ("admin:CHANGE-ME-PLEASE-NOW", "placeholder"),
    ("admin:mypassword1234", "placeholder"),
    ("ops:aB3dE6gH9jK2mN,admin:x", "login 2"),
])
def test_unusable_logins_are_named_without_the_value(value: str, problem: str) -> None:
    found = flower_login_problem(value)
    assert found is not None and problem in found
    secret = value.partition(":")[2]
    assert not secret or secret not in found


@pytest.mark.parametrize("value", ["operator:s3cret-flower-pw", "a:aB3dE6gH9jK2mN,b:Zy8xW7vU6tS5"])
def test_real_logins_pass(value: str) -> None:
    assert flower_login_problem(value) is None


def test_flowers_app_refuses_to_load_with_the_shipped_placeholder() -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "FLOWER_BASIC_AUTH": "SET-ME"}
    done = subprocess.run([sys.executable, "-c", "import worker.flower_app"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "Flower refuses to start: FLOWER_BASIC_AUTH login 1 is not user:password" in (
        done.stderr)
    env["FLOWER_BASIC_AUTH"] = "operator:s3cret-flower-pw"
    done = subprocess.run([sys.executable, "-c", "import worker.flower_app"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
