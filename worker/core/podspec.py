"""Live bot → the Pod and its per-pod Secret, as plain Kubernetes API JSON (camelCase dicts).

Pure: no I/O, no clock, no client models. The shell creates the Pod, then the Secret with an
ownerReference to the new pod's uid, so the Secret dies with its pod and is never orphaned.

The pod honours the0's bot contract (docs/bot-contract.md):
- `init` (the project's image, `python3 -m botpod init`): fetches and unpacks the code into
  /bot, restores the bot's state into /state/.the0-state, writes /bot/entrypoint.sh and the
  runtime's wrapper;
- `state-sync`, a native sidecar (an init container with restartPolicy Always, so it starts
  after `init`, runs beside the bot and is stopped after it): uploads the state when it changes
  and once more on SIGTERM;
- `bot`: a plain language image for the runtime running `sh /bot/entrypoint.sh`.

Secrets never enter the pod spec: `BOT_CONFIG` is read from the Secret through
`secretKeyRef`, and the presigned URLs (code, state read, state write) are files of the Secret
mounted only into `init` and `state-sync`. No storage credential exists in the cluster: each
URL grants one operation on one object for a limited time, and the controller re-signs them
while the pod runs (a mounted Secret is updated in place by the kubelet).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.core import naming
from worker.core.bot import Bot
from worker.core.canonical import canonical_json, keyed_hash_hex
from worker.core.errors import InvalidBot
from worker.core.gojson import go_json

GENERATOR_VERSION = "2"
"""Bump when the meaning of generated objects changes in a way the pod JSON does not show."""

SECRET_KEY_CONFIG = "BOT_CONFIG"
SECRET_KEY_CODE_URL = "CODE_URL"
SECRET_KEY_STATE_GET_URL = "STATE_GET_URL"
SECRET_KEY_STATE_PUT_URL = "STATE_PUT_URL"
ANNOTATION_URLS_SIGNED_AT = "the0.dev/urls-signed-at"
"""When the URLs in the Secret were signed (epoch s); not part of the config hash."""

CODE_DIR = "/bot"
RESULT_FILE = "/bot/result.json"
STATE_MOUNT = "/state"
STATE_DIR = "/state/.the0-state"
URLS_DIR = "/etc/the0/urls"
DOWNLOAD_DIR = "/bot-tmp"
SCRATCH_DIR = "/sync-tmp"
TMP_DIR = "/tmp"  # a private emptyDir volume, not the node's /tmp
URL_FILES = {SECRET_KEY_CODE_URL: "code-url", SECRET_KEY_STATE_GET_URL: "state-get-url",
             SECRET_KEY_STATE_PUT_URL: "state-put-url"}
RUN_AS_ID = 1000
CODE_VOLUME_LIMIT = "512Mi"
TMP_VOLUME_LIMIT = "1Gi"
MAX_ARCHIVE_BYTES = 256 * 2**20
MAX_UNPACKED_BYTES = 480 * 2**20  # below CODE_VOLUME_LIMIT: exceeding a sizeLimit evicts the pod
MAX_ARCHIVE_ENTRIES = 100_000
HASH_LENGTH = 16

BOTPOD_INIT = ["python3", "-m", "botpod", "init"]
BOTPOD_SYNC = ["python3", "-m", "botpod", "sync"]


@dataclass(frozen=True, kw_only=True)
class PodTemplateSettings:
    """Deployment-wide inputs of the pod generator (from settings, never from a bot)."""

    namespace: str
    image_map: Mapping[str, str]  # runtime → image (repository, or repository:tag)
    image_tag: str = "latest"  # for image_map entries without a tag
    init_image: str  # the project's image: `python3 -m botpod` (init and state sync)
    pull_policy: str = "IfNotPresent"
    state_sync_interval_s: int = 60
    state_max_bytes: int = 64 * 2**20
    termination_grace_s: int = 30
    tolerations: Sequence[Mapping[str, Any]] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # SECRET: the key of the config hash (an HMAC), the controller's alone (CONFIG_HASH_KEY).
    hash_key: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, kw_only=True)
class SignedUrls:
    """The presigned URLs of one pod's Secret. SECRET: each one is a credential while valid."""

    code: str = field(repr=False)
    state_get: str = field(repr=False)
    state_put: str = field(repr=False)
    signed_at: float


def build_pod(
    bot: Bot, settings: PodTemplateSettings, *, restart_policy: str = "Always"
) -> dict[str, Any]:
    """The bot's Pod, annotated with the hash of every input it was built from."""
    pod = _pod_without_hash(bot, settings, restart_policy)
    pod["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH] = _hash_of(
        bot, pod, key=settings.hash_key)
    return pod


def config_hash(bot: Bot, settings: PodTemplateSettings, *, restart_policy: str = "Always") -> str:
    """16 hex chars covering the generator version, the pod, the secret config and the code.

    Equal hashes mean the running pod is what we would build now; the presigned URLs are
    excluded because they change on every signing without changing what runs.
    """
    return _hash_of(bot, _pod_without_hash(bot, settings, restart_policy), key=settings.hash_key)


def build_config_secret(
    bot: Bot, *, pod_name: str, pod_uid: str, namespace: str, urls: SignedUrls
) -> dict[str, Any]:
    """The Secret for one pod: its BOT_CONFIG and presigned URLs, owned by (and deleted with)
    the pod. Mutable: the controller re-signs the URLs while the pod runs."""
    metadata = _metadata(bot, pod_name, namespace)
    metadata["name"] = naming.secret_name(pod_name)
    metadata["annotations"][ANNOTATION_URLS_SIGNED_AT] = f"{urls.signed_at:.0f}"
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
        "stringData": {
            SECRET_KEY_CONFIG: go_json(bot.config),  # byte for byte what the0's Go writes
            SECRET_KEY_CODE_URL: urls.code,
            SECRET_KEY_STATE_GET_URL: urls.state_get,
            SECRET_KEY_STATE_PUT_URL: urls.state_put,
        },
    }


def state_object_key(bot_id: str) -> str:
    """`<bot id>/state.tar.gz`, the0's key of a bot's state in the state bucket.

    An id whose path segments a filesystem-backed S3 server could fold into another bot's key
    ("a/." is "a") is refused: it would read or overwrite that bot's state.
    """
    segments = bot_id.split("/")
    if (not bot_id.isprintable() or "\\" in bot_id
            or any(segment in ("", ".", "..") for segment in segments)):
        raise InvalidBot(bot_id, "unsafe_id", "the id cannot name a state object safely")
    return f"{bot_id}/state.tar.gz"


def image_reference(repository: str, tag: str) -> str:
    """`repository:tag`, unless the repository already pins a tag or digest."""
    last_segment = repository.rsplit("/", 1)[-1]
    if "@" in repository or ":" in last_segment:
        return repository
    return f"{repository}:{tag}"


def _hash_of(bot: Bot, pod_without_hash: Mapping[str, Any], *, key: bytes) -> str:
    # The code path and version are not in the pod (the URL is in the Secret), so add them here.
    # Keyed: the annotation is readable by anyone who can read pods, and the config is secret.
    inputs = {
        "generator": GENERATOR_VERSION,
        "pod": pod_without_hash,
        "config": bot.config,
        "code": {"path": bot.code_path, "version": bot.code_version},
    }
    return keyed_hash_hex(key, canonical_json(inputs))[:HASH_LENGTH]


def _pod_without_hash(
    bot: Bot, settings: PodTemplateSettings, restart_policy: str
) -> dict[str, Any]:
    name = naming.pod_name(bot.id)
    repository = settings.image_map.get(bot.runtime)
    if repository is None:
        # A deployment gap, but it only stops the bots of this runtime.
        raise InvalidBot(bot.id, "no_image_for_runtime", "no image is configured for its runtime")
    state_object_key(bot.id)  # refuse ids that cannot own a state object before anything runs
    secret = naming.secret_name(name)
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": settings.termination_grace_s,
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
            # Sized by the state cap: the packed state must fit, and a bot writing far more
            # than it could ever save is evicted instead of filling the node's disk.
            {"name": "state", "emptyDir": {"sizeLimit": _mebibytes(4 * settings.state_max_bytes)}},
            {"name": "sync-tmp",
             "emptyDir": {"sizeLimit": _mebibytes(2 * settings.state_max_bytes)}},
            {"name": "urls", "secret": {
                "secretName": secret, "defaultMode": 0o440,
                "items": [{"key": key, "path": path} for key, path in URL_FILES.items()]}},
        ],
        "initContainers": [_init_container(bot, settings),
                           _state_sync_container(settings)],
        "containers": [_bot_container(bot, settings, repository, secret)],
    }
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(bot, name, settings.namespace),
        "spec": spec,
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


def _init_container(bot: Bot, settings: PodTemplateSettings) -> dict[str, Any]:
    return {
        "name": "init",
        "image": settings.init_image,
        "imagePullPolicy": settings.pull_policy,
        "command": list(BOTPOD_INIT),
        "env": [
            {"name": "BOT_ID", "value": bot.id},
            {"name": "RUNTIME", "value": bot.runtime},
            {"name": "ENTRYPOINT", "value": bot.entrypoint},
            {"name": "CODE_DIR", "value": CODE_DIR},
            {"name": "STATE_DIR", "value": STATE_DIR},
            {"name": "URLS_DIR", "value": URLS_DIR},
            {"name": "DOWNLOAD_DIR", "value": DOWNLOAD_DIR},
            {"name": "MAX_ARCHIVE_BYTES", "value": str(MAX_ARCHIVE_BYTES)},
            {"name": "MAX_UNPACKED_BYTES", "value": str(MAX_UNPACKED_BYTES)},
            {"name": "MAX_ARCHIVE_ENTRIES", "value": str(MAX_ARCHIVE_ENTRIES)},
            {"name": "STATE_MAX_BYTES", "value": str(settings.state_max_bytes)},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},  # the root filesystem is read-only
        ],
        "volumeMounts": [
            {"name": "code", "mountPath": CODE_DIR},
            {"name": "state", "mountPath": STATE_MOUNT},
            {"name": "tmp", "mountPath": DOWNLOAD_DIR},
            {"name": "urls", "mountPath": URLS_DIR, "readOnly": True},
        ],
        "resources": {
            "limits": {"memory": "128Mi", "cpu": "500m"},
            "requests": {"memory": "64Mi", "cpu": "50m"},
        },
        "securityContext": _container_security(),
    }


FINAL_SYNC_MARGIN_S = 5


def final_sync_seconds(grace_s: int) -> int:
    """The sidecar's budget for its last upload. The kubelet stops it only after the bot has
    exited, within the pod's one grace period: the margin is for the bot's own exit (the
    wrappers exit at once on SIGTERM) and the sidecar's, so the upload ends before SIGKILL."""
    return max(1, grace_s - FINAL_SYNC_MARGIN_S)


def _state_sync_container(settings: PodTemplateSettings) -> dict[str, Any]:
    return {
        "name": "state-sync",
        "image": settings.init_image,
        "imagePullPolicy": settings.pull_policy,
        # A native sidecar: runs beside the bot, stopped after it, and never keeps a Job alive.
        "restartPolicy": "Always",
        "command": list(BOTPOD_SYNC),
        # The bot starts once this succeeds: by then SIGTERM is the sidecar's to handle, so
        # even a run of a few milliseconds gets its final state upload.
        "startupProbe": {"exec": {"command": ["test", "-e", f"{SCRATCH_DIR}/ready"]},
                         "periodSeconds": 1, "failureThreshold": 120},
        "env": [
            {"name": "STATE_DIR", "value": STATE_DIR},
            {"name": "URLS_DIR", "value": URLS_DIR},
            {"name": "SCRATCH_DIR", "value": SCRATCH_DIR},
            {"name": "STATE_SYNC_INTERVAL", "value": str(settings.state_sync_interval_s)},
            {"name": "STATE_FINAL_SYNC_SECONDS",
             "value": str(final_sync_seconds(settings.termination_grace_s))},
            {"name": "STATE_MAX_BYTES", "value": str(settings.state_max_bytes)},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_MOUNT, "readOnly": True},
            {"name": "sync-tmp", "mountPath": SCRATCH_DIR},
            {"name": "urls", "mountPath": URLS_DIR, "readOnly": True},
        ],
        "resources": {
            "limits": {"memory": "128Mi", "cpu": "200m"},
            "requests": {"memory": "32Mi", "cpu": "10m"},
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
        "command": ["sh", f"{CODE_DIR}/entrypoint.sh"],
        "workingDir": CODE_DIR,
        # The wrappers' result file becomes the container's termination message: the run's
        # outcome (success / error / terminated) is in the pod status, read by status and Jobs.
        "terminationMessagePath": RESULT_FILE,
        "env": [
            {"name": "BOT_ID", "value": bot.id},  # the id is not secret
            _from_secret("BOT_CONFIG", secret, SECRET_KEY_CONFIG),
            {"name": "CODE_MOUNT_DIR", "value": CODE_DIR},
            {"name": "STATE_DIR", "value": STATE_DIR},
            # The root filesystem is read-only: point caches and temp files at the tmp volume.
            {"name": "HOME", "value": TMP_DIR},
            {"name": "TMPDIR", "value": TMP_DIR},
            {"name": "PYTHONUNBUFFERED", "value": "1"},  # a line is in the log when printed
        ],
        "volumeMounts": [
            # Writable, as in the0: the wrappers write /bot/result.json there.
            {"name": "code", "mountPath": CODE_DIR},
            {"name": "state", "mountPath": STATE_MOUNT},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
        "resources": {
            "limits": {"memory": bot.resources.memory_limit, "cpu": bot.resources.cpu_limit},
            "requests": {"memory": bot.resources.memory_request, "cpu": bot.resources.cpu_request},
        },
        "securityContext": _container_security(),
    }


def _mebibytes(size: int) -> str:
    return f"{max(1, -(-size // 2**20))}Mi"


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
