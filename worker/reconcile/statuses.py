"""Recording what was observed and done: status documents (written by passes) and task outcomes.

Status documents are written only by passes, which see every object as it is after the tasks'
actions, and bound how much they write. A task records its outcome in Redis (the error, or ""
for success) and marks its bot's status stale: the next pass rewrites it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from worker.core.bot import BotKind
from worker.core.events import PHASE_REFUSED
from worker.core.status import PHASE_INVALID, diff_statuses, fingerprint
from worker.core.text import iso
from worker.runtime import Runtime

log = logging.getLogger("the0.reconcile")
STALE_FINGERPRINT = "stale"
# Status documents written between two checks of the pass's time budget (and memo saves):
# small, because each is one write and a loaded database may take 50 ms for one (measured on
# FerretDB during a 10,000-bot cold start, when 250 a batch made passes last 50-90 s).
STATUS_BATCH = 25


def record_outcome(rt: Runtime, kind: BotKind, bot_id: str, *, last_error: str | None) -> None:
    """A task's outcome: its error ("" clears it; None leaves it) and a stale status mark."""
    if last_error is not None:
        rt.redis.set_last_error(kind.value, bot_id, last_error)
    # Mark, not forget: the memo is also the index of status documents that exist.
    rt.redis.save_status_fingerprints(kind.value, {bot_id: STALE_FINGERPRINT})


def stored_fingerprints(rt: Runtime, kind: BotKind, memo: dict[str, str],
                        complete: bool) -> dict[str, str]:
    """The memo, rebuilt from the status documents themselves when it is not marked complete:
    Redis lost it (restarted without persistence) or none was ever built — else every status
    would look changed (10,000 rewrites at STATUS_WRITES_PER_PASS a pass: a changed bot's
    status stale for 80 s after a Redis restart at 10,000 bots) and the statuses of bots
    deleted meanwhile would never be removed. Called at the record step, after the pass has
    sent its tasks: a rebuild reads every status document, and the first pass after Redis
    came back is the one with a backlog to send (read beside the bots, it made that pass's
    read 9 s instead of ~5 in a chaos run). Marks in `memo` (tasks that ran before the pass
    read it) are kept: their bots are rewritten, so a memo that is merely not empty is not a
    memo."""
    if complete:
        return memo
    # A Refused status (the events consumer's, for a bot whose create it refused) is not the
    # pass's: never in the memo, so a pass never removes it as "gone".
    documents = [doc for doc in rt.store(kind).read_statuses()
                 if isinstance(doc.get("id"), str) and doc.get("phase") != PHASE_REFUSED]
    rebuilt = {doc["id"]: stored_fingerprint(doc) for doc in documents}
    # The tasks' last errors went with the same Redis: without them the next write of each
    # such status would clear an error nothing has fixed.
    errors = {doc["id"]: doc["last_error"] for doc in documents
              if isinstance(doc.get("last_error"), str) and doc["last_error"]}
    rt.redis.restore_last_errors(kind.value, errors)
    log.info("%s status memo rebuilt from %d status documents (%d marks kept, %d last errors "
             "restored)", kind.value, len(rebuilt), len(memo), len(errors))
    rebuilt.update(memo)
    rt.redis.save_status_fingerprints(kind.value, rebuilt, complete=True)
    return rebuilt


def stored_fingerprint(doc: Mapping[str, Any]) -> str:
    """A stored document's fingerprint; one that is not plain JSON (someone else's edit: a
    date, an ObjectId) matches nothing the pass computes, so it is rewritten — it must not
    stop the pass."""
    try:
        return fingerprint(doc)
    except (TypeError, ValueError):
        return STALE_FINGERPRINT


def record_statuses(rt: Runtime, kind: BotKind, current: Mapping[str, dict[str, Any]], *,
                    stored: Mapping[str, str], now: float) -> int:
    """Writes the statuses that changed since the last write (`stored`: the memo, as the pass
    read it), errors first, bounded in count (STATUS_WRITES_PER_PASS) and in time (half an
    interval): a pass must end well before its lock expires, and what is left is written by
    the next pass (the memo records only what was really written). Statuses of bots that are
    gone are deleted. A task's stale mark made after the pass read the memo is either kept
    (nothing written for its bot) or replaced by what was written: the next pass compares
    with what the document really holds either way."""
    settings = rt.settings
    store = rt.store(kind)
    diff = diff_statuses(current, stored=stored,
                         last_errors=rt.redis.load_last_errors(kind.value), updated_at=iso(now))
    budget = time.monotonic() + settings.RECONCILE_INTERVAL / 2
    limit = min(len(diff.changed), settings.STATUS_WRITES_PER_PASS)
    writes = 0
    for start in range(0, limit, STATUS_BATCH):
        if time.monotonic() > budget:
            break
        batch = diff.changed[start:min(start + STATUS_BATCH, limit)]
        writes += store.write_statuses(batch)
        rt.redis.save_status_fingerprints(
            kind.value, {doc["id"]: diff.fingerprints[doc["id"]] for doc in batch})
    for doc in diff.changed:
        if doc["phase"] == PHASE_INVALID:  # said once, when it becomes invalid or changes
            log.warning("%s bot %r invalid: %s", kind.value, doc["id"], doc["message"])
        for warning in doc.get("warnings", ()):  # likewise
            log.warning("%s bot %r: %s (%s)", kind.value, doc["id"], warning["message"],
                        warning["reason"])
    writes += store.delete_statuses(diff.gone)
    rt.redis.forget_status_fingerprints(kind.value, diff.gone)
    rt.redis.forget_last_errors(kind.value, diff.gone)
    return writes
