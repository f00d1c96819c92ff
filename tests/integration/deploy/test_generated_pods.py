"""The objects the controller generates for bots (worker/core/podspec.py, cronspec.py) are
admitted, as the controller identity, in a namespace that enforces PodSecurity `restricted` —
for every runtime, with per-bot resource overrides."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support.bots import bot_doc
from tools.stack.supervisor import Stack, StackEnv
from worker.core.bot import DEFAULT_IMAGES, RUNTIMES, BotKind, parse_bot
from worker.core.cronspec import CronJobSettings, build_cronjob, build_cronjob_secret
from worker.core.podspec import PodTemplateSettings, SignedUrls, build_config_secret, build_pod

UID = "00000000-0000-0000-0000-000000000001"
URLS = SignedUrls(code="http://s3/x?sig=1", state_get="http://s3/s?sig=2",
                  state_put="http://s3/s?sig=3", signed_at=0)


def create_dry_run(stack: Stack, kubeconfig: str, namespace: str, obj: dict[str, Any]) -> None:
    result = subprocess.run(
        [str(stack.bins.kubectl), "--kubeconfig", kubeconfig, "create", "--dry-run=server",
         "-n", namespace, "-f", "-"],
        input=json.dumps(obj), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{obj['kind']} {obj['metadata']['name']}: {result.stderr}"
    assert "Warning" not in result.stderr, result.stderr


def template(namespace: str) -> PodTemplateSettings:
    return PodTemplateSettings(namespace=namespace, image_map=DEFAULT_IMAGES,
                               init_image="the0/the0-k8s:latest")


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_live_bot_pod_and_secret_are_admitted(stack: Stack, stack_env: StackEnv,
                                              restricted_namespace: str, runtime: str) -> None:
    doc = bot_doc(f"Live_{runtime}.X", runtime=runtime, memory_limit="1Gi", cpu_request="200m")
    bot = parse_bot(doc, kind=BotKind.LIVE)
    pod = build_pod(bot, template(restricted_namespace))
    create_dry_run(stack, stack_env.controller_kubeconfig, restricted_namespace, pod)
    secret = build_config_secret(bot, pod_name=pod["metadata"]["name"], pod_uid=UID,
                                 namespace=restricted_namespace, urls=URLS)
    create_dry_run(stack, stack_env.controller_kubeconfig, restricted_namespace, secret)


@pytest.mark.parametrize("runtime", ["python3.11", "nodejs20", "rust-stable"])
def test_scheduled_bot_cronjob_and_its_run_pod_are_admitted(
        stack: Stack, stack_env: StackEnv, restricted_namespace: str, runtime: str) -> None:
    doc = bot_doc(f"sched-{runtime}", runtime=runtime, schedule="*/5 * * * *",
                  timezone="Europe/Berlin")
    bot = parse_bot(doc, kind=BotKind.SCHEDULED)
    cronjob = build_cronjob(bot, template(restricted_namespace), CronJobSettings())
    # PodSecurity only warns on a CronJob; the pods of its runs are what it enforces on.
    create_dry_run(stack, stack_env.controller_kubeconfig, restricted_namespace, cronjob)
    run = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{cronjob['metadata']['name']}-run",
                        "labels": run["metadata"].get("labels", {})},
           "spec": run["spec"]}
    create_dry_run(stack, stack_env.admin_kubeconfig, restricted_namespace, pod)
    secret = build_cronjob_secret(bot, cronjob_name=cronjob["metadata"]["name"], cronjob_uid=UID,
                                  namespace=restricted_namespace, urls=URLS)
    create_dry_run(stack, stack_env.controller_kubeconfig, restricted_namespace, secret)
