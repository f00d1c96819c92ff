"""Live bot → the Pod and its per-pod config Secret, as plain Kubernetes API JSON (camelCase dicts).

Pure: no I/O, no clock, no client models. The shell creates the Pod, then the Secret with an
ownerReference to the new pod's uid, so the Secret dies with its pod and is never orphaned.

Secrets never enter the pod spec: `BOT_CONFIG` and the presigned `CODE_URL` are read from the
Secret through `secretKeyRef`, and only the init container gets `CODE_URL`. No storage credential
exists in the cluster at all: the URL is short-lived and grants a read of one object.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.core import naming
from worker.core.bot import Bot
from worker.core.canonical import canonical_json, sha256_hex
from worker.core.errors import InvalidBot

GENERATOR_VERSION = "1"
"""Bump when the meaning of generated objects changes in a way the pod JSON does not show."""

SECRET_KEY_CONFIG = "BOT_CONFIG"
SECRET_KEY_CODE_URL = "CODE_URL"
CODE_DIR = "/bot"
DOWNLOAD_DIR = "/bot-tmp"
TMP_DIR = "/tmp"  # a private emptyDir volume, not the node's /tmp
RUN_AS_ID = 1000
CODE_VOLUME_LIMIT = "512Mi"
TMP_VOLUME_LIMIT = "1Gi"
MAX_ARCHIVE_BYTES = 256 * 2**20
MAX_UNPACKED_BYTES = 480 * 2**20  # below CODE_VOLUME_LIMIT: exceeding a sizeLimit evicts the pod
MAX_ARCHIVE_ENTRIES = 100_000
HASH_LENGTH = 16

FETCH_CODE_SCRIPT = r"""
import os, shutil, stat, sys, tempfile, urllib.error, urllib.request, zipfile

CHUNK = 65536


def fail(why):
    # Never print the URL: it is a credential for as long as it is valid.
    sys.stderr.write("fetch-code: " + why + "\n")
    sys.exit(1)


def download(url, out, limit):
    size = 0
    with urllib.request.urlopen(url, timeout=60) as response:
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                fail("archive is larger than %d bytes" % limit)
            out.write(chunk)


def unpack(archive, target_dir, max_bytes, max_entries):
    root = os.path.realpath(target_dir)
    total = 0
    with zipfile.ZipFile(archive) as zf:
        entries = zf.infolist()
        if len(entries) > max_entries:
            fail("archive has more than %d entries" % max_entries)
        for info in entries:
            name = info.filename
            mode = info.external_attr >> 16
            if name.startswith("/") or "\\" in name or "\0" in name or ".." in name.split("/"):
                fail("archive entry with an unsafe path")
            if stat.S_ISLNK(mode):
                fail("archive entry is a symlink")
            target = os.path.realpath(os.path.join(root, name))
            if target != root and not target.startswith(root + os.sep):
                fail("archive entry escapes the code directory")
            total += info.file_size  # zipfile stops reading an entry at its declared size
            if total > max_bytes:
                fail("archive unpacks to more than %d bytes" % max_bytes)
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)


def main():
    env = os.environ
    fd, archive = tempfile.mkstemp(dir=env["DOWNLOAD_DIR"], suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as out:
            download(env["CODE_URL"], out, int(env["MAX_ARCHIVE_BYTES"]))
        unpack(archive, env["CODE_DIR"], int(env["MAX_UNPACKED_BYTES"]),
               int(env["MAX_ARCHIVE_ENTRIES"]))
    except urllib.error.HTTPError as error:
        fail("download failed: HTTP %d" % error.code)
    except zipfile.BadZipFile:
        fail("code is not a valid zip archive")
    except (OSError, ValueError) as error:
        fail("download or unpack failed: " + type(error).__name__)
    finally:
        os.remove(archive)  # the bot sees this volume as /tmp


main()
"""
"""Run by the init container as `python3 -c`: download CODE_URL, unpack the zip into CODE_DIR."""


@dataclass(frozen=True, kw_only=True)
class PodTemplateSettings:
    """Deployment-wide inputs of the pod generator (from settings, never from a bot)."""

    namespace: str
    image_map: Mapping[str, str]  # runtime → image repository
    image_tag: str = "latest"
    init_image: str  # any image with python3
    pull_policy: str = "IfNotPresent"


def build_pod(
    bot: Bot, settings: PodTemplateSettings, *, restart_policy: str = "Always"
) -> dict[str, Any]:
    """The bot's Pod, annotated with the hash of every input it was built from."""
    pod = _pod_without_hash(bot, settings, restart_policy)
    pod["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH] = _hash_of(bot, pod)
    return pod


def config_hash(bot: Bot, settings: PodTemplateSettings, *, restart_policy: str = "Always") -> str:
    """16 hex chars covering the generator version, the pod, the secret config and the code.

    Equal hashes mean the running pod is what we would build now; the presigned URL is excluded
    because it changes on every build without changing what runs.
    """
    return _hash_of(bot, _pod_without_hash(bot, settings, restart_policy))


def build_config_secret(
    bot: Bot, *, pod_name: str, pod_uid: str, namespace: str, code_url: str
) -> dict[str, Any]:
    """The Secret for one pod: its BOT_CONFIG and CODE_URL, owned by (and deleted with) the pod."""
    metadata = _metadata(bot, pod_name, namespace)
    metadata["name"] = naming.secret_name(pod_name)
    metadata["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod_name,
            "uid": pod_uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        # One secret per pod, never updated: immutable spares kubelet a watch per secret.
        "immutable": True,
        "stringData": {
            SECRET_KEY_CONFIG: canonical_json(bot.config),
            SECRET_KEY_CODE_URL: code_url,
        },
    }


def image_reference(repository: str, tag: str) -> str:
    """`repository:tag`, unless the repository already pins a tag or digest."""
    last_segment = repository.rsplit("/", 1)[-1]
    if "@" in repository or ":" in last_segment:
        return repository
    return f"{repository}:{tag}"


def _hash_of(bot: Bot, pod_without_hash: Mapping[str, Any]) -> str:
    # The code path and version are not in the pod (the URL is in the Secret), so add them here.
    inputs = {
        "generator": GENERATOR_VERSION,
        "pod": pod_without_hash,
        "config": bot.config,
        "code": {"path": bot.code_path, "version": bot.code_version},
    }
    return sha256_hex(canonical_json(inputs))[:HASH_LENGTH]


def _pod_without_hash(
    bot: Bot, settings: PodTemplateSettings, restart_policy: str
) -> dict[str, Any]:
    name = naming.pod_name(bot.id)
    repository = settings.image_map.get(bot.runtime)
    if repository is None:
        # A deployment gap, but it only stops the bots of this runtime.
        raise InvalidBot(bot.id, "no_image_for_runtime", "no image is configured for its runtime")
    secret = naming.secret_name(name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(bot, name, settings.namespace),
        "spec": {
            "restartPolicy": restart_policy,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_ID,
                "runAsGroup": RUN_AS_ID,
                "fsGroup": RUN_AS_ID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [
                {"name": "code", "emptyDir": {"sizeLimit": CODE_VOLUME_LIMIT}},
                {"name": "tmp", "emptyDir": {"sizeLimit": TMP_VOLUME_LIMIT}},
            ],
            "initContainers": [_fetch_code_container(settings, secret)],
            "containers": [_bot_container(bot, settings, repository, secret)],
        },
    }


def _metadata(bot: Bot, name: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            naming.LABEL_APP: naming.APP_BOT,
            naming.LABEL_BOT_ID: naming.label_value(bot.id),
            naming.LABEL_MANAGED_BY: naming.MANAGED_BY_BOT,
            "app.kubernetes.io/name": naming.APP_BOT,
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/managed-by": naming.MANAGED_BY_BOT,
            "app.kubernetes.io/component": "live-bot",
        },
        "annotations": {naming.ANNOTATION_BOT_ID: bot.id},
    }


def _fetch_code_container(settings: PodTemplateSettings, secret: str) -> dict[str, Any]:
    return {
        "name": "fetch-code",
        "image": settings.init_image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["python3", "-c", FETCH_CODE_SCRIPT],
        "env": [
            _from_secret("CODE_URL", secret, SECRET_KEY_CODE_URL),
            {"name": "CODE_DIR", "value": CODE_DIR},
            {"name": "DOWNLOAD_DIR", "value": DOWNLOAD_DIR},
            {"name": "MAX_ARCHIVE_BYTES", "value": str(MAX_ARCHIVE_BYTES)},
            {"name": "MAX_UNPACKED_BYTES", "value": str(MAX_UNPACKED_BYTES)},
            {"name": "MAX_ARCHIVE_ENTRIES", "value": str(MAX_ARCHIVE_ENTRIES)},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},  # the root filesystem is read-only
        ],
        "volumeMounts": [
            {"name": "code", "mountPath": CODE_DIR},
            {"name": "tmp", "mountPath": DOWNLOAD_DIR},
        ],
        "resources": {
            "limits": {"memory": "128Mi", "cpu": "500m"},
            "requests": {"memory": "64Mi", "cpu": "50m"},
        },
        "securityContext": _container_security(),
    }


def _bot_container(
    bot: Bot, settings: PodTemplateSettings, repository: str, secret: str
) -> dict[str, Any]:
    return {
        "name": "bot",
        "image": image_reference(repository, settings.image_tag),
        "imagePullPolicy": settings.pull_policy,
        "command": ["/entrypoint.sh"],
        "env": [
            {"name": "BOT_ID", "value": bot.id},  # the id is not secret
            _from_secret("BOT_CONFIG", secret, SECRET_KEY_CONFIG),
            {"name": "CODE_MOUNT_DIR", "value": CODE_DIR},
            {"name": "ENTRYPOINT", "value": bot.entrypoint},
            # The root filesystem is read-only: point caches and temp files at the tmp volume.
            {"name": "HOME", "value": TMP_DIR},
            {"name": "TMPDIR", "value": TMP_DIR},
        ],
        "volumeMounts": [
            {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
        "resources": {
            "limits": {"memory": bot.resources.memory_limit, "cpu": bot.resources.cpu_limit},
            "requests": {"memory": bot.resources.memory_request, "cpu": bot.resources.cpu_request},
        },
        "securityContext": _container_security(),
    }


def _container_security() -> dict[str, Any]:
    # What PodSecurity "restricted" demands of every container.
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _from_secret(env_name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": env_name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
