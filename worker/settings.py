"""Every setting of the controller, loaded once from the environment and passed in explicitly.

Names match the0's seed controller where one exists (NAMESPACE, MONGO_URI, NATS_URL, MINIO_*).
A missing or invalid setting stops start-up with ONE message listing every problem
(`load_settings`). Nothing below the entry points reads the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.bot import DEFAULT_IMAGES, MAX_CONFIG_BYTES
from worker.core.cronspec import CronJobSettings
from worker.core.events import PLATFORM_STREAM
from worker.core.podspec import PodTemplateSettings
from worker.core.quantity import parse_quantity
from worker.core.resources import DEFAULT_CEILINGS, ResourcePolicy, Resources

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'30s', '2m', '1.5h', '500ms' or a bare number of seconds → seconds (float, > 0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '2m', '1h')")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _d(text: str) -> float:
    """A default written the way operators write it ("30s"), stored as seconds."""
    return parse_duration(text)


class Settings(BaseSettings):
    """The controller's configuration. Field docs: meaning, unit, default and why."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # --- Kubernetes -------------------------------------------------------------------------
    NAMESPACE: str = Field("the0", description="Namespace of bot pods and cronjobs.")
    KUBE_MODE: Literal["auto", "incluster", "kubeconfig"] = Field(
        "auto", description="auto: in-cluster config inside a pod, else KUBECONFIG/~/.kube/config.")
    KUBECONFIG: str | None = Field(None, description="Kubeconfig path when not in a cluster.")
    LIST_PAGE_SIZE: int = Field(
        1000, ge=50, le=5000,
        description="Items per list page. 1000 keeps a 10,000-pod read to ~10 requests.")
    KUBE_TIMEOUT: Duration = Field(30.0, description="Per-request timeout to the API server (s).")
    KUBE_WATCH: bool = Field(
        True, description="Passes read pods, CronJobs and Jobs from a watched in-process cache "
                          "(one list, then a watch) instead of listing them every pass: a "
                          "10,000-pod list is ~110 MB of JSON. false = list every pass (then the "
                          "Role needs no `watch`).")
    KUBE_CACHE_RELIST_INTERVAL: Duration = Field(
        _d("15m"), description="The watched cache lists again in the background about this "
                               "often, a safety net; a failed watch makes the next pass list "
                               "at once anyway.")

    # --- Desired state: MongoDB -------------------------------------------------------------
    MONGO_URI: SecretStr | None = Field(
        None, description="MongoDB URI (may hold a password). Required by workers and the events "
                          "consumer; beat and Flower never read it (ROLE_REQUIRES).")
    BOT_RUNNER_DB: str = Field("bot_runner", description="Database of live bots and bot_status.")
    BOT_SCHEDULER_DB: str = Field("bot_scheduler",
                                  description="Database of bot_schedules and schedule_status.")
    MONGO_TIMEOUT: Duration = Field(30.0, description="Server selection / socket timeout (s).")

    # --- Code and logs: object storage ------------------------------------------------------
    MINIO_ENDPOINT: str | None = Field(
        None, description="host:port of the S3 API (required by workers).")
    MINIO_ACCESS_KEY: SecretStr | None = Field(
        None, description="S3 access key (required by workers).")
    MINIO_SECRET_KEY: SecretStr | None = Field(
        None, description="S3 secret key (required by workers).")
    MINIO_BUCKET: str = Field("the0-custom-bots", description="Bucket of the bots' code zips.")
    CONFIG_HASH_KEY: SecretStr | None = Field(
        None, description="Key of the config hash on every pod and CronJob (an HMAC: the "
                          "annotation cannot confirm a guess of a secret config). Unset: derived "
                          "from MINIO_SECRET_KEY, so rotating that key replaces every bot once; "
                          "set it to keep them.")
    MINIO_SECURE: bool = Field(False, description="Use HTTPS to reach MINIO_ENDPOINT.")
    MINIO_REGION: str = Field("us-east-1",
                              description="Region used to sign URLs (no lookup call needed).")
    MINIO_PUBLIC_ENDPOINT: str | None = Field(
        None, description="host:port the bot pods use to fetch code, if not MINIO_ENDPOINT.")
    STATE_BUCKET: str = Field("bot-state", description="Bucket of the bots' saved state, "
                                                        "object `<bot id>/state.tar.gz` (as in "
                                                        "the0); created when missing.")
    CODE_URL_TTL: Duration = Field(
        _d("7d"), description="Lifetime of the presigned URLs in a pod's Secret (code read, "
                          "state read and write; max 7 days). The controller re-signs them "
                          "when half of it has passed, while the pod runs.")
    URL_RESIGN_PER_PASS: int = Field(
        200, ge=1, description="Pod Secrets re-signed at most per pass (the rest follow in "
                               "the next passes): bots created together expire together.")

    # --- Celery / Redis ---------------------------------------------------------------------
    REDIS_URL: str = Field("redis://localhost:6379/0",
                           description="Celery broker, locks, dedup keys and heartbeats.")
    RECONCILE_INTERVAL: Duration = Field(_d("30s"), description="Period of the full reconcile.")
    WORKER_CONCURRENCY: int = Field(16, ge=1, le=256,
                                    description="Threads per worker (the work waits on I/O).")
    TASK_VISIBILITY_TIMEOUT: Duration = Field(
        _d("5m"), description="A message taken by a worker that died (kill -9) is redelivered "
                          "after this long. Must exceed the longest task.")

    # --- Bot pods ---------------------------------------------------------------------------
    RUNTIME_IMAGES: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_IMAGES),
        description="JSON map runtime → image repository; merged over the built-in map.")
    RUNTIME_IMAGE_TAG: str = Field("latest", description="Tag of RUNTIME_IMAGES entries that "
                                                          "name no tag (the defaults do).")
    INIT_IMAGE: str = Field(
        "the0/the0-k8s:latest",
        description="The project's image, run by each bot pod's `init` container (code, state, "
                    "wrapper) and `state-sync` sidecar (`python3 -m botpod`). Pin it to the "
                    "controller's own image tag in a deployment.")
    STATE_SYNC_INTERVAL: Duration = Field(
        _d("60s"), description="How often a pod's sidecar uploads the bot's state when it "
                           "changed (and once more when the pod stops).")
    STATE_MAX_BYTES: int = Field(
        64 * 2**20, ge=1024, description="Largest packed state (bytes) a bot may save; a "
                                         "larger one is not uploaded (the last saved stays) "
                                         "and the sidecar logs why.")
    BOT_TERMINATION_GRACE: Duration = Field(
        _d("30s"), description="Grace period of a bot pod: SIGTERM, then this long to exit "
                           "and for the sidecar's last state upload.")
    BOT_TOLERATIONS: list[dict[str, Any]] = Field(
        default_factory=list, description="JSON list of tolerations added to every bot pod "
                                          "(e.g. to run bots on dedicated, tainted nodes).")
    BOT_NODE_SELECTOR: dict[str, str] = Field(
        default_factory=dict, description="JSON object: node labels a bot pod must match.")
    IMAGE_PULL_POLICY: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    DEFAULT_MEMORY_LIMIT: str = "512Mi"
    DEFAULT_CPU_LIMIT: str = "500m"
    DEFAULT_MEMORY_REQUEST: str = "128Mi"
    DEFAULT_CPU_REQUEST: str = "100m"
    MAX_CONFIG_BYTES: int = Field(
        MAX_CONFIG_BYTES, gt=0, le=120 * 1024,
        description="Largest BOT_CONFIG (UTF-8 JSON of a bot's config); a larger config is an "
                    "invalid bot (config_too_large), no pod. At most 120 KiB: an environment "
                    "string over 128 KiB cannot be exec'd.")
    # A bot's own `config.*_limit` / `*_request` above these is clamped (with a status warning).
    MAX_MEMORY_LIMIT: str = Field(DEFAULT_CEILINGS.memory_limit,
                                  description="Highest memory limit a bot's config may set.")
    MAX_CPU_LIMIT: str = Field(DEFAULT_CEILINGS.cpu_limit,
                               description="Highest CPU limit a bot's config may set.")
    MAX_MEMORY_REQUEST: str = Field(DEFAULT_CEILINGS.memory_request,
                                    description="Highest memory request a bot's config may set.")
    MAX_CPU_REQUEST: str = Field(DEFAULT_CEILINGS.cpu_request,
                                 description="Highest CPU request a bot's config may set.")

    # --- Scheduled bots (CronJobs) ---------------------------------------------------------
    CRONJOB_STARTING_DEADLINE: Duration = Field(
        _d("5m"), description="A run that could not start within this long after its time is "
                          "skipped (not fired late).")
    CRONJOB_SUCCESS_HISTORY: int = Field(3, ge=0, description="Finished Jobs kept (success).")
    CRONJOB_FAILED_HISTORY: int = Field(3, ge=0, description="Finished Jobs kept (failure).")
    JOB_TTL_AFTER_FINISHED: Duration = Field(_d("1d"), description="Finished Jobs removed after.")

    # --- Pace and safety --------------------------------------------------------------------
    MAX_CREATES_PER_SECOND: float = Field(
        50.0, gt=0, description="Pod creations per second, shared by all workers (token bucket "
                                "in Redis) so a cold start of 10,000 bots does not flood the API.")
    CRASH_BACKOFF_BASE: Duration = Field(
        _d("10s"), description="First delay before recreating a broken pod; doubles each time.")
    CRASH_BACKOFF_CAP: Duration = Field(_d("5m"), description="Longest delay between recreations.")
    CRASH_BACKOFF_RESET: Duration = Field(
        _d("10m"), description="A pod healthy this long after its last recreation resets backoff.")
    TASK_RETRY_BASE: Duration = Field(_d("1s"), description="First retry delay of a failed task.")
    TASK_RETRY_CAP: Duration = Field(_d("60s"), description="Longest retry delay of a failed task.")
    TASK_MAX_RETRIES: int = Field(8, ge=0, description="Retries before a task gives up "
                                                        "(the next reconcile re-plans anyway).")
    SECRET_REPAIR_AFTER: Duration = Field(
        _d("30s"), description="A pod not running this long after its creation has its Secret "
                               "checked, and made again if missing (longer than its create task "
                               "takes between the pod and the Secret).")
    POD_GONE_TIMEOUT: Duration = Field(
        _d("90s"), description="How long a replace waits for the old pod to disappear.")
    BOT_LOCK_TTL: Duration = Field(
        _d("45s"), description="Time-to-live of a per-bot lock, renewed while a task waits; "
                            "a killed worker blocks its bot at most this long.")
    INFLIGHT_TTL: Duration = Field(
        _d("15m"), description="Lifetime of a per-bot dedup key if its task never finishes: "
                           "after it the next reconcile plans the bot again. Longer than a "
                           "cold start's queue takes to drain (10,000 creates: 6-11 min here), "
                           "else queued bots are sent twice; a worker killed mid-task gets its "
                           "message back after TASK_VISIBILITY_TIMEOUT anyway.")
    STATUS_WRITES_PER_PASS: int = Field(
        1000, ge=1, description="Status documents a pass writes at most (errors first); the "
                                "rest follow in the next passes. Keeps a pass short.")
    MAX_DELETE_FRACTION: float = Field(
        0.5, ge=0, le=1, description="A pass that would delete more than this share of our "
                                     "pods (and more than MAX_DELETE_MIN) deletes none and "
                                     "reports.")
    MAX_DELETE_MIN: int = Field(10, ge=0, description="Deletions always allowed in one pass.")
    DELETE_BUDGET: int = Field(
        200, ge=1, description="Removals (a disabled or deleted bot's pod or CronJob) allowed "
                               "at once across every path — passes, platform events, single-bot "
                               "tasks — before DELETE_BUDGET_PER_MINUTE paces them (Redis token "
                               "bucket). A held removal is retried by the next pass.")
    DELETE_BUDGET_PER_MINUTE: float = Field(
        60.0, gt=0, description="Refill of DELETE_BUDGET: removals per minute once it is spent.")

    # --- NATS events (python -m worker events) ---------------------------------------------
    NATS_URL: SecretStr | None = Field(
        None, description="NATS server URL (may hold user:password). Unset, as the seed allows: "
                          "no events consumer, and readiness does not ask for one.")
    NATS_RECONNECT_WAIT: Duration = Field(
        _d("1s"), description="First wait before reconnecting to NATS; doubles per failure.")
    NATS_RECONNECT_WAIT_CAP: Duration = Field(
        _d("5s"), description="Longest wait between NATS connection attempts (an attempt is "
                          "one TCP connect: cheap; 30 s kept the consumer away for up to 27 s "
                          "after NATS was back).")
    NATS_PING_INTERVAL: Duration = Field(
        _d("10s"), description="Keep-alive ping; a silent NATS is found dead after 3 of them.")
    EVENTS_STREAM: str = Field(
        PLATFORM_STREAM, pattern=r"^[A-Za-z0-9_-]{0,64}$",
        description="JetStream stream the events are read from, through a durable consumer, so "
                    "none is lost while the consumer is down: the0's API keeps them in "
                    "THE0_EVENTS (created here with the API's settings if absent). Empty, or a "
                    "server without JetStream: core NATS, where events sent while no consumer "
                    "runs are lost.")
    EVENTS_DURABLE: str = Field(
        "the0-k8s", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Name of the durable consumer on EVENTS_STREAM (created if absent, from the "
                    "present on). Its position in the stream survives restarts.")
    EVENTS_ACK_WAIT: Duration = Field(
        _d("30s"), description="A stream message not acknowledged (nor kept alive) this long "
                           "is delivered again: how soon an event a dead consumer held is "
                           "redelivered.")
    EVENT_CONCURRENCY: int = Field(
        16, ge=1, le=256, description="Events applied at once by one consumer (different bots; "
                                      "one bot's events stay in order).")
    EVENT_MAX_BYTES: int = Field(
        512 * 1024, ge=1024, description="Larger messages are rejected unread (bytes). Bot "
                                         "documents are a few KiB; NATS allows 1 MiB.")
    EVENT_MAX_DEPTH: int = Field(
        100, ge=2, le=180,
        description="Deepest nesting of objects and arrays an event's document may have, "
                    "counted in the stored document ({\"config\": {\"a\": 1}} is 2; empty "
                    "ones count too, unlike in MongoDB); deeper ones are refused before any "
                    "write. 100 is MongoDB's documented limit (mongod refuses beyond 180).")
    EVENT_PENDING_LIMIT: int = Field(
        65536, ge=1, description="Messages buffered per subject while handlers are busy.")
    EVENT_PENDING_BYTES: int = Field(
        32 * 1024 * 1024, ge=1024 * 1024,
        description="Bytes buffered per subscription (2) while handlers are busy; beyond it "
                    "NATS drops messages (counted as failed:dropped). Keep twice this under the "
                    "consumer's memory limit.")
    EVENT_APPLY_DEADLINE: Duration = Field(
        _d("60s"), description="Core NATS only: how long an event's Mongo write is retried "
                           "while Mongo is down before it is logged as lost (core NATS does not "
                           "redeliver; from the stream it is retried until it works).")
    # --- Health and metrics (heartbeats in Redis, read by the api) ---------------------------
    HEARTBEAT_INTERVAL: Duration = Field(
        _d("10s"), description="How often each worker process and the active beat refresh "
                           "their heartbeat key in Redis.")
    HEARTBEAT_TTL: Duration = Field(
        _d("30s"), description="Lifetime of a heartbeat key: a process silent this long (killed, "
                           "hung, cut off from Redis) is dead for /readyz. Must exceed "
                           "HEARTBEAT_INTERVAL; 3 intervals tolerate a slow beat.")
    METRICS_FLUSH_INTERVAL: Duration = Field(
        _d("5s"), description="How often a worker flushes its buffered metric increments to "
                          "Redis (one pipeline), so the api's /metrics sees every process.")
    # --- Log collection ---------------------------------------------------------------------
    LOG_INTERVAL: Duration = Field(
        _d("30s"), description="Period of log collection (s). A line reaches S3 within about "
                           "one to two intervals.")
    LOG_CHUNK_SIZE: int = Field(
        100, ge=1, le=5000, description="Pods per collection task (a bot's pods are never "
                                        "split); chunks run in parallel on the `logs` queue.")
    LOG_READ_CONCURRENCY: int = Field(
        8, ge=1, le=256, description="Log reads in flight per worker process: the API server "
                                     "does not throttle log streams, so we do.")
    LOG_READ_LIMIT: int = Field(
        8 * 1024 * 1024, ge=64 * 1024,
        description="Bytes read from one container log per pass (limitBytes); the rest "
                    "follows next pass. Bounds a chunk's memory.")
    LOG_LINE_MAX_BYTES: int = Field(
        256 * 1024, ge=1024, le=8 * 1024 * 1024,
        description="Longest log line stored whole (bytes); the rest of a longer line is "
                    "dropped and its record says how much (truncated_bytes). Bounds the memory "
                    "one line costs, however a bot shapes its output. 256 KiB: the per-entry "
                    "limit of Loki, CloudWatch and Cloud Logging.")
    LOG_BOT_DAILY_BYTES: int = Field(
        256 * 1024 * 1024, ge=0,
        description="Bytes of log records one bot may store per UTC day; beyond them its lines "
                    "are dropped, counted in ONE marker record and the0_log_lines_total"
                    "{outcome=dropped} (0: no limit). 256 MiB is ~3 KiB/s all day, far more "
                    "than a trading bot's diagnostics need, and caps what one bot can cost the "
                    "store (~42 GiB/day otherwise).")
    LOG_PART_BYTES: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024,
        description="Size at which a day's current log object (the one the0's UI reads) is "
                    "rotated out to a numbered part: an append re-copies at most this much, "
                    "never the whole day.")
    LOG_BUCKET: str = Field("bot-logs", description="Bucket of the bots' NDJSON log objects "
                                                    "(the platform's UI reads it).")
    LOG_LOCK_TTL: Duration = Field(
        _d("60s"), description="Time-to-live of a bot's log-writer lock, renewed between "
                           "writes; a killed worker blocks that bot's logs at most this long.")
    LOG_CURSOR_TTL: Duration = Field(
        _d("7d"), description="A bot's cursors expire after this long without a collection "
                          "touching them (all its pods long gone).")
    LOG_STREAM_FORGET: Duration = Field(
        _d("15m"), description="A gone pod's cursor is dropped once unchanged this long.")
    LOG_UPLOAD_MAX_AGE: Duration = Field(
        _d("1h"), description="Multipart uploads of log objects older than this (left by a "
                          "killed worker) are aborted by the collection pass.")
    LOG_COLLECT_ON_DELETE: bool = Field(
        True, description="Before deleting or replacing a bot pod, ship the log lines it wrote "
                          "since the last pass (its log is deleted with it). Best effort.")
    LOG_SUMMARY_TTL: Duration = Field(
        _d("10m"), description="Lifetime of the last-collection summary read by the api.")

    @field_validator("RUNTIME_IMAGES", mode="before")
    @classmethod
    def _merge_images(cls, value: Any) -> dict[str, str]:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
            raise ValueError("must be a JSON object of runtime → image")
        return {**DEFAULT_IMAGES, **value}

    @field_validator("BOT_TOLERATIONS", "BOT_NODE_SELECTOR", mode="before")
    @classmethod
    def _json_text(cls, value: Any, info: ValidationInfo) -> Any:
        # From the environment these arrive as JSON text (also through load_settings(env=)).
        if isinstance(value, str):
            empty: Any = [] if info.field_name == "BOT_TOLERATIONS" else {}
            return json.loads(value) if value.strip() else empty
        return value

    @field_validator("DEFAULT_MEMORY_LIMIT", "DEFAULT_CPU_LIMIT", "DEFAULT_MEMORY_REQUEST",
                     "DEFAULT_CPU_REQUEST", "MAX_MEMORY_LIMIT", "MAX_CPU_LIMIT",
                     "MAX_MEMORY_REQUEST", "MAX_CPU_REQUEST")
    @classmethod
    def _positive_quantity(cls, value: str) -> str:
        try:
            valid = parse_quantity(value) > 0
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("must be a positive Kubernetes quantity (e.g. 512Mi, 500m)")
        return value

    @model_validator(mode="after")
    def _defaults_within_ceilings(self) -> Settings:
        for default, ceiling in (("DEFAULT_MEMORY_LIMIT", "MAX_MEMORY_LIMIT"),
                                 ("DEFAULT_CPU_LIMIT", "MAX_CPU_LIMIT"),
                                 ("DEFAULT_MEMORY_REQUEST", "MAX_MEMORY_REQUEST"),
                                 ("DEFAULT_CPU_REQUEST", "MAX_CPU_REQUEST"),
                                 ("DEFAULT_MEMORY_REQUEST", "DEFAULT_MEMORY_LIMIT"),
                                 ("DEFAULT_CPU_REQUEST", "DEFAULT_CPU_LIMIT")):
            if parse_quantity(getattr(self, default)) > parse_quantity(getattr(self, ceiling)):
                raise ValueError(f"{default} must not be greater than {ceiling}")
        return self

    @model_validator(mode="after")
    def _heartbeat_outlives_its_interval(self) -> Settings:
        if self.HEARTBEAT_TTL <= self.HEARTBEAT_INTERVAL:
            raise ValueError("HEARTBEAT_TTL must be greater than HEARTBEAT_INTERVAL")
        return self

    # --- Derived views for the pure core ----------------------------------------------------
    def required(self, name: str) -> str:
        """A setting this process's role requires (ROLE_REQUIRES), as plain text; a process
        started under a role without it stops here with the setting's name."""
        value = getattr(self, name)
        if value is None:
            raise SettingsError(f"invalid configuration: {name} is not set, and this process "
                                "needs it")
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    @cached_property
    def resource_policy(self) -> ResourcePolicy:
        return ResourcePolicy(
            defaults=Resources(memory_limit=self.DEFAULT_MEMORY_LIMIT,
                               cpu_limit=self.DEFAULT_CPU_LIMIT,
                               memory_request=self.DEFAULT_MEMORY_REQUEST,
                               cpu_request=self.DEFAULT_CPU_REQUEST),
            ceilings=Resources(memory_limit=self.MAX_MEMORY_LIMIT, cpu_limit=self.MAX_CPU_LIMIT,
                               memory_request=self.MAX_MEMORY_REQUEST,
                               cpu_request=self.MAX_CPU_REQUEST))

    @cached_property
    def cronjob_settings(self) -> CronJobSettings:
        return CronJobSettings(
            starting_deadline_seconds=int(self.CRONJOB_STARTING_DEADLINE),
            successful_jobs_history_limit=self.CRONJOB_SUCCESS_HISTORY,
            failed_jobs_history_limit=self.CRONJOB_FAILED_HISTORY,
            ttl_seconds_after_finished=int(self.JOB_TTL_AFTER_FINISHED))

    @cached_property
    def pod_template(self) -> PodTemplateSettings:
        return PodTemplateSettings(
            namespace=self.NAMESPACE, image_map=self.RUNTIME_IMAGES,
            image_tag=self.RUNTIME_IMAGE_TAG, init_image=self.INIT_IMAGE,
            pull_policy=self.IMAGE_PULL_POLICY,
            state_sync_interval_s=max(1, int(self.STATE_SYNC_INTERVAL)),
            state_max_bytes=self.STATE_MAX_BYTES,
            termination_grace_s=max(1, int(self.BOT_TERMINATION_GRACE)),
            tolerations=tuple(self.BOT_TOLERATIONS), node_selector=self.BOT_NODE_SELECTOR,
            hash_key=self.config_hash_key)

    @cached_property
    def config_hash_key(self) -> bytes:
        """CONFIG_HASH_KEY, or a key derived from MINIO_SECRET_KEY (only the controller holds
        either); empty only for a process that builds no pods (no storage key either)."""
        if self.CONFIG_HASH_KEY is not None and self.CONFIG_HASH_KEY.get_secret_value():
            return self.CONFIG_HASH_KEY.get_secret_value().encode()
        if self.MINIO_SECRET_KEY is None or not self.MINIO_SECRET_KEY.get_secret_value():
            return b""
        return hmac.new(self.MINIO_SECRET_KEY.get_secret_value().encode(),
                        b"the0-k8s config hash key", hashlib.sha256).digest()


class ApiSettings(BaseSettings):
    """The api's configuration: it only reads Redis, so it needs none of the controller's
    credentials. Shared names mean the same as in `Settings`."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    NATS_URL: SecretStr | None = Field(
        None, description="(api) Only whether it is set: set, /readyz requires the events "
                          "consumer's heartbeat; unset, events are off. The api never connects.")
    REDIS_URL: str = Field("redis://localhost:6379/0", description="Where heartbeats, last-pass "
                                                                  "records and metrics are.")
    RECONCILE_INTERVAL: Duration = Field(_d("30s"), description="Period of the full reconcile; "
                                                            "/readyz wants a successful pass "
                                                            "within READY_RECONCILE_INTERVALS of "
                                                            "them.")
    HEARTBEAT_TTL: Duration = Field(_d("30s"), description="A heartbeat older than this is "
                                                       "stale (same value as the workers').")
    READY_RECONCILE_INTERVALS: float = Field(
        3.0, gt=0, description="/readyz fails when no pass of a kind succeeded within this many "
                               "reconcile intervals.")
    API_REDIS_TIMEOUT: Duration = Field(
        _d("500ms"), description="Budget of one request's Redis reads (connect included): a "
                             "dead or hung Redis gives 503 within this, never a hang.")


def load_api_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> ApiSettings:
    """The api's settings from the environment (or `env`); one message lists every problem."""
    try:
        if env is not None:
            values: dict[str, Any] = {k: v for k, v in env.items()
                                      if k in ApiSettings.model_fields}
            return ApiSettings.model_validate({**values, **overrides})
        return ApiSettings(**overrides)
    except ValidationError as exc:
        problems = [f"  - {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid configuration, fix these settings:\n"
                            + "\n".join(problems)) from None


class SettingsError(SystemExit):
    """Start-up stops with one message listing every missing or invalid setting."""


_MONGO = ("MONGO_URI",)
_S3 = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")
ROLE_REQUIRES: Mapping[str, tuple[str, ...]] = {
    "worker": _MONGO + _S3,   # passes, per-bot tasks, log collection, `plan`, `reconcile`
    "logs": _S3,              # the log worker: pods/log → S3, no bot document ever read
    "events": _MONGO,         # the NATS consumer writes Mongo and enqueues tasks
    "broker": (),             # beat and Flower talk to the broker (REDIS_URL) only
}
"""The credentials each process needs: it starts without the others, and the deployments give
each only its own (tests/unit/deploy checks both against this)."""


MIN_FLOWER_PASSWORD = 12
_PLACEHOLDERS = ("change-me", "changeme", "password", "admin")


def flower_login_problem(basic_auth: str) -> str | None:
    """None when FLOWER_BASIC_AUTH is a usable login (each `user:password` with a password of
    at least MIN_FLOWER_PASSWORD characters that is no placeholder), else what is wrong — never
    quoting the value."""
    if not basic_auth.strip():
        return "FLOWER_BASIC_AUTH is not set (user:password)"
    for number, login in enumerate(basic_auth.split(","), start=1):
        user, _, password = login.partition(":")
        if not user.strip() or not password:
            return f"FLOWER_BASIC_AUTH login {number} is not user:password"
        if len(password) < MIN_FLOWER_PASSWORD:
            return (f"FLOWER_BASIC_AUTH login {number}: the password is shorter than "
                    f"{MIN_FLOWER_PASSWORD} characters")
        if any(word in password.lower() for word in _PLACEHOLDERS):
            return f"FLOWER_BASIC_AUTH login {number}: the password is a placeholder"
    return None


def load_settings(env: Mapping[str, str] | None = None, *, role: str = "worker",
                  **overrides: Any) -> Settings:
    """Reads the environment (or `env`) once; `overrides` (e.g. CLI flags) win over it.
    `role` names what this process is (ROLE_REQUIRES): a setting it needs and lacks is
    reported with every other problem."""
    source: Mapping[str, Any] = {**(os.environ if env is None else env), **overrides}
    problems = [f"  - {name}: missing (required by the {role} role)"
                for name in ROLE_REQUIRES[role] if not str(source.get(name) or "").strip()]
    settings: Settings | None = None
    try:
        if env is not None:
            values: dict[str, Any] = {k: v for k, v in env.items() if k in Settings.model_fields}
            settings = Settings.model_validate({**values, **overrides})
        else:
            settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            problem = "missing (required)" if error["type"] == "missing" else error["msg"]
            problems.append(f"  - {name}: {problem}")
    if problems or settings is None:
        raise SettingsError("invalid configuration, fix these settings:\n"
                            + "\n".join(problems)) from None
    return settings
