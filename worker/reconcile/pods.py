"""Live bots run as Pods: what the pass and converge need that is particular to them.

A Pod cannot be changed in place: a replace is delete → wait until the old pod is gone →
create (never two pods), a create takes a token from the cluster-wide create rate limit, and a
deleted pod's last log lines are shipped first. The presigned URLs in a running pod's Secret
are re-signed by the pass before they expire (the kubelet updates the mounted files).

Cut-over: a pass also reads the pods of the0's original runtime (worker/core/legacy.py; a
watched cache of their own, so a pass makes no list), and a task also reads the original's
name for its bot. Such a pod is taken over like a replace — the code is checked and the URLs
signed first, so a failure leaves it running — or deleted; never adopted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from worker.adapters.kube import Conflict
from worker.core.bot import Bot, BotId, BotKind
from worker.core.errors import InvalidBot, PermanentError, TemporaryError
from worker.core.legacy import POD_SELECTOR as LEGACY_POD_SELECTOR
from worker.core.legacy import (
    WATCHED_AS_PODS,
    legacy_pod_name,
    note_cutover,
    observe_legacy_pod,
    observe_named,
    partition,
)
from worker.core.naming import LABEL_MANAGED_BY, MANAGED_BY_BOT, pod_name, secret_name
from worker.core.planner import Action, ActionKind, ObservedPod, Plan, observed_pod
from worker.core.podspec import SignedUrls, build_config_secret, build_pod
from worker.core.podstatus import PodHealth
from worker.core.status import observed_status
from worker.log_collector import LogCollector
from worker.reconcile.kind import Actual, Observation, StaleObservation, Steps
from worker.reconcile.waiting import Resume
from worker.runtime import Runtime

log = logging.getLogger("the0.reconcile.pods")
POD_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_BOT}"
# A pending pod whose Secret its create task recorded as made is checked this many
# SECRET_REPAIR_AFTERs after its creation (someone may have deleted the Secret since), not 1.
SECRET_RECHECK_FACTOR = 10
# How long a pod this controller deleted stays marked as such (keys.DELETED_POD): far longer
# than a watch lags behind the delete.
DELETED_POD_MARK_TTL = 900.0
# The two watched caches of pods, as (selector, what each keeps): the pass reads them, a create
# task asks them whether a name is free — one definition, so both name the same caches.
OUR_PODS = (POD_SELECTOR, observed_pod)
LEGACY_PODS = (LEGACY_POD_SELECTOR, observe_legacy_pod)


class PodKind:
    bot_kind = BotKind.LIVE
    component = MANAGED_BY_BOT
    object_kind = ("v1", "Pod")

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings

    # ------------------------------------------------------------------ reading
    def observe(self) -> Actual:
        ours = self.rt.read_objects("pods", *OUR_PODS)
        # The original runtime's pods, from a cache of their own that waits only for our
        # writes of them (after the cut-over it holds nothing and costs no request a pass).
        legacy, foreign = partition(self.rt.read_objects(
            "pods", *LEGACY_PODS, written_as=WATCHED_AS_PODS))
        return Actual(ours + legacy, foreign=tuple(foreign))

    def object_names(self, bot_id: BotId, planned: str | None) -> list[str]:
        legacy = legacy_pod_name(bot_id)
        return sorted({pod_name(bot_id)} | ({legacy} if legacy else set())
                      | ({planned} if planned else set()))

    def observe_one(self, bot_id: BotId, *, object_names: Sequence[str],
                    trust_cache: bool) -> Actual:
        # A bot to create whose names neither watched cache (ours, the original runtime's)
        # holds: no GET (one per create, beside its two writes, in a cold start).
        if trust_cache and all(self.rt.cache_lacks("pods", selector, keep, object_names)
                               for selector, keep in (OUR_PODS, LEGACY_PODS)):
            return Actual([], from_cache=True)
        # By name (GET), not by a label LIST: the API server filters every pod for a LIST,
        # which made a 10,000-bot cold start quadratic. Extra pods under other names are
        # found by the pass, which names them to the task.
        raw_pods = [raw for raw in map(self.rt.kube.get_pod, object_names) if raw is not None]
        objects, foreign = partition(
            observe_named(raw, bot_id, managed_by=MANAGED_BY_BOT, legacy=observe_legacy_pod)
            for raw in raw_pods)
        return Actual(objects, foreign=tuple(foreign))

    def extra_actions(self, observation: Observation, the_plan: Plan, *,
                      now: float) -> tuple[Action, ...]:
        return ()

    # ------------------------------------------------------------------ acting
    def act(self, action: Action, observation: Observation, steps: Steps) -> str:
        bot = observation.state.bots.get(action.bot_id)
        if action.kind is ActionKind.CREATE:
            assert bot is not None
            created = self._create(bot, from_cache=observation.from_cache)
            if (resumed := steps.resumes) is not None:  # the second half of a replace
                return _announce(created, resumed.action, resumed.reason, resumed.old, steps)
            return _announce(created, ActionKind.CREATE, action.reason, None, steps)
        pod = next((p for p in observation.objects if p.name == action.pod_name), None)
        if pod is None:  # the planner only names pods it observed
            raise TemporaryError(f"pod {action.pod_name} was not observed; planning again")
        # A takeover checks the code and signs the URLs BEFORE it deletes the original's pod:
        # a bot we cannot start keeps running as it was.
        urls = self._prepare(bot) if action.kind is ActionKind.TAKEOVER and bot else None
        self._delete(pod, steps.renew_lock)
        if action.kind is ActionKind.DELETE:
            origin = " of the0's original runtime" if pod.legacy else ""
            steps.event(_pod_ref(pod), "Deleted", f"Deleted bot pod{origin} ({action.reason})")
            return "deleted"
        if action.kind is ActionKind.RECREATE:
            steps.bump_backoff()  # its pod was broken: the next recreate waits longer
        # Never two pods: the new one only once the old one is gone. A task that would wait
        # long hands its thread back here; its continuation creates (StillTerminating).
        steps.await_gone([pod], resumes=Resume(action.kind, action.reason, pod.name))
        assert bot is not None
        steps.renew_lock()
        created = self._create(bot, urls=urls)
        return _announce(created, action.kind, action.reason, pod.name, steps)

    def _prepare(self, bot: Bot) -> SignedUrls:
        """What a create needs before it may touch anything: the code exists, URLs signed."""
        if not self.rt.code.code_exists(bot.code_path):
            raise InvalidBot(bot.id, "code_not_found",
                             "the code object custom.filePath does not exist in the bucket")
        return self._sign_urls(bot)

    def _create(self, bot: Bot, *, urls: SignedUrls | None = None,
                from_cache: bool = False) -> dict[str, Any]:
        s = self.settings
        # Before the pod: a failure here leaves nothing behind.
        urls = urls if urls is not None else self._prepare(bot)
        self._take_create_token()
        body = build_pod(bot, s.pod_template)
        try:
            created = self.rt.kube.create_pod(body)
        except Conflict:
            if from_cache:  # the cache said "no pod": it was behind, or the holder is not ours
                raise StaleObservation(f"pod {body['metadata']['name']} exists") from None
            # A concurrent task created it first (never a second pod: the name is fixed) —
            # or the name is held by a pod that is not this bot's (the original runtime's,
            # a stranger's): never adopted; the retry plans again from what it reads.
            name = body["metadata"]["name"]
            existing = self.rt.kube.get_pod(name)
            if existing is None:
                raise
            seen = observe_named(existing, bot.id, managed_by=MANAGED_BY_BOT,
                                 legacy=observe_legacy_pod)
            if not isinstance(seen, ObservedPod) or seen.legacy:
                raise TemporaryError(f"pod {name} exists and is not this bot's pod; "
                                     "planning again") from None
            created = existing
        self.rt.kube.create_owned_secret(build_config_secret(
            bot, pod_name=created["metadata"]["name"], pod_uid=created["metadata"]["uid"],
            namespace=s.NAMESPACE, urls=urls))
        self.rt.redis.mark_urls_signed(created["metadata"]["uid"], urls.signed_at)
        return created

    def _sign_urls(self, bot: Bot) -> SignedUrls:
        return self.rt.code.sign_urls(bot_id=bot.id, code_path=bot.code_path,
                                      ttl_seconds=self.settings.CODE_URL_TTL, now=self.rt.clock())

    def _take_create_token(self) -> None:
        rate = self.settings.MAX_CREATES_PER_SECOND
        while (wait := self.rt.redis.take_create_token(rate=rate, burst=max(1.0, rate))) > 0:
            time.sleep(min(wait, 1.0))

    def _delete(self, pod: ObservedPod, renew: Callable[[], None]) -> None:
        if pod.uid:  # the other workers' watches see it go too: not someone else's deletion
            self.rt.redis.mark_pod_deleted(pod.uid, ttl=DELETED_POD_MARK_TTL)
        if pod.legacy:
            # The original runtime's sidecar ships its own logs and state, and it has no
            # Secret of ours.
            self.rt.kube.delete_pod(pod.name, uid=pod.uid or None, watched_as=WATCHED_AS_PODS)
            return
        if self.settings.LOG_COLLECT_ON_DELETE:
            # The pod's log goes with it: ship the lines written since the last log pass.
            renew()
            LogCollector(self.rt).collect_before_delete(pod.name)
            renew()
        self.rt.kube.delete_pod(pod.name, uid=pod.uid or None)
        # The pod owns its secret, so GC would remove it; deleting now frees the name at once —
        # only while it is still this pod's (a stale delete must not take the successor's).
        if pod.uid:
            self.rt.kube.delete_owned_secret(secret_name(pod.name), owner_uid=pod.uid)

    def get_object(self, name: str) -> dict[str, Any] | None:
        return self.rt.kube.get_pod(name)

    # ------------------------------------------------------------------ status and upkeep
    def statuses(self, observation: Observation, *, now: float) -> dict[str, dict[str, Any]]:
        state = observation.state
        pods_by_bot: dict[BotId, list[ObservedPod]] = {}
        for pod in observation.objects:
            pods_by_bot.setdefault(pod.bot_id, []).append(pod)
        result: dict[str, dict[str, Any]] = {}
        for bot_id in state.known | pods_by_bot.keys():
            backoff = observation.backoff.get(bot_id)
            result[bot_id] = observed_status(
                bot_id=bot_id, namespace=self.settings.NAMESPACE,
                pod=_representative(pods_by_bot.get(bot_id, [])),
                want=state.desired.get(bot_id), invalid=state.invalid.get(bot_id),
                disabled=bot_id in state.disabled,
                backing_off=backoff is not None and backoff.not_before > now)
        return note_cutover(result, objects=observation.objects,
                            foreign=observation.foreign, desired=state.desired)

    def healthy(self, observation: Observation) -> Collection[BotId]:
        return {pod.bot_id for pod in observation.objects
                if pod.assessment.health is PodHealth.RUNNING and not pod.legacy}

    def upkeep(self, observation: Observation, *, now: float) -> int:
        """Re-signs the URLs in the Secret of running pods signed more than half a URL
        lifetime ago (at most URL_RESIGN_PER_PASS a pass). The kubelet updates the mounted
        files in place, so the sidecar's next upload uses the new URL; nothing restarts.
        Only a pod built from the current config is re-signed: any other is replaced soon."""
        s = self.settings
        candidates = {p.uid: p for p in observation.objects
                      if p.uid and not p.legacy
                      and p.assessment.health is not PodHealth.TERMINATING
                      and (want := observation.state.desired.get(p.bot_id)) is not None
                      and want.config_hash == p.config_hash}
        recorded = self.rt.redis.load_urls_signed([p.uid for p in observation.objects if p.uid])
        # One request each, on a server that may be loaded: bounded in time as statuses are.
        budget = time.monotonic() + s.RECONCILE_INTERVAL / 2
        done = self._repair_missing_secrets(candidates, recorded, observation, now=now,
                                            budget=budget)
        # No record yet: the pod's create task is still running (it records right after the
        # Secret), or an older controller made it. Its URLs were signed just before the pod
        # was created, so its creation time stands in.
        signed = {uid: recorded.get(uid) or pod.created_at for uid, pod in candidates.items()}
        stale = sorted((signed[uid], uid) for uid in candidates
                       if now - signed[uid] > s.CODE_URL_TTL / 2)
        for _signed_at, uid in stale[:max(0, s.URL_RESIGN_PER_PASS - done)]:
            if time.monotonic() > budget:
                break  # the oldest were first: the next pass goes on from here
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


    def _repair_missing_secrets(self, candidates: dict[str, ObservedPod],
                                recorded: Mapping[str, float], observation: Observation, *,
                                now: float, budget: float) -> int:
        """A pod whose Secret is missing — its create task was killed between the pod and the
        Secret, or someone deleted it — cannot start (the kubelet waits for the volume) or
        restart its bot (BOT_CONFIG is a secretKeyRef). The pods not running after
        SECRET_REPAIR_AFTER are checked (one GET each, at most URL_RESIGN_PER_PASS a pass,
        until `budget`) and a missing Secret is made again, owned by the pod; a running pod's
        comes back with its next re-signing at the latest. A pod whose Secret is recorded as
        made (`recorded`: its create task got that far) is checked only after
        SECRET_RECHECK_FACTOR times as long: in a 10,000-bot cold start thousands of pods wait
        minutes for a node, and checking 200 of them every pass made passes last 100-180 s."""
        s = self.settings

        def due(pod: ObservedPod) -> bool:
            after = s.SECRET_REPAIR_AFTER * (SECRET_RECHECK_FACTOR if pod.uid in recorded else 1)
            return bool(pod.created_at) and now - pod.created_at > after

        stuck = sorted((p for p in candidates.values()
                        if p.assessment.health is not PodHealth.RUNNING and due(p)),
                       key=lambda p: p.created_at)[:s.URL_RESIGN_PER_PASS]
        repaired = 0
        for pod in stuck:
            if time.monotonic() > budget:
                break
            name = secret_name(pod.name)
            try:
                if self.rt.kube.secret_exists(name):
                    continue
                bot = observation.state.bots[pod.bot_id]
                urls = self._sign_urls(bot)
                self.rt.kube.create_owned_secret(build_config_secret(
                    bot, pod_name=pod.name, pod_uid=pod.uid, namespace=s.NAMESPACE, urls=urls))
            except (InvalidBot, TemporaryError, PermanentError) as error:
                log.warning("bot %r: making its pod's missing Secret failed: %s", pod.bot_id,
                            error)
                continue
            self.rt.redis.mark_urls_signed(pod.uid, urls.signed_at)
            log.warning("bot %r: pod %s had no Secret %s; made it again", pod.bot_id, pod.name,
                        name)
            repaired += 1
        return repaired


def _representative(pods: Sequence[ObservedPod]) -> ObservedPod | None:
    """The pod a status should describe: a live one before a terminating one."""
    live = [p for p in pods if p.assessment.health is not PodHealth.TERMINATING]
    return min(live or pods, key=lambda p: p.name) if pods else None


def _announce(created: dict[str, Any], done: ActionKind, reason: str, old: str | None,
              steps: Steps) -> str:
    """The Event for a pod just created as `done` (create, or the second half of a replace,
    recreate or takeover), and the outcome the task reports."""
    if done is ActionKind.TAKEOVER:
        steps.event(_ref(created), "TookOver",
                    f"Took over from the0's original runtime (deleted its pod {old})")
        return "replaced"  # a takeover replaces the original's pod (counted as done)
    if done is ActionKind.CREATE:
        steps.event(_ref(created), "Created", f"Created pod for bot ({reason})")
        return "created"
    verb = "Replaced" if done is ActionKind.REPLACE else "Recreated"
    steps.event(_ref(created), verb, f"{verb} bot pod ({reason})")
    return verb.lower()


def _ref(pod: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": pod["metadata"]["name"], "uid": pod["metadata"].get("uid")}}


def _pod_ref(pod: ObservedPod) -> dict[str, Any]:
    return {"metadata": {"name": pod.name, "uid": pod.uid}}
