"""Every Redis key name the system uses, in one place (so operators can find and reason about them).

Bot ids are arbitrary strings; they go into keys verbatim (Redis keys are binary-safe).
"""

from __future__ import annotations

PREFIX = "the0"

# Per-bot coordination.
INFLIGHT = f"{PREFIX}:inflight:{{kind}}:{{bot_id}}"   # an action is queued or running for a bot
LOCK = f"{PREFIX}:lock:{{kind}}:{{bot_id}}"           # held while a task acts on one bot
BACKOFF = f"{PREFIX}:backoff:{{kind}}"                 # hash bot_id → {"failures", "not_before"}
STATUS_FINGERPRINTS = f"{PREFIX}:status-fp:{{kind}}"   # hash bot_id → fingerprint of stored status
# A field of that hash no bot id can be (ids with control characters are refused): set when a
# pass built the memo from the status documents, lost with the hash when Redis is.
STATUS_MEMO_COMPLETE = "\x00complete"
LAST_ERRORS = f"{PREFIX}:last-error:{{kind}}"  # hash bot_id → last task error, "" once cleared
EVENT_PENDING = f"{PREFIX}:event-pending:{{kind}}:{{bot_id}}"  # an event's reconcile is queued
URLS_SIGNED = f"{PREFIX}:urls-signed"  # hash pod uid → when its Secret's URLs were signed (epoch s)
# A pod the controller deleted (by uid, from any worker process): its DELETED event, seen by
# every process's pod watch, is not someone else's deletion to react to.
DELETED_POD = f"{PREFIX}:deleted-pod:{{uid}}"

# The Celery queues: on the Redis broker each is a list of this name. /readyz asks that a live
# worker takes each (its heartbeat says which it consumes).
QUEUE_RECONCILE = "reconcile"
QUEUE_BOTS = "bots"
QUEUE_LOGS = "logs"
QUEUES = (QUEUE_RECONCILE, QUEUE_BOTS, QUEUE_LOGS)

# Whole-system coordination.
RECONCILE_LOCK = f"{PREFIX}:reconcile:lock:{{kind}}"   # one reconcile pass at a time
CREATE_BUCKET = f"{PREFIX}:ratelimit:create"           # token bucket for pod/cronjob creation
DELETE_BUCKET = f"{PREFIX}:ratelimit:delete"           # token bucket: removals of bots, global
DELETIONS_HELD = f"{PREFIX}:deletions:held"            # JSON: the last removal the budget held
BEAT_LEADER = f"{PREFIX}:beat:leader"                  # the one active beat

# Health (heartbeats with TTLs, read by the api).
HEARTBEAT_WORKER = f"{PREFIX}:heartbeat:worker:{{hostname}}"
HEARTBEAT_BEAT = f"{PREFIX}:heartbeat:beat"
LAST_RECONCILE = f"{PREFIX}:last-reconcile:{{kind}}"
HEARTBEAT_EVENTS_CONSUMER = f"{PREFIX}:heartbeat:events:{{hostname}}"  # one per consumer
# Refreshed by every consumer while it is connected to NATS: alive ⇔ events are being received.
HEARTBEAT_EVENTS = f"{PREFIX}:heartbeat:events"
HEARTBEAT_WORKERS = f"{PREFIX}:heartbeat:workers"  # zset hostname → last beat (to find the keys)
METRICS = f"{PREFIX}:metrics:{{family}}"  # hash per metric family: label set → value
# Singleton heartbeats /readyz requires fresh: check name → key. Add a process here and it
# becomes a readiness check of that name.
REQUIRED_HEARTBEATS = {"beat": HEARTBEAT_BEAT, "events": HEARTBEAT_EVENTS}
# Celery queues (Redis lists, one per priority step) whose depth /metrics shows.
QUEUES = ("reconcile", "bots", "logs")


def inflight(kind: str, bot_id: str) -> str:
    return INFLIGHT.format(kind=kind, bot_id=bot_id)


def lock(kind: str, bot_id: str) -> str:
    return LOCK.format(kind=kind, bot_id=bot_id)


def backoff(kind: str) -> str:
    return BACKOFF.format(kind=kind)


def status_fingerprints(kind: str) -> str:
    return STATUS_FINGERPRINTS.format(kind=kind)


def last_errors(kind: str) -> str:
    return LAST_ERRORS.format(kind=kind)


def reconcile_lock(kind: str) -> str:
    return RECONCILE_LOCK.format(kind=kind)


def last_reconcile(kind: str) -> str:
    return LAST_RECONCILE.format(kind=kind)


def worker_heartbeat(hostname: str) -> str:
    return HEARTBEAT_WORKER.format(hostname=hostname)


def event_pending(kind: str, bot_id: str) -> str:
    return EVENT_PENDING.format(kind=kind, bot_id=bot_id)


def deleted_pod(uid: str) -> str:
    return DELETED_POD.format(uid=uid)


def events_heartbeat(hostname: str) -> str:
    return HEARTBEAT_EVENTS_CONSUMER.format(hostname=hostname)


def metrics(family: str) -> str:
    return METRICS.format(family=family)


# Log collection (issue 6).
LOG_CURSORS = f"{PREFIX}:logs:cursor:{{bot_id}}"      # hash stream (pod uid/container) → position
LOG_LOCK = f"{PREFIX}:logs:lock:{{bot_id}}"           # the one writer of a bot's log objects
LOG_FENCE = f"{PREFIX}:logs:fence"                    # counter: every lock holder gets a new token
LOG_PASS = f"{PREFIX}:logs:pass:{{pass_id}}"          # hash: chunks done, lines, errors of a pass
LAST_LOGS = f"{PREFIX}:last-logs"                     # JSON summary of the last finished pass


def log_cursors(bot_id: str) -> str:
    return LOG_CURSORS.format(bot_id=bot_id)


def log_lock(bot_id: str) -> str:
    return LOG_LOCK.format(bot_id=bot_id)


def log_pass(pass_id: str) -> str:
    return LOG_PASS.format(pass_id=pass_id)
