"""Every setting the shipped configuration sets is one the controller knows, and every required
setting is set — in the Kubernetes ConfigMap + Secret and in compose's env file alike. A typo in
a variable name would otherwise be silently ignored (settings ignore unknown names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from worker.app import QUEUE_BOTS, QUEUE_LOGS, QUEUE_RECONCILE
from worker.core.quantity import parse_quantity
from worker.settings import ROLE_REQUIRES, Settings

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
# Read by other programs than the controller's settings.
OTHER_PROGRAMS = {
    "FLOWER_BASIC_AUTH",                                          # Flower
    "MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD",   # the mongo image
    "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD",                     # the minio image
}
REQUIRED = {name for name, field in Settings.model_fields.items() if field.is_required()} | set(
    ROLE_REQUIRES["worker"])


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_configmap_and_secret_set_known_settings_and_every_required_one() -> None:
    config = documents("configmap.yaml")[0]["data"]
    secret = documents("secret.yaml")[0]["stringData"]
    unknown = (set(config) | set(secret)) - set(Settings.model_fields) - OTHER_PROGRAMS
    assert unknown == set()
    assert set(config) | set(secret) >= REQUIRED
    assert not set(config) & {"MONGO_URI", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"}, \
        "credentials belong in the Secret"


def test_env_example_sets_known_settings_and_every_required_one() -> None:
    env = env_example()
    assert set(env) - set(Settings.model_fields) - OTHER_PROGRAMS == set()
    assert set(env) >= REQUIRED


# Deployment → the role its process loads settings under, how its command says so, and the
# Secret keys beyond ROLE_REQUIRES it reads (the broker for all; NATS for the consumer, and for
# the api only whether it is set; Flower's own login).
ROLES = {
    "worker.yaml": ("worker", ["celery", "-A", "worker", "worker"], {"REDIS_URL"}),
    "log-worker.yaml": ("logs", ["celery", "-A", "worker.log_app", "worker"], {"REDIS_URL"}),
    "events.yaml": ("events", ["python", "-m", "worker", "events"], {"REDIS_URL", "NATS_URL"}),
    "beat.yaml": ("broker", ["celery", "-A", "worker.broker_app", "beat"], {"REDIS_URL"}),
    "flower.yaml": ("broker", ["celery", "-A", "worker.flower_app", "flower"],
                    {"REDIS_URL", "FLOWER_BASIC_AUTH"}),
}


def test_deployments_get_every_secret_key_they_reference_and_no_more() -> None:
    secret_keys = set(documents("secret.yaml")[0]["stringData"])
    for name in ("worker.yaml", "log-worker.yaml", "beat.yaml", "events.yaml", "api.yaml",
                 "flower.yaml"):
        deployment = documents(name)[0]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        referenced = {e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", [])
                      if "valueFrom" in e}
        assert referenced <= secret_keys, name
        assert ("FLOWER_BASIC_AUTH" in referenced) == (name == "flower.yaml"), name


def test_each_deployment_holds_exactly_the_credentials_its_role_reads() -> None:
    # The role's requirements come from the code (ROLE_REQUIRES, enforced by load_settings at
    # start: tests/unit/worker/test_settings.py); a Deployment gets those and nothing more.
    secret_keys = set(documents("secret.yaml")[0]["stringData"])
    config = set(documents("configmap.yaml")[0]["data"])
    for name, (role, command, extra) in ROLES.items():
        container = documents(name)[0]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][:len(command)] == command, name
        referenced = {e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", [])
                      if "valueFrom" in e}
        needed = set(ROLE_REQUIRES[role])
        assert referenced == (needed & secret_keys) | extra, name
        assert needed - secret_keys <= config, name  # the rest comes from the ConfigMap
    api = documents("api.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in api["env"]} == {"REDIS_URL", "NATS_URL"}


def queues_of(name: str) -> list[str]:
    container = documents(name)[0]["spec"]["template"]["spec"]["containers"][0]
    return str(container["command"][container["command"].index("-Q") + 1]).split(",")


def test_the_workers_consume_every_queue_the_app_routes_to_and_only_one_the_logs() -> None:
    # A log flood must not take the reconcile down: the `logs` queue has a worker of its own.
    assert sorted(queues_of("worker.yaml")) == sorted([QUEUE_RECONCILE, QUEUE_BOTS])
    assert queues_of("log-worker.yaml") == [QUEUE_LOGS]


def test_only_the_workers_hold_a_kubernetes_token_and_beat_never_runs_twice() -> None:
    identities = {"worker.yaml": "the0-controller", "log-worker.yaml": "the0-log-collector"}
    for name in ("worker.yaml", "log-worker.yaml", "beat.yaml", "events.yaml", "api.yaml",
                 "flower.yaml"):
        spec = documents(name)[0]["spec"]
        pod = spec["template"]["spec"]
        assert pod["automountServiceAccountToken"] is (name in identities), name
        assert pod["serviceAccountName"] == identities.get(name, "the0-k8s"), name
    beat = documents("beat.yaml")[0]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}


def test_one_events_consumer_keeps_each_bots_events_in_order() -> None:
    """Queue-group members get a bot's events in no particular order between them: one
    consumer, replaced (not rolled) so two never overlap."""
    events = documents("events.yaml")
    assert [d["kind"] for d in events] == ["Deployment"]  # no PDB that would block drains
    spec = events[0]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}


def test_the_limit_range_max_is_the_controllers_ceiling() -> None:
    (limit_range, quota) = documents("limits.yaml")
    (container,) = [item for item in limit_range["spec"]["limits"] if item["type"] == "Container"]
    fields = Settings.model_fields
    assert parse_quantity(str(container["max"]["memory"])) == parse_quantity(
        str(fields["MAX_MEMORY_LIMIT"].default))
    assert parse_quantity(str(container["max"]["cpu"])) == parse_quantity(
        str(fields["MAX_CPU_LIMIT"].default))
    assert quota["kind"] == "ResourceQuota" and int(quota["spec"]["hard"]["pods"]) >= 10_000
    # Every container we ship fits under the LimitRange's max.
    for name in ("worker.yaml", "log-worker.yaml", "beat.yaml", "events.yaml", "api.yaml",
                 "flower.yaml"):
        for c in documents(name)[0]["spec"]["template"]["spec"]["containers"]:
            limits = c["resources"]["limits"]
            assert parse_quantity(str(limits["memory"])) <= parse_quantity("4Gi"), name
            assert parse_quantity(str(limits["cpu"])) <= parse_quantity("2"), name


def test_only_the_controllers_pods_reach_redis_and_the_operator_chooses_who_reaches_the_rest(
        ) -> None:
    from worker.core.bot import DEFAULT_IMAGES, BotKind, parse_bot
    from worker.core.podspec import PodTemplateSettings, build_pod

    policies = {d["metadata"]["name"]: d["spec"] for d in documents("networkpolicy.yaml")}
    redis_from = policies["the0-redis"]["ingress"][0]["from"]
    (allowed,) = [rule["podSelector"]["matchLabels"] for rule in redis_from]

    def admitted(labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in allowed.items())

    for name in ("worker.yaml", "log-worker.yaml", "beat.yaml", "events.yaml", "api.yaml",
                 "flower.yaml"):
        labels = documents(name)[0]["spec"]["template"]["metadata"]["labels"]
        assert admitted(labels), name
    bot = parse_bot({"id": "b1", "config": {}, "custom": {
        "filePath": "b/1.zip", "config": {"runtime": "python3.11"}}}, kind=BotKind.LIVE)
    pod = build_pod(bot, PodTemplateSettings(namespace="the0", image_map=DEFAULT_IMAGES,
                                             init_image="the0/the0-k8s:latest"))
    assert not admitted(pod["metadata"]["labels"])  # a bot never reaches Redis
    for name, label in (("the0-api", "the0.dev/api-access"),
                        ("the0-flower", "the0.dev/flower-access")):
        sources = policies[name]["ingress"][0]["from"]
        assert all(list((rule.get("podSelector") or rule.get("namespaceSelector"))
                        ["matchLabels"]) == [label] for rule in sources), name
