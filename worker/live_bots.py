"""Live bots → Pods: the imperative shell around the pure planner.

A reconcile pass is a short numbered sequence (load → observe → plan → record → enqueue); a
per-bot task re-reads that one bot and acts (ids in, re-read, act), so a duplicated, late or
concurrent task does the right thing for the world as it is now.

Invariants kept here:
- never two pods for one bot: pods have a fixed name per bot (the API server refuses a
  second), nothing is created beside a terminating pod, and a replace waits until the old pod
  is gone before it creates;
- never act on a failed read: every read happens before the first write and raises ReadFailed;
- secrets stay out of specs, logs and messages: only ids and reason codes leave this module.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker import keys
from worker.adapters.kube import Conflict
from worker.adapters.redis import Held
from worker.core.bot import Bot, BotId, BotKind
from worker.core.census import census
from worker.core.desired import DesiredState, desired_state
from worker.core.errors import InvalidBot, PermanentError, TemporaryError
from worker.core.naming import (
    LABEL_MANAGED_BY,
    MANAGED_BY_BOT,
    pod_name,
    secret_name,
)
from worker.core.planner import (
    Action,
    ActionKind,
    Backoff,
    ObservedPod,
    Plan,
    next_backoff,
    observed_pod,
    plan,
)
from worker.core.podspec import SignedUrls, build_config_secret, build_pod
from worker.core.podstatus import PodHealth
from worker.core.status import fingerprint, observed_status
from worker.log_collector import LogCollector
from worker.runtime import Runtime
from worker.telemetry import record_pass

log = logging.getLogger("the0.live_bots")
KIND = BotKind.LIVE
POD_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_BOT}"
COMPONENT = MANAGED_BY_BOT


class BotBusy(TemporaryError):
    """Another task holds this bot's lock; try again shortly."""


@dataclass(frozen=True)
class Observation:
    """Everything one pass read, all before its first write."""

    state: DesiredState
    pods: list[ObservedPod]
    backoff: dict[BotId, Backoff]


@dataclass
class PassReport:
    skipped: bool = False
    duration_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    enqueued: int = 0
    already_in_flight: int = 0
    status_writes: int = 0
    urls_resigned: int = 0
    invalid: int = 0
    unidentifiable: int = 0
    guard_message: str = ""
    plan: Plan | None = None
    bots: dict[str, int] = field(default_factory=dict)  # bots by state (worker.core.census)

    def summary(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "duration_s": round(self.duration_s, 3),
                "counts": self.counts, "enqueued": self.enqueued,
                "already_in_flight": self.already_in_flight,
                "status_writes": self.status_writes, "urls_resigned": self.urls_resigned,
                "invalid": self.invalid,
                "unidentifiable": self.unidentifiable, "guard": self.guard_message,
                "bots": self.bots}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LiveBotController:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.desired_read_at = 0.0  # when the desired documents observe used were read
        self._local = threading.local()  # the bot lock this thread holds in converge()

    # ================================================================== the whole pass
    def observe(self) -> Observation:
        """1. load desired (Mongo)  2. observe actual (Kubernetes)  — reads only, both at once
        (each waits on another server)."""
        s = self.settings
        with ThreadPoolExecutor(max_workers=1) as pool:
            pods_future = pool.submit(self.rt.read_objects, "pods", POD_SELECTOR, observed_pod)
            docs = self.read_desired()
            pods: list[ObservedPod] = pods_future.result()
        state = desired_state(docs, kind=KIND, template=s.pod_template,
                              default_resources=s.default_resources,
                              parse=self.rt.parse_memo(KIND))
        self.rt.parse_memo(KIND).retain({str(doc.get("id")) for doc in docs})
        return Observation(state=state, pods=pods, backoff=self.rt.redis.load_backoff(KIND))

    def read_desired(self) -> list[dict[str, Any]]:
        self.desired_read_at = self.rt.clock()
        return self.rt.store(KIND).load_all()

    def plan(self, observation: Observation, *, now: float) -> Plan:
        """3. plan (pure)."""
        return plan(desired=observation.state.desired, actual=observation.pods,
                    backoff=observation.backoff, now=now,
                    max_delete_fraction=self.settings.MAX_DELETE_FRACTION,
                    max_delete_min=self.settings.MAX_DELETE_MIN,
                    untouchable=observation.state.invalid.keys())

    def reconcile(self, *, enqueue: Callable[[Action, float], None]) -> PassReport:
        """One full pass; at most one at a time across all workers. `enqueue(action, as_of)`
        sends the per-bot task; `as_of` (epoch s) is when this pass's reads started (logged
        with the task; the task reads the bot afresh anyway)."""
        started = time.monotonic()
        lock_ttl = max(60.0, 4 * self.settings.RECONCILE_INTERVAL)
        with self.rt.redis.hold(keys.reconcile_lock(KIND.value), ttl=lock_ttl) as held:
            if held is None:
                log.info("reconcile skipped: the previous pass is still running")
                return PassReport(skipped=True)
            observation = self.observe()
            as_of = self.desired_read_at  # tasks act on data no older than what was planned
            now = self.rt.clock()
            the_plan = self.plan(observation, now=now)
            report = PassReport(plan=the_plan, counts=the_plan.counts(),
                                invalid=len(observation.state.invalid),
                                unidentifiable=observation.state.unidentifiable,
                                guard_message=the_plan.guard_message,
                                bots=census(desired=observation.state.desired.keys(),
                                            objects=observation.pods,
                                            backoff=observation.backoff,
                                            invalid=len(observation.state.invalid),
                                            disabled=len(observation.state.disabled), now=now))
            if the_plan.guard_tripped:
                log.error("%s", the_plan.guard_message)
            # 4. enqueue one task per bot action, skipping bots with an action in flight —
            #    first, while the plan is fresh.
            report.enqueued, report.already_in_flight = self.enqueue(
                the_plan.actions, lambda action: enqueue(action, as_of))
            # 5. record: status documents that changed (bounded per pass), backoff resets.
            report.status_writes = self.record_statuses(observation, now=now)
            self.reset_recovered_backoff(observation, now=now)
            # 6. keep the pods' presigned URLs valid (bounded per pass).
            report.urls_resigned = self.resign_urls(observation, now=now)
        report.duration_s = time.monotonic() - started
        record_pass(self.rt, KIND.value, ok=True, duration_s=report.duration_s,
                    summary=report.summary())
        log.info("reconcile done: %s", report.summary())
        return report

    def enqueue(self, actions: Sequence[Action], enqueue: Callable[[Action], None]
                ) -> tuple[int, int]:
        by_id = {action.bot_id: action for action in actions}
        claimed = self.rt.redis.claim_inflight(KIND.value, list(by_id),
                                               ttl=self.settings.INFLIGHT_TTL)
        for bot_id in claimed:
            try:
                enqueue(by_id[BotId(bot_id)])
            except Exception:
                self.rt.redis.release_inflight(KIND.value, bot_id)
                raise
        return len(claimed), len(by_id) - len(claimed)

    def record_statuses(self, observation: Observation, *, now: float) -> int:
        """Writes the status of bots whose observed status changed since the last write, at
        most STATUS_WRITES_PER_PASS of them (errors first); the rest follow next pass. This
        bounds a pass's length when thousands of bots change at once (cold start)."""
        state = observation.state
        pods_by_bot: dict[BotId, list[ObservedPod]] = {}
        for pod in observation.pods:
            pods_by_bot.setdefault(pod.bot_id, []).append(pod)
        memo = self.rt.redis.load_status_fingerprints(KIND.value)
        last_errors = self.rt.redis.load_last_errors(KIND.value)
        changed: list[dict[str, Any]] = []
        new_memo: dict[str, str] = {}
        present = state.known | pods_by_bot.keys()
        for bot_id in present:
            pods = pods_by_bot.get(bot_id, [])
            doc = observed_status(
                bot_id=bot_id, namespace=self.settings.NAMESPACE,
                pod=_representative(pods), want=state.desired.get(bot_id),
                invalid=state.invalid.get(bot_id), disabled=bot_id in state.disabled,
                backing_off=_backing_off(observation, bot_id, now))
            doc.setdefault("last_error", last_errors.get(bot_id, ""))
            mark = fingerprint(doc)
            if memo.get(bot_id) != mark:
                doc["updated_at"] = _iso(now)
                changed.append(doc)
                new_memo[bot_id] = mark
        gone = [bot_id for bot_id in memo if bot_id not in present]
        writes = write_changed_statuses(self.rt, KIND, changed, new_memo, gone)
        for bot_id, error in state.invalid.items():
            if memo.get(bot_id) != new_memo.get(bot_id, memo.get(bot_id)):
                log.warning("bot invalid: %s", error)  # message never holds config values
        return writes

    def reset_recovered_backoff(self, observation: Observation, *, now: float) -> None:
        healthy = {pod.bot_id for pod in observation.pods
                   if pod.assessment.health is PodHealth.RUNNING}
        reset_after = self.settings.CRASH_BACKOFF_RESET
        recovered = [bot_id for bot_id, backoff in observation.backoff.items()
                     if bot_id in healthy and now - backoff.not_before > reset_after]
        self.rt.redis.clear_backoff(KIND.value, recovered)

    # ================================================================== one bot
    def converge(self, bot_id: str, *, intent: str, pod: str | None = None) -> str:
        """Re-reads one bot (its documents, now) and its pods, plans with the same rules, and
        acts. `pod`: the pod the pass planned for, when it is not the bot's own fixed name (an
        extra or legacy pod to delete). Returns what it did ("created", "deleted",
        "replaced", "recreated", "nothing", "backing off", …)."""
        # Short, renewed while the task waits: a killed worker blocks this bot ≤ BOT_LOCK_TTL.
        with self.rt.redis.hold(keys.lock(KIND.value, bot_id),
                                ttl=self.settings.BOT_LOCK_TTL) as held:
            if held is None:
                raise BotBusy("another task is acting on this bot")
            self._local.held = held
            names = {pod_name(bot_id)} | ({pod} if pod else set())
            return self._converge_locked(BotId(bot_id), intent=intent,
                                         pod_names=sorted(names))

    def observe_one(self, bot_id: BotId, *, pod_names: Sequence[str]) -> Observation:
        """The bot's documents and its pods. Pods are fetched by name (GET), not by a label
        LIST: the API server answers a GET in O(1) but filters every pod for a LIST, which made
        a 10,000-bot cold start quadratic. Extra pods under other names are found by the full
        pass, which names them to the task."""
        docs = self.rt.store(KIND).load_one(bot_id)
        raw_pods = [raw for raw in map(self.rt.kube.get_pod, pod_names) if raw is not None]
        pods = [p for p in map(observed_pod, raw_pods) if p is not None and p.bot_id == bot_id]
        s = self.settings
        state = desired_state(docs, kind=KIND, template=s.pod_template,
                              default_resources=s.default_resources,
                              parse=self.rt.parse_memo(KIND))
        backoff = self.rt.redis.get_backoff(KIND.value, bot_id)
        return Observation(state=state, pods=pods,
                           backoff={bot_id: backoff} if backoff else {})

    def _converge_locked(self, bot_id: BotId, *, intent: str, pod_names: Sequence[str]) -> str:
        for _attempt in range(2):
            observation = self.observe_one(bot_id, pod_names=pod_names)
            now = self.rt.clock()
            the_plan = plan(desired=observation.state.desired, actual=observation.pods,
                            backoff=observation.backoff, now=now, max_delete_fraction=1.0,
                            max_delete_min=1, untouchable=observation.state.invalid.keys())
            if the_plan.waiting:
                # A pod of this bot is terminating: wait for it, then plan again (once).
                self._wait_until_gone([p for p in observation.pods
                                       if p.assessment.health is PodHealth.TERMINATING])
                continue
            if not the_plan.actions:
                self._record_outcome(bot_id, last_error=None)
                return "backing off" if the_plan.backing_off else "nothing"
            action = the_plan.actions[0]
            if action.kind is not ActionKind.CREATE and intent == "create":
                log.info("bot %r: queued as create, now needs %s", bot_id, action.kind.value)
            return self._act(action, observation, now=now)
        return "waiting for a terminating pod"

    def _act(self, action: Action, observation: Observation, *, now: float) -> str:
        bot_id = action.bot_id
        bot = observation.state.bots.get(bot_id)
        pod = next((p for p in observation.pods if p.name == action.pod_name), None)
        try:
            if action.kind is ActionKind.CREATE:
                assert bot is not None
                created = self._create(bot)
                self._event(created, "Created", f"Created pod for bot ({action.reason})")
                self._record_outcome(bot_id, last_error="")
                return "created"
            assert pod is not None
            self._delete(pod)
            if action.kind is ActionKind.DELETE:
                self._event(_pod_ref(pod), "Deleted", f"Deleted bot pod ({action.reason})")
                self._record_outcome(bot_id, last_error="")
                return "deleted"
            self._wait_until_gone([pod])
            if action.kind is ActionKind.RECREATE:
                self._bump_backoff(bot_id, observation.backoff.get(bot_id), now=now)
            assert bot is not None
            self._renew_lock()
            created = self._create(bot)
            verb = "Replaced" if action.kind is ActionKind.REPLACE else "Recreated"
            self._event(created, verb, f"{verb} bot pod ({action.reason})")
            self._record_outcome(bot_id, last_error="")
            return verb.lower()
        except InvalidBot as error:
            # Bad input found while acting (e.g. the code object is missing): this bot only.
            self._fail(bot_id, observation, str(error), action, now=now, backoff=True)
            return f"failed: {error.reason}"
        except PermanentError as error:
            self._fail(bot_id, observation, str(error), action, now=now, backoff=True)
            raise

    # ------------------------------------------------------------------ steps
    def _create(self, bot: Bot) -> dict[str, Any]:
        s = self.settings
        if not self.rt.code.code_exists(bot.code_path):
            raise InvalidBot(bot.id, "code_not_found",
                             "the code object custom.filePath does not exist in the bucket")
        urls = self._sign_urls(bot)  # before the pod: a failure here leaves nothing behind
        self._take_create_token()
        body = build_pod(bot, s.pod_template)
        try:
            created = self.rt.kube.create_pod(body)
        except Conflict:
            # A concurrent task created it first (never a second pod: the name is fixed).
            existing = self.rt.kube.get_pod(body["metadata"]["name"])
            if existing is None:
                raise
            created = existing
        self.rt.kube.create_owned_secret(build_config_secret(
            bot, pod_name=created["metadata"]["name"], pod_uid=created["metadata"]["uid"],
            namespace=s.NAMESPACE, urls=urls))
        self.rt.redis.mark_urls_signed(created["metadata"]["uid"], urls.signed_at)
        return created

    def _sign_urls(self, bot: Bot) -> SignedUrls:
        return self.rt.code.sign_urls(bot_id=bot.id, code_path=bot.code_path,
                                      ttl_seconds=self.settings.CODE_URL_TTL,
                                      now=self.rt.clock())

    def resign_urls(self, observation: Observation, *, now: float) -> int:
        """Re-signs the URLs in the Secret of running pods signed more than half a URL
        lifetime ago (at most URL_RESIGN_PER_PASS a pass). The kubelet updates the mounted
        files in place, so the sidecar's next upload uses the new URL; nothing restarts.
        Only a pod built from the current config is re-signed: any other is replaced soon."""
        s = self.settings
        candidates = {p.uid: p for p in observation.pods
                      if p.uid and p.assessment.health is not PodHealth.TERMINATING
                      and (want := observation.state.desired.get(p.bot_id)) is not None
                      and want.config_hash == p.config_hash}
        signed = self.rt.redis.load_urls_signed([p.uid for p in observation.pods if p.uid])
        stale = sorted((signed.get(uid, 0.0), uid) for uid in candidates
                       if now - signed.get(uid, 0.0) > s.CODE_URL_TTL / 2)
        done = 0
        for _signed_at, uid in stale[:s.URL_RESIGN_PER_PASS]:
            pod = candidates[uid]
            bot = observation.state.bots[pod.bot_id]
            try:
                urls = self._sign_urls(bot)
                self.rt.kube.put_secret(build_config_secret(
                    bot, pod_name=pod.name, pod_uid=uid, namespace=s.NAMESPACE, urls=urls))
            except (InvalidBot, TemporaryError, PermanentError) as error:
                log.warning("bot %r: re-signing its URLs failed: %s", pod.bot_id, error)
                continue
            self.rt.redis.mark_urls_signed(uid, urls.signed_at)
            done += 1
        return done

    def _take_create_token(self) -> None:
        rate = self.settings.MAX_CREATES_PER_SECOND
        while (wait := self.rt.redis.take_create_token(rate=rate, burst=max(1.0, rate))) > 0:
            time.sleep(min(wait, 1.0))

    def _delete(self, pod: ObservedPod) -> None:
        if self.settings.LOG_COLLECT_ON_DELETE:
            # The pod's log goes with it: ship the lines written since the last log pass.
            self._renew_lock()
            LogCollector(self.rt).collect_before_delete(pod.name)
            self._renew_lock()
        self.rt.kube.delete_pod(pod.name, uid=pod.uid or None)
        # The pod owns its secret, so GC would remove it; deleting now frees the name at once.
        self.rt.kube.delete_secret(secret_name(pod.name))

    def _renew_lock(self) -> None:
        held: Held | None = getattr(self._local, "held", None)
        if held is not None:
            held.renew()

    def _wait_until_gone(self, pods: Sequence[ObservedPod]) -> None:
        deadline = time.monotonic() + self.settings.POD_GONE_TIMEOUT
        for pod in pods:
            while True:
                self._renew_lock()
                current = self.rt.kube.get_pod(pod.name)
                if current is None or current["metadata"].get("uid") != pod.uid:
                    break
                if time.monotonic() > deadline:
                    raise TemporaryError(f"pod {pod.name} still terminating after "
                                         f"{self.settings.POD_GONE_TIMEOUT:.0f} s")
                time.sleep(0.2)

    def _bump_backoff(self, bot_id: BotId, previous: Backoff | None, *, now: float) -> Backoff:
        s = self.settings
        backoff = next_backoff(previous, now=now, base_s=s.CRASH_BACKOFF_BASE,
                               cap_s=s.CRASH_BACKOFF_CAP, jitter=self.rt.jitter())
        self.rt.redis.save_backoff(KIND.value, bot_id, backoff)
        return backoff

    def _fail(self, bot_id: BotId, observation: Observation, message: str, action: Action,
              *, now: float, backoff: bool) -> None:
        log.warning("bot %r: %s failed: %s", bot_id, action.kind.value, message)
        if backoff:
            observation.backoff[bot_id] = self._bump_backoff(
                bot_id, observation.backoff.get(bot_id), now=now)
        self._event({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": action.pod_name}},
                    "Failed", f"{action.kind.value} failed: {message}", event_type="Warning")
        self._record_outcome(bot_id, last_error=message)

    def _event(self, involved: dict[str, Any], reason: str, message: str,
               event_type: str = "Normal") -> None:
        self.rt.kube.record_event(involved={"apiVersion": "v1", "kind": "Pod", **involved},
                                  reason=reason, message=message, event_type=event_type,
                                  component=COMPONENT)

    def _record_outcome(self, bot_id: BotId, *, last_error: str | None) -> None:
        record_outcome(self.rt, KIND, bot_id, last_error=last_error)


STALE_FINGERPRINT = "stale"


def record_outcome(rt: Runtime, kind: BotKind, bot_id: str, *,
                   last_error: str | None) -> None:
    """What a task records about its outcome. Status documents themselves are written only by
    the pass, which sees the pod as it is after the action and bounds its writes. The task
    keeps its error in Redis ("" = success clears it) and marks the bot's status stale, so the
    next pass (≤ one interval later) rewrites that bot's status with it."""
    if last_error is not None:
        rt.redis.set_last_error(kind.value, bot_id, last_error)
    # Mark, not forget: the memo is also the index of status documents that exist.
    rt.redis.save_status_fingerprints(kind.value, {bot_id: STALE_FINGERPRINT})


# Status documents written between two checks of the pass's time budget (and memo saves).
STATUS_BATCH = 250
_ROUTINE_PHASES = frozenset({"Running", "Pending", "Creating", "Scheduled", "Active"})


def write_changed_statuses(rt: Runtime, kind: BotKind, changed: list[dict[str, Any]],
                           fingerprints: dict[str, str], gone: Sequence[str]) -> int:
    """Writes changed status documents, errors first, bounded in count
    (STATUS_WRITES_PER_PASS) and in time (half an interval): a pass must end well before its
    lock expires, and whatever is left is written by the next pass (the memo only records
    what was really written)."""
    settings = rt.settings
    store = rt.store(kind)
    budget = time.monotonic() + settings.RECONCILE_INTERVAL / 2
    changed = sorted(changed, key=lambda d: (d["phase"] in _ROUTINE_PHASES, d["id"]))
    writes = 0
    limit = min(len(changed), settings.STATUS_WRITES_PER_PASS)
    for start in range(0, limit, STATUS_BATCH):
        if time.monotonic() > budget:
            break
        batch = changed[start:min(start + STATUS_BATCH, limit)]
        writes += store.write_statuses(batch)
        rt.redis.save_status_fingerprints(kind.value,
                                          {doc["id"]: fingerprints[doc["id"]] for doc in batch})
    writes += store.delete_statuses(gone)
    rt.redis.forget_status_fingerprints(kind.value, gone)
    rt.redis.forget_last_errors(kind.value, gone)
    return writes


def _representative(pods: Sequence[ObservedPod]) -> ObservedPod | None:
    """The pod a status should describe: a live one before a terminating one."""
    live = [p for p in pods if p.assessment.health is not PodHealth.TERMINATING]
    return min(live or pods, key=lambda p: p.name) if pods else None


def _backing_off(observation: Observation, bot_id: BotId, now: float) -> bool:
    backoff = observation.backoff.get(bot_id)
    return backoff is not None and backoff.not_before > now


def _pod_ref(pod: ObservedPod) -> dict[str, Any]:
    return {"metadata": {"name": pod.name, "uid": pod.uid}}
