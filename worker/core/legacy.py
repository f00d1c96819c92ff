"""Objects of the0's original Go runtime, recognised at cut-over. PURE: no I/O.

Operators swap this controller in for the0's own runtime on a live installation, so that
runtime's pods and CronJobs are still in the namespace. How it makes them (the0's
runtime/internal/k8s: podgen/pod_generator.go, controller/botschedule_controller.go):

- a live bot: Pod `bot-<id>`, labels the0.dev/bot-id=<id>, the0.dev/custom-bot-id,
  the0.dev/custom-bot-version, the0.dev/runtime, the0.dev/managed-by=<its controller name>
  (default the0-bot-controller); annotation the0.dev/config-hash (a hash of its own);
- a scheduled bot: CronJob `schedule-<id>` cut to 52 characters and right-stripped of '-',
  labels the0.dev/schedule-id=<id>, the0.dev/custom-bot-id, the0.dev/runtime,
  the0.dev/managed-by=the0-schedule-controller. Its Jobs' pods carry the0.dev/schedule-id and
  the0.dev/bot-id too, but they are owned by a Job: never live-bot pods.

Ours use other keys (`managed-by`, `bot-id`, `app`, annotation the0.dev/bot-id: naming.py), so
the two never mix, although a valid id gets the SAME names from both (`bot-<id>`,
`schedule-<id>`). An object is the original's object of bot <id> only when it carries those
labels AND its name is exactly the one the original gives <id>. Anything else that carries
them, or holds the name of a bot without being that bot's, is a `ForeignObject`: reported,
never adopted, updated or deleted. The planner turns an original object into a TAKEOVER
(enabled bot) or a DELETE (disabled or removed bot).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from worker.core.bot import BotId
from worker.core.naming import LABEL_MANAGED_BY as OUR_MANAGED_BY
from worker.core.planner import DesiredBot, ForeignObject, ObservedPod, observed_pod
from worker.core.podstatus import assess_pod
from worker.core.status import PHASE_INVALID

LABEL_MANAGED_BY = "the0.dev/managed-by"
LABEL_BOT_ID = "the0.dev/bot-id"
LABEL_SCHEDULE_ID = "the0.dev/schedule-id"
LEGACY_POD_PREFIX = "bot-"
LEGACY_CRONJOB_PREFIX = "schedule-"
LEGACY_MAX_CRONJOB_NAME = 52

# The original runtime's objects, read by a pass (through a watched cache of their own). Job
# pods (they carry the schedule id) and ours are left out by the API server already; the
# recognisers below check again.
POD_SELECTOR = f"{LABEL_MANAGED_BY},{LABEL_BOT_ID},!{LABEL_SCHEDULE_ID},!{OUR_MANAGED_BY}"
CRONJOB_SELECTOR = f"{LABEL_MANAGED_BY},{LABEL_SCHEDULE_ID},!{OUR_MANAGED_BY}"
# What our writes of the original's objects are remembered as (KubeClient.written_version):
# their cache waits for these writes only — it never sees ours, which a wait on "pods" would
# expect.
WATCHED_AS_PODS = "legacy-pods"
WATCHED_AS_CRONJOBS = "legacy-cronjobs"

REASON_LEGACY = "LegacyRuntime"
REASON_NAME_TAKEN = "NameTaken"

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")

Json = Mapping[str, Any]
Seen = ObservedPod | ForeignObject
Recognise = Callable[[Json], Seen | None]


def legacy_pod_name(bot_id: str) -> str | None:
    """The original's pod name for a live bot, `bot-<id>`; None when the API server would have
    refused that pod (its id is no label value or the name no DNS subdomain), so none exists."""
    if not _is_label_value(bot_id):
        return None
    name = LEGACY_POD_PREFIX + bot_id
    return name if len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) else None


def legacy_cronjob_name(bot_id: str) -> str | None:
    """The original's CronJob name, `schedule-<id>` cut to 52 characters and right-stripped of
    '-' (Go slices bytes; a label value is ASCII, so characters are bytes here); None as above."""
    if not _is_label_value(bot_id):
        return None
    name = (LEGACY_CRONJOB_PREFIX + bot_id)[:LEGACY_MAX_CRONJOB_NAME].rstrip("-")
    return name if _DNS_SUBDOMAIN.fullmatch(name) else None


def observe_legacy_pod(raw: Json) -> Seen | None:
    """A pod of the original's live bots → its planner view (legacy=True), or a ForeignObject
    when its name is not the one its labelled id gets; None when it is not one at all (no
    original labels, ours, or a Job's pod)."""
    metadata = _mapping(raw.get("metadata"))
    labels = _mapping(metadata.get("labels"))
    if not _is_original(labels) or LABEL_SCHEDULE_ID in labels or _owned_by_job(metadata):
        return None
    return _recognise(raw, labels.get(LABEL_BOT_ID), legacy_pod_name)


def observe_legacy_cronjob(raw: Json) -> Seen | None:
    """A CronJob of the original's scheduled bots → as `observe_legacy_pod`."""
    labels = _mapping(_mapping(raw.get("metadata")).get("labels"))
    if not _is_original(labels):
        return None
    return _recognise(raw, labels.get(LABEL_SCHEDULE_ID), legacy_cronjob_name)


def observe_named(raw: Json, bot_id: BotId, *, managed_by: str, legacy: Recognise) -> Seen:
    """An object a converge read BY NAME for `bot_id` (its own name, or the original's name
    for it): the bot's object, ours or the original's, else a ForeignObject that holds the
    name. A GET of `bot-<id>` can return anything: an original pod, another bot's, a stranger's.
    `managed_by`: our label value for this kind; `legacy`: the original's recogniser."""
    labels = _mapping(_mapping(raw.get("metadata")).get("labels"))
    seen: Seen | None = observed_pod(raw) if labels.get(OUR_MANAGED_BY) == managed_by else None
    if seen is None:
        seen = legacy(raw)
    if isinstance(seen, ObservedPod) and seen.bot_id == bot_id:
        return seen
    if isinstance(seen, ForeignObject):
        return seen
    name, uid = _name_uid(raw)
    if seen is None:
        return ForeignObject(name=name, claimed_id="", uid=uid,
                             why="neither ours nor the0's original runtime's")
    return ForeignObject(name=name, claimed_id=seen.bot_id, uid=uid,
                         why=f"it is bot {seen.bot_id!r}'s")


def partition(seen: Iterable[Seen | None]) -> tuple[list[ObservedPod], list[ForeignObject]]:
    """Recognised objects → (the bots' objects, foreign objects); None dropped."""
    objects: list[ObservedPod] = []
    foreign: list[ForeignObject] = []
    for item in seen:
        if isinstance(item, ObservedPod):
            objects.append(item)
        elif isinstance(item, ForeignObject):
            foreign.append(item)
    return objects, foreign


def note_cutover(statuses: dict[str, dict[str, Any]], *, objects: Iterable[ObservedPod],
                 foreign: Iterable[ForeignObject], desired: Mapping[BotId, DesiredBot]
                 ) -> dict[str, dict[str, Any]]:
    """Sets reason and message of the status documents (as `observed_status` built them) of
    the bots the cut-over concerns: one with an object of the original runtime (replaced or
    deleted next), and one whose object name an object that is not its own holds (nothing is
    created; an operator must look). An invalid bot's status keeps saying why it is invalid."""
    notes: dict[BotId, tuple[str, str]] = {}
    holders: dict[str, str] = {obj.name: obj.why for obj in foreign}
    owners: dict[str, BotId] = {}
    for obj in objects:
        owners[obj.name] = obj.bot_id
        if obj.legacy:
            notes[obj.bot_id] = (REASON_LEGACY, f"{obj.name} was made by the0's original "
                                                "runtime; this controller replaces or deletes it")
    for bot_id, want in desired.items():
        owner = owners.get(want.pod_name, bot_id)
        why = holders.get(want.pod_name) or (f"it is bot {owner!r}'s" if owner != bot_id else "")
        if why:
            notes[bot_id] = (REASON_NAME_TAKEN, f"{want.pod_name} is held by an object that is "
                                                f"not this bot's ({why}); nothing is created "
                                                "until it is gone")
    for bot_id, (reason, message) in notes.items():
        doc = statuses.get(bot_id)
        if doc is not None and doc.get("phase") != PHASE_INVALID:
            doc.update(reason=reason, message=message)
    return statuses


def _recognise(raw: Json, claimed: object, name_of: Callable[[str], str | None]) -> Seen | None:
    name, uid = _name_uid(raw)
    if not name:
        return None
    claimed_id = claimed if isinstance(claimed, str) else ""
    if claimed_id and name == name_of(claimed_id):
        return ObservedPod(name=name, bot_id=BotId(claimed_id), config_hash="",
                           assessment=assess_pod(raw), uid=uid, legacy=True)
    return ForeignObject(name=name, claimed_id=claimed_id, uid=uid,
                         why="its name is not the one the0's original runtime gives its "
                             f"labelled id {claimed_id!r}")


def _is_original(labels: Mapping[str, Any]) -> bool:
    value = labels.get(LABEL_MANAGED_BY)
    return isinstance(value, str) and bool(value) and OUR_MANAGED_BY not in labels


def _owned_by_job(metadata: Mapping[str, Any]) -> bool:
    owners = metadata.get("ownerReferences")
    return isinstance(owners, list) and any(
        isinstance(owner, Mapping) and owner.get("kind") == "Job" for owner in owners)


def _name_uid(raw: Json) -> tuple[str, str]:
    metadata = _mapping(raw.get("metadata"))
    name, uid = metadata.get("name"), metadata.get("uid")
    return (name if isinstance(name, str) else "", uid if isinstance(uid, str) else "")


def _is_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.fullmatch(value) is not None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
