"""Pod and config Secret generation: shape, security, secrecy, and the config hash."""

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.core.bot import DEFAULT_IMAGES, Bot, BotId, BotKind, parse_bot
from worker.core.errors import InvalidBot
from worker.core.naming import label_value, pod_name, secret_name
from worker.core.podspec import (
    GENERATOR_VERSION,
    PodTemplateSettings,
    SignedUrls,
    build_config_secret,
    build_pod,
    config_hash,
    final_sync_seconds,
    image_reference,
    state_object_key,
)

SECRETS = ["sk-live-SECRET-0123456789", "PASSPHRASE-correct-horse", "wallet-seed-abandon-abandon"]

SETTINGS = PodTemplateSettings(
    namespace="the0",
    image_map=DEFAULT_IMAGES,
    image_tag="latest",
    init_image="the0/the0-k8s:latest",
    pull_policy="IfNotPresent",
)
URLS = SignedUrls(code="https://s3/code?sig=1", state_get="https://s3/state?sig=2",
                  state_put="https://s3/state?sig=3", signed_at=1700000000.4)


def make_bot(bot_id: str = "clx0abc123def456ghi789jk", **config: Any) -> Bot:
    doc = {
        "id": bot_id,
        "config": {
            "name": "grid bot",
            "api_key": SECRETS[0],
            "exchange": {"passphrase": SECRETS[1], "seed": [SECRETS[2]]},
            **config,
        },
        "custom": {
            "version": "1.0.0",
            "filePath": "bots/abc/1.0.0.zip",
            "config": {"runtime": "python3.11"},
        },
    }
    return parse_bot(doc, kind=BotKind.LIVE)


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in containers(pod) if c["name"] == name)


def env(container_spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_spec["env"]}


def strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


# --- the pod -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bot_id", ["clx0abc123def456ghi789jk", "My_Bot.v2 (test)", "x" * 200])
def test_pod_metadata(bot_id: str) -> None:
    bot = make_bot(bot_id)
    pod = build_pod(bot, SETTINGS)
    name = pod_name(bot_id)
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert pod["metadata"]["name"] == name
    assert pod["metadata"]["namespace"] == "the0"
    assert pod["metadata"]["labels"] == {
        "app": "the0-bot",
        "bot-id": label_value(bot_id),
        "managed-by": "the0-bot-controller",
        "app.kubernetes.io/name": "the0-bot",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "the0-bot-controller",
        "app.kubernetes.io/component": "live-bot",
    }
    assert pod["metadata"]["annotations"] == {
        "the0.dev/bot-id": bot_id,
        "the0.dev/config-hash": config_hash(bot, SETTINGS),
    }


def test_pod_spec_basics() -> None:
    spec = build_pod(make_bot(), SETTINGS)["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["volumes"] == [
        {"name": "code", "emptyDir": {"sizeLimit": "512Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "state", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "sync-tmp", "emptyDir": {"sizeLimit": "128Mi"}},
        {"name": "urls", "secret": {
            "secretName": secret_name(pod_name(make_bot().id)), "defaultMode": 0o440,
            "items": [{"key": "CODE_URL", "path": "code-url"},
                      {"key": "STATE_GET_URL", "path": "state-get-url"},
                      {"key": "STATE_PUT_URL", "path": "state-put-url"}]}},
    ]
    assert [c["name"] for c in spec["initContainers"]] == ["init", "state-sync"]
    assert [c["name"] for c in spec["containers"]] == ["bot"]
    assert "nodeSelector" not in spec and "tolerations" not in spec


def test_placement_comes_from_settings() -> None:
    toleration = {"key": "the0.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    settings = dataclasses.replace(SETTINGS, tolerations=(toleration,),
                                   node_selector={"type": "real"})
    spec = build_pod(make_bot(), settings)["spec"]
    assert spec["tolerations"] == [toleration]
    assert spec["nodeSelector"] == {"type": "real"}
    assert config_hash(make_bot(), settings) != config_hash(make_bot(), SETTINGS)


def test_restart_policy_is_a_parameter() -> None:
    assert (
        build_pod(make_bot(), SETTINGS, restart_policy="Never")["spec"]["restartPolicy"] == "Never"
    )


def test_pod_security_context_is_restricted() -> None:
    assert build_pod(make_bot(), SETTINGS)["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_every_container_passes_pod_security_restricted() -> None:
    pod = build_pod(make_bot(), SETTINGS)
    assert len(containers(pod)) == 3
    for spec in containers(pod):
        security = spec["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["readOnlyRootFilesystem"] is True
        assert security.get("privileged") is not True
        assert "add" not in security["capabilities"]
        assert spec["imagePullPolicy"] == "IfNotPresent"
        assert spec["resources"]["limits"] and spec["resources"]["requests"]
    assert not any("hostPath" in volume for volume in pod["spec"]["volumes"])


def test_bot_container() -> None:
    bot = make_bot()
    pod = build_pod(bot, SETTINGS)
    spec = container(pod, "bot")
    assert spec["image"] == "python:3.11-slim-bookworm"
    assert spec["command"] == ["sh", "/bot/entrypoint.sh"]
    assert spec["workingDir"] == "/bot"
    assert spec["terminationMessagePath"] == "/bot/result.json"
    assert env(spec) == {
        "BOT_ID": bot.id,
        "BOT_CONFIG": {
            "secretKeyRef": {"name": secret_name(pod_name(bot.id)), "key": "BOT_CONFIG"}
        },
        "CODE_MOUNT_DIR": "/bot",
        "STATE_DIR": "/state/.the0-state",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONUNBUFFERED": "1",
    }
    assert spec["volumeMounts"] == [
        {"name": "code", "mountPath": "/bot"},
        {"name": "state", "mountPath": "/state"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert spec["resources"] == {
        "limits": {"memory": "512Mi", "cpu": "500m"},
        "requests": {"memory": "128Mi", "cpu": "100m"},
    }


def test_bot_container_resources_follow_the_bot() -> None:
    bot = make_bot(memory_limit="2Gi", cpu_limit="2", memory_request="1Gi", cpu_request="1")
    assert container(build_pod(bot, SETTINGS), "bot")["resources"] == {
        "limits": {"memory": "2Gi", "cpu": "2"},
        "requests": {"memory": "1Gi", "cpu": "1"},
    }


def test_init_container() -> None:
    bot = make_bot()
    spec = container(build_pod(bot, SETTINGS), "init")
    assert spec["image"] == "the0/the0-k8s:latest"
    assert spec["command"] == ["python3", "-m", "botpod", "init"]
    variables = env(spec)
    assert variables["BOT_ID"] == bot.id
    assert variables["RUNTIME"] == "python3.11"
    assert variables["ENTRYPOINT"] == "main.py"
    assert variables["CODE_DIR"] == "/bot"
    assert variables["STATE_DIR"] == "/state/.the0-state"
    assert variables["URLS_DIR"] == "/etc/the0/urls"
    assert variables["DOWNLOAD_DIR"] == "/bot-tmp"
    assert variables["STATE_MAX_BYTES"] == str(64 * 2**20)
    assert {m["mountPath"]: m.get("readOnly", False) for m in spec["volumeMounts"]} == {
        "/bot": False, "/state": False, "/bot-tmp": False, "/etc/the0/urls": True}
    assert "restartPolicy" not in spec


def test_state_sync_is_a_native_sidecar() -> None:
    pod = build_pod(make_bot(), SETTINGS)
    spec = container(pod, "state-sync")
    assert spec["restartPolicy"] == "Always"
    # The bot waits for the sidecar to own SIGTERM: a short run still gets its final sync.
    assert spec["startupProbe"]["exec"]["command"] == ["test", "-e", "/sync-tmp/ready"]
    assert spec["image"] == "the0/the0-k8s:latest"
    assert spec["command"] == ["python3", "-m", "botpod", "sync"]
    assert env(spec)["STATE_SYNC_INTERVAL"] == "60"
    assert env(spec)["STATE_DIR"] == "/state/.the0-state"
    # The last upload ends inside the pod's grace (30 s), with room for the bot's own exit.
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert env(spec)["STATE_FINAL_SYNC_SECONDS"] == "25"
    assert {m["mountPath"]: m.get("readOnly", False) for m in spec["volumeMounts"]} == {
        "/state": True, "/sync-tmp": False, "/etc/the0/urls": True}


def test_only_init_and_sidecar_mount_the_urls() -> None:
    pod = build_pod(make_bot(), SETTINGS)
    mounting = {c["name"] for c in containers(pod)
                if any(m["name"] == "urls" for m in c["volumeMounts"])}
    assert mounting == {"init", "state-sync"}


def test_only_the_bot_container_sees_the_config() -> None:
    pod = build_pod(make_bot(), SETTINGS)
    assert "BOT_CONFIG" not in env(container(pod, "init"))
    assert "BOT_CONFIG" not in env(container(pod, "state-sync"))


@pytest.mark.parametrize(("bot_id", "key"), [
    ("clx0abc123def456ghi789jk", "clx0abc123def456ghi789jk/state.tar.gz"),
    ("My_Bot.v2 (test)", "My_Bot.v2 (test)/state.tar.gz"),
    ("team/bot", "team/bot/state.tar.gz"),
])
def test_state_object_key(bot_id: str, key: str) -> None:
    assert state_object_key(bot_id) == key


@pytest.mark.parametrize("bot_id", ["a/.", "a//b", "../b", "a/..", "/abs", "a\\b", "."])
def test_an_id_that_could_share_a_state_object_is_an_invalid_bot(bot_id: str) -> None:
    with pytest.raises(InvalidBot) as caught:
        build_pod(make_bot(bot_id), SETTINGS)
    assert caught.value.reason == "unsafe_id"
    assert caught.value.detail == "the id cannot name a state object safely"


@pytest.mark.parametrize("runtime", sorted(DEFAULT_IMAGES))
def test_image_per_runtime(runtime: str) -> None:
    bot = dataclasses.replace(make_bot(), runtime=runtime)
    # Every default names its tag: the plain language images are versioned per runtime.
    assert container(build_pod(bot, SETTINGS), "bot")["image"] == DEFAULT_IMAGES[runtime]


def test_image_map_and_tag_come_from_settings() -> None:
    settings = dataclasses.replace(
        SETTINGS, image_map={"python3.11": "registry.local:5000/py"}, image_tag="v9"
    )
    assert container(build_pod(make_bot(), settings), "bot")["image"] == "registry.local:5000/py:v9"


def test_a_runtime_without_an_image_is_an_invalid_bot() -> None:
    settings = dataclasses.replace(SETTINGS, image_map={"nodejs20": "the0/nodejs20"})
    with pytest.raises(InvalidBot) as caught:
        build_pod(make_bot(), settings)
    assert caught.value.reason == "no_image_for_runtime"
    assert caught.value.detail == "no image is configured for its runtime"


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("the0/python311", "the0/python311:v1"),
        ("registry:5000/the0/python311", "registry:5000/the0/python311:v1"),
        ("the0/python311:3.11", "the0/python311:3.11"),
        ("the0/python311@sha256:abc", "the0/python311@sha256:abc"),
    ],
)
def test_image_reference(repository: str, expected: str) -> None:
    assert image_reference(repository, "v1") == expected


@pytest.mark.parametrize(("grace_s", "budget"), [(0, 1), (5, 1), (6, 1), (7, 2), (30, 25)])
def test_the_final_sync_budget_is_the_grace_less_five_seconds_and_never_below_one(
        grace_s: int, budget: int) -> None:
    assert final_sync_seconds(grace_s) == budget


def test_a_tiny_state_limit_still_gives_its_volumes_one_mebibyte() -> None:
    settings = dataclasses.replace(SETTINGS, state_max_bytes=100)
    volumes = {v["name"]: v for v in build_pod(make_bot(), settings)["spec"]["volumes"]}
    assert volumes["state"]["emptyDir"] == {"sizeLimit": "1Mi"}
    assert volumes["sync-tmp"]["emptyDir"] == {"sizeLimit": "1Mi"}


# --- secrecy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bot_id", ["clx0abc123def456ghi789jk", "Odd Id_1", "y" * 120])
def test_no_config_value_appears_anywhere_in_the_pod(bot_id: str) -> None:
    pod = build_pod(make_bot(bot_id), SETTINGS)
    text = json.dumps(pod)
    for secret in SECRETS:
        assert secret not in text
        assert not any(secret in s for s in strings_in(pod))


def test_no_config_key_value_pair_leaks_either() -> None:
    # Even innocent-looking user parameters stay out: the whole config is secret.
    pod = build_pod(make_bot(symbol="UNIQUE-SYMBOL-XYZ", leverage="17x-UNIQUE"), SETTINGS)
    assert "UNIQUE" not in json.dumps(pod)


# --- the config hash -------------------------------------------------------------------------


def test_the_hash_is_sixteen_hex_characters_and_stable() -> None:
    bot = make_bot()
    digest = config_hash(bot, SETTINGS)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert config_hash(make_bot(), SETTINGS) == digest
    assert build_pod(bot, SETTINGS) == build_pod(make_bot(), SETTINGS)


def test_the_hash_ignores_config_key_order() -> None:
    forward = make_bot(a=1, b=2)
    backward = dataclasses.replace(forward, config=dict(reversed(list(forward.config.items()))))
    assert config_hash(forward, SETTINGS) == config_hash(backward, SETTINGS)


BOT_CHANGES: dict[str, Callable[[Bot], Bot]] = {
    "config value": lambda b: dataclasses.replace(b, config={**b.config, "api_key": "other"}),
    "nested config value": lambda b: dataclasses.replace(
        b, config={**b.config, "exchange": {"passphrase": "x"}}
    ),
    "config key added": lambda b: dataclasses.replace(b, config={**b.config, "new": None}),
    "code version": lambda b: dataclasses.replace(b, code_version="1.0.1"),
    "code path": lambda b: dataclasses.replace(b, code_path="bots/abc/1.0.1.zip"),
    "runtime": lambda b: dataclasses.replace(b, runtime="nodejs20"),
    "entrypoint": lambda b: dataclasses.replace(b, entrypoint="bot.py"),
    "memory limit": lambda b: dataclasses.replace(
        b, resources=dataclasses.replace(b.resources, memory_limit="1Gi")
    ),
    "cpu limit": lambda b: dataclasses.replace(
        b, resources=dataclasses.replace(b.resources, cpu_limit="1")
    ),
    "memory request": lambda b: dataclasses.replace(
        b, resources=dataclasses.replace(b.resources, memory_request="64Mi")
    ),
    "cpu request": lambda b: dataclasses.replace(
        b, resources=dataclasses.replace(b.resources, cpu_request="200m")
    ),
    "id": lambda b: dataclasses.replace(b, id=BotId("another")),
}


@pytest.mark.parametrize("change", BOT_CHANGES.values(), ids=BOT_CHANGES.keys())
def test_the_hash_changes_with_every_bot_input(change: Callable[[Bot], Bot]) -> None:
    bot = make_bot()
    assert config_hash(change(bot), SETTINGS) != config_hash(bot, SETTINGS)


SETTINGS_CHANGES: dict[str, dict[str, Any]] = {
    "image map": {"image_map": {**DEFAULT_IMAGES, "python3.11": "the0/python311-next"}},
    "init image": {"init_image": "the0/the0-k8s:0.2.0"},
    "pull policy": {"pull_policy": "Always"},
    "state sync interval": {"state_sync_interval_s": 30},
    "state cap": {"state_max_bytes": 2**20},
    "grace period": {"termination_grace_s": 60},
    "node selector": {"node_selector": {"pool": "bots"}},
    "namespace": {"namespace": "the0-staging"},
}


@pytest.mark.parametrize("change", SETTINGS_CHANGES.values(), ids=SETTINGS_CHANGES.keys())
def test_the_hash_changes_with_every_setting(change: dict[str, Any]) -> None:
    bot = make_bot()
    assert config_hash(bot, dataclasses.replace(SETTINGS, **change)) != config_hash(bot, SETTINGS)


def test_the_hash_changes_with_the_restart_policy() -> None:
    bot = make_bot()
    assert config_hash(bot, SETTINGS, restart_policy="Never") != config_hash(bot, SETTINGS)


def test_an_image_map_change_for_another_runtime_does_not_change_the_hash() -> None:
    bot = make_bot()
    settings = dataclasses.replace(SETTINGS, image_map={**DEFAULT_IMAGES, "ghc96": "other/ghc"})
    assert config_hash(bot, settings) == config_hash(bot, SETTINGS)


def test_renaming_a_bot_changes_the_hash() -> None:
    # `name` lives in config, which is hashed as a whole: renaming replaces the pod.
    bot = make_bot()
    renamed = dataclasses.replace(bot, config={**bot.config, "name": "renamed"}, name="renamed")
    assert config_hash(renamed, SETTINGS) != config_hash(bot, SETTINGS)


def test_the_hash_is_the_same_in_another_process() -> None:
    # Guards against Python's salted hash() creeping in: PYTHONHASHSEED differs per process.
    program = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.unit.core.test_podspec import make_bot, SETTINGS;"
        "from worker.core.podspec import config_hash;"
        "print(config_hash(make_bot(), SETTINGS))"
    )
    root = str(Path(__file__).resolve().parents[3])
    digests = {
        subprocess.run(
            [sys.executable, "-c", program, root],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert digests == {config_hash(make_bot(), SETTINGS)}


def test_generator_version_is_declared() -> None:
    assert GENERATOR_VERSION == "2"


# --- the config secret -----------------------------------------------------------------------


def test_config_secret() -> None:
    bot = make_bot()
    name = pod_name(bot.id)
    secret = build_config_secret(bot, pod_name=name, pod_uid="uid-123", namespace="the0",
                                 urls=URLS)
    assert (secret["apiVersion"], secret["kind"], secret["type"]) == ("v1", "Secret", "Opaque")
    assert "immutable" not in secret  # re-signed in place while the pod runs
    assert secret["metadata"]["name"] == secret_name(name)
    assert secret["metadata"]["namespace"] == "the0"
    assert secret["metadata"]["labels"] == build_pod(bot, SETTINGS)["metadata"]["labels"]
    assert secret["metadata"]["annotations"] == {"the0.dev/bot-id": bot.id,
                                                 "the0.dev/urls-signed-at": "1700000000"}
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": "uid-123",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert secret["stringData"] == {
        "BOT_CONFIG": json.dumps(bot.config, sort_keys=True, separators=(",", ":")),
        "CODE_URL": "https://s3/code?sig=1",
        "STATE_GET_URL": "https://s3/state?sig=2",
        "STATE_PUT_URL": "https://s3/state?sig=3",
    }
    assert json.loads(secret["stringData"]["BOT_CONFIG"]) == bot.config


def test_the_secret_is_what_the_pod_references() -> None:
    bot = make_bot("Odd Id_1")
    pod = build_pod(bot, SETTINGS)
    secret = build_config_secret(
        bot, pod_name=pod["metadata"]["name"], pod_uid="u", namespace="the0", urls=URLS
    )
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for c in containers(pod)
        for e in c["env"]
        if "valueFrom" in e
    ]
    items = [item for v in pod["spec"]["volumes"] if "secret" in v
             for item in v["secret"]["items"]]
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
    assert {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v} == {
        secret["metadata"]["name"]}
    assert {r["key"] for r in refs} | {i["key"] for i in items} == set(secret["stringData"])


def test_urls_are_hidden_from_repr() -> None:
    assert "sig=" not in repr(URLS)


def test_the_urls_do_not_change_the_hash() -> None:
    # URLs are presigned per build; they live only in the Secret, never in the hashed pod.
    bot = make_bot()
    before = config_hash(bot, SETTINGS)
    build_config_secret(bot, pod_name="p", pod_uid="u", namespace="the0", urls=URLS)
    assert config_hash(bot, SETTINGS) == before


def test_the_config_hash_is_keyed() -> None:
    # Anyone who can read pods reads the annotation; the config is secret. Without the key, a
    # guess of the config (a PIN, an API key) cannot be confirmed against it.
    bot = make_bot()
    keyed = dataclasses.replace(SETTINGS, hash_key=b"controller-key-1")
    other = dataclasses.replace(SETTINGS, hash_key=b"controller-key-2")
    assert config_hash(bot, keyed) != config_hash(bot, other)
    assert config_hash(bot, keyed) == config_hash(bot, keyed)
    assert build_pod(bot, keyed)["metadata"]["annotations"]["the0.dev/config-hash"] == (
        config_hash(bot, keyed))
    assert "controller-key" not in repr(keyed)
