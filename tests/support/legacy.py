"""Objects exactly as the0's ORIGINAL Go runtime makes them (the cut-over's starting point).

A line-by-line port of the0's runtime/internal/k8s at commit f4d583c:
`podgen/pod_generator.go` (GeneratePod, GenerateScheduledPodSpec, computeConfigHash,
extractCustomBotID, getEntrypoint, getShellForImage, the resource defaults) and
`controller/botschedule_controller.go` (createCronJobSpec, generateCronJobName,
convertToK8sCronFormat, computeScheduleHash). Pure: plain dicts in the API's JSON shape, ready
for `create_namespaced_pod` / `create_namespaced_cron_job`. Used by unit tests (recognition)
and by the cut-over test on the real stack.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

BOT_CONTROLLER = "the0-bot-controller"        # podgen default ControllerName
SCHEDULE_CONTROLLER = "the0-schedule-controller"
RUNTIME_IMAGE = "runtime:latest"              # podgen default RuntimeImage
# runtime/internal/runtime/images.go
RUNTIME_IMAGES = {
    "python3.11": "the0/python311:latest", "nodejs20": "the0/nodejs20:latest",
    "rust-stable": "the0/rust-stable:latest", "dotnet8": "the0/dotnet8:latest",
    "gcc13": "the0/gcc13:latest", "cpp-gcc13": "the0/gcc13:latest",
    "scala3": "the0/scala3:latest", "ghc96": "the0/ghc96:latest",
}


def go_json(value: Any) -> str:
    """Go's encoding/json.Marshal of a decoded JSON/BSON value: map keys sorted, no spaces,
    <, > and & escaped, whole floats without a fraction."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                              ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(char, escaped)
        return text
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(v)}"
                              for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError(type(value))


def config_hash(doc: dict[str, Any]) -> str:
    """computeConfigHash / computeScheduleHash: the first 16 hex of SHA-256 over the struct
    {Config, CustomBotVersion, Enabled} (struct fields in declaration order)."""
    enabled = doc.get("enabled")
    data = (f'{{"Config":{go_json(doc.get("config"))},'
            f'"CustomBotVersion":{go_json((doc.get("custom") or {}).get("version", ""))},'
            f'"Enabled":{go_json(enabled if isinstance(enabled, bool) else None)}}}')
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _sanitize_label_value(text: str) -> str:
    kept = "".join(c for c in text if c.isascii() and (c.isalnum() or c in "-_."))[:63]
    kept = kept.lstrip("-_.").rstrip("-_.")
    return kept or "bot"


def _custom_bot_id(doc: dict[str, Any]) -> str:
    name = ((doc.get("custom") or {}).get("config") or {}).get("name") or ""
    if name:
        return _sanitize_label_value(name)
    return doc["id"][:8]


def _entrypoint(custom_config: dict[str, Any]) -> str:
    entry = (custom_config.get("entrypoints") or {}).get("bot")
    if entry is not None:
        return str(entry)
    return {"python3.11": "main.py", "nodejs20": "index.js"}.get(custom_config.get("runtime"),
                                                                  "main")


def _resource(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get(key)
    return value if isinstance(value, str) and value else default


def _minio_env(minio: dict[str, str]) -> list[dict[str, str]]:
    # The original puts the storage credentials inline, in plain env (no Secret).
    return [{"name": "MINIO_ENDPOINT", "value": minio["endpoint"]},
            {"name": "MINIO_ACCESS_KEY", "value": minio["access_key"]},
            {"name": "MINIO_SECRET_KEY", "value": minio["secret_key"]},
            {"name": "MINIO_USE_SSL", "value": "false"}]


def legacy_pod(doc: dict[str, Any], *, namespace: str, minio: dict[str, str],
               controller: str = BOT_CONTROLLER) -> dict[str, Any]:
    """GeneratePod(bot): the live bot's pod `bot-<id>`."""
    bot_id = doc["id"]
    config = doc.get("config") or {}
    custom = doc.get("custom") or {}
    custom_config = custom.get("config") or {}
    runtime = custom_config.get("runtime", "")
    image = RUNTIME_IMAGES[runtime]
    shell = "/bin/sh" if "alpine" in image else "/bin/bash"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"bot-{bot_id}", "namespace": namespace,
            "labels": {"the0.dev/bot-id": bot_id,
                       "the0.dev/custom-bot-id": _custom_bot_id(doc),
                       "the0.dev/custom-bot-version": custom.get("version", ""),
                       "the0.dev/runtime": runtime,
                       "the0.dev/managed-by": controller},
            "annotations": {"the0.dev/config-hash": config_hash(doc)},
        },
        "spec": {
            "restartPolicy": "Always",
            "initContainers": [{
                "name": "init", "image": RUNTIME_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["/app/runtime", "daemon", "init"],
                "args": ["--bot-id", bot_id, "--code-path", "/bot", "--state-path", "/state",
                         "--code-file", custom.get("filePath", ""), "--runtime", runtime,
                         "--entrypoint", _entrypoint(custom_config)],
                "env": _minio_env(minio),
                "volumeMounts": [{"name": "bot-code", "mountPath": "/bot"},
                                 {"name": "bot-state", "mountPath": "/state"}],
            }],
            "containers": [
                {
                    "name": "bot", "image": image,
                    "command": [shell, "/bot/entrypoint.sh"], "workingDir": "/bot",
                    "env": [{"name": "BOT_ID", "value": bot_id},
                            {"name": "BOT_CONFIG", "value": go_json(config)},
                            {"name": "CODE_MOUNT_DIR", "value": "/bot"},
                            {"name": "STATE_DIR", "value": "/state/.the0-state"}],
                    "volumeMounts": [{"name": "bot-code", "mountPath": "/bot"},
                                     {"name": "bot-state", "mountPath": "/state"},
                                     {"name": "the0", "mountPath": "/var/the0"}],
                    "resources": {
                        "limits": {"memory": _resource(config, "memory_limit", "512Mi"),
                                   "cpu": _resource(config, "cpu_limit", "500m")},
                        "requests": {"memory": _resource(config, "memory_request", "128Mi"),
                                     "cpu": _resource(config, "cpu_request", "100m")},
                    },
                },
                {
                    "name": "sync", "image": RUNTIME_IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["/app/runtime", "daemon", "sync"],
                    "args": ["--bot-id", bot_id, "--state-path", "/state",
                             "--logs-path", "/var/the0/logs"],
                    "env": _minio_env(minio),
                    "volumeMounts": [{"name": "bot-state", "mountPath": "/state"},
                                     {"name": "the0", "mountPath": "/var/the0"}],
                    "resources": {"requests": {"memory": "32Mi", "cpu": "10m"},
                                  "limits": {"memory": "64Mi", "cpu": "100m"}},
                },
            ],
            "volumes": [{"name": "bot-code", "emptyDir": {}},
                        {"name": "bot-state", "emptyDir": {}},
                        {"name": "the0", "emptyDir": {}}],
        },
    }


def legacy_cronjob_name(schedule_id: str) -> str:
    """generateCronJobName."""
    return f"schedule-{schedule_id}"[:52].rstrip("-")


def legacy_cronjob(doc: dict[str, Any], *, namespace: str, minio: dict[str, str],
                   controller: str = SCHEDULE_CONTROLLER) -> dict[str, Any]:
    """createCronJobSpec(schedule): the scheduled bot's CronJob; its pods are GeneratePod's
    spec with restartPolicy Never and the sync sidecar watching the done marker."""
    schedule_id = doc["id"]
    custom = doc.get("custom") or {}
    custom_config = custom.get("config") or {}
    enabled = doc.get("enabled")
    as_bot = {**doc, "enabled": enabled if isinstance(enabled, bool) else True}  # scheduleToBot
    spec = legacy_pod(as_bot, namespace=namespace, minio=minio, controller=controller)["spec"]
    spec["restartPolicy"] = "Never"
    for container in spec["containers"]:
        if container["name"] == "sync":
            container["args"] = [*container["args"], "--watch-done", "/var/the0/done"]
    fields = str((doc.get("config") or {}).get("schedule", "")).split()
    cron = " ".join(fields[1:]) if len(fields) == 6 else doc["config"]["schedule"]
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {
            "name": legacy_cronjob_name(schedule_id), "namespace": namespace,
            "labels": {"the0.dev/schedule-id": schedule_id,
                       "the0.dev/custom-bot-id": custom_config.get("name", ""),
                       "the0.dev/runtime": custom_config.get("runtime", ""),
                       "the0.dev/managed-by": controller},
            "annotations": {"the0.dev/schedule-hash": config_hash(doc)},
        },
        "spec": {
            "schedule": cron,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": {"labels": {
                        "the0.dev/schedule-id": schedule_id,
                        "the0.dev/custom-bot-id": custom_config.get("name", ""),
                        "the0.dev/managed-by": controller,
                        "the0.dev/bot-id": schedule_id,
                    }},
                    "spec": spec,
                },
            }},
        },
    }


def job_from_cronjob(cronjob: dict[str, Any], *, uid: str, suffix: str = "manual"
                     ) -> dict[str, Any]:
    """A Job of that CronJob, as its controller makes one (`kubectl create job --from`): owned
    by the CronJob (controller, blocking its deletion), with the CronJob's pod template."""
    name = cronjob["metadata"]["name"]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{name}-{suffix}", "namespace": cronjob["metadata"]["namespace"],
                     "labels": dict(cronjob["spec"]["jobTemplate"]["spec"]["template"]
                                    ["metadata"]["labels"]),
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                                          "name": name, "uid": uid, "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": cronjob["spec"]["jobTemplate"]["spec"],
    }
