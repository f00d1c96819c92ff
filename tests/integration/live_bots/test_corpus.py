"""A corpus of awkward bot documents beside valid bots, against the real stack.

Malformed documents each get a per-bot "Invalid" status (with a reason code and last_error) and
no pod; documents without a usable id are only counted; odd but valid ids get exactly one pod
under a safe DNS name; every spelling of "disabled" means no pod. The valid bots beside them are
unaffected, no secret value reaches a log record, a status document or an event, and a second
pass over the same world does nothing.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.support.bots import bot_doc, run_pass, wait_for
from worker.core.naming import ANNOTATION_BOT_ID, LABEL_BOT_ID, label_value, pod_name
from worker.reconcile.controller import LiveBotController

SELECTOR = "managed-by=the0-bot-controller"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class Corpus:
    """Bot documents plus what the controller must make of each."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.secrets: list[str] = []
        self.invalid: dict[str, str] = {}     # id → expected reason code
        self.valid: list[str] = []            # ids that must get exactly one pod
        self.disabled: list[str] = []         # ids that must get no pod, phase Disabled
        self.warned: dict[str, str] = {}      # valid ids → the config key their warning names
        self.unidentifiable = 0               # documents without a usable id

    def secret(self, _hint: object = None) -> str:
        value = f"SECRET-corpus-{len(self.secrets):03d}-xq7"
        self.secrets.append(value)
        return value

    def base(self, bot_id: Any) -> dict[str, Any]:
        doc = bot_doc("placeholder")
        doc["id"] = bot_id
        doc["config"]["name"] = "corpus bot"
        doc["config"]["api_key"] = self.secret(bot_id)
        return doc

    def add(self, doc: dict[str, Any]) -> None:
        self.docs.append(doc)

    def bad(self, bot_id: str, reason: str, mutate: Callable[[dict[str, Any]], Any]) -> None:
        doc = self.base(bot_id)
        mutate(doc)
        self.add(doc)
        self.invalid[bot_id] = reason

    def odd(self, bot_id: str, mutate: Callable[[dict[str, Any]], Any] | None = None) -> None:
        doc = self.base(bot_id)
        if mutate:
            mutate(doc)
        self.add(doc)
        self.valid.append(bot_id)

    def warn(self, bot_id: str, key: str, mutate: Callable[[dict[str, Any]], Any]) -> None:
        """Runs, as in the0, with the default in place of what it asked for, and says so."""
        self.odd(bot_id, mutate)
        self.warned[bot_id] = key

    def off(self, bot_id: str, mutate: Callable[[dict[str, Any]], Any]) -> None:
        doc = self.base(bot_id)
        mutate(doc)
        self.add(doc)
        self.disabled.append(bot_id)

    def nameless(self, raw_id: Any, *, present: bool = True) -> None:
        doc = self.base(raw_id)
        if not present:
            del doc["id"]
        self.add(doc)
        self.unidentifiable += 1


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting the dotted `path` of a document (creating objects on the way)."""
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[last] = value
    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        del node[last]
    return mutate


def _both(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        for m in mutations:
            m(doc)
    return mutate


def build_corpus() -> Corpus:
    c = Corpus()

    # --- malformed: config ------------------------------------------------------------------
    c.bad("cfg-list", "invalid_config", lambda d: d.update(config=[c.secret(0), "x"]))
    c.bad("cfg-string", "invalid_config", lambda d: d.update(config=c.secret(0)))
    c.bad("cfg-none", "invalid_config", _set("config", None))
    c.bad("cfg-number", "invalid_config", _set("config", 42))
    c.bad("cfg-bool", "invalid_config", _set("config", True))
    c.bad("cfg-missing", "invalid_config", _drop("config"))
    c.bad("cfg-datetime-value", "invalid_config",
          _set("config.since", datetime.datetime(2024, 1, 2, 3, 4, 5)))
    # (NaN would be another, but FerretDB drops the connection on it.)
    c.bad("cfg-binary-value", "invalid_config", _set("config.blob", b"\x00\x01binary"))
    # --- malformed: custom ------------------------------------------------------------------
    c.bad("custom-missing", "missing_custom", _drop("custom"))
    c.bad("custom-string", "missing_custom", _set("custom", "bots/demo/v1.zip"))
    c.bad("custom-list", "missing_custom", _set("custom", [{"filePath": "bots/demo/v1.zip"}]))
    c.bad("custom-none", "missing_custom", _set("custom", None))
    c.bad("custom-version-object", "invalid_version", _set("custom.version", {"major": 1}))
    # --- malformed: runtime -----------------------------------------------------------------
    c.bad("rt-unknown", "unknown_runtime", _set("custom.config.runtime", "python2.7"))
    c.bad("rt-int", "unknown_runtime", _set("custom.config.runtime", 311))
    c.bad("rt-list", "unknown_runtime", _set("custom.config.runtime", ["python3.11"]))
    c.bad("rt-control-chars", "unknown_runtime",
          _set("custom.config.runtime", "python3.11\n\x1b[31mred"))
    c.bad("rt-case", "unknown_runtime", _set("custom.config.runtime", "Python3.11"))
    c.bad("rt-missing", "missing_runtime", _drop("custom.config.runtime"))
    c.bad("rt-empty", "missing_runtime", _set("custom.config.runtime", ""))
    # --- resources the bot cannot have: it runs anyway (as in the0), with a warning ------------
    c.warn("q-mem-lots", "memory_limit", _set("config.memory_limit", "lots"))
    c.warn("q-mem-negative", "memory_limit", _set("config.memory_limit", "-1Gi"))
    c.warn("q-mem-number", "memory_limit", _set("config.memory_limit", 1024))
    c.warn("q-mem-zero", "memory_limit", _set("config.memory_limit", "0"))
    c.warn("q-cpu-dots", "cpu_limit", _set("config.cpu_limit", "1.2.3"))
    c.warn("q-cpu-request-list", "cpu_request", _set("config.cpu_request", ["1"]))
    c.warn("q-mem-request-bool", "memory_request", _set("config.memory_request", True))
    c.warn("q-mem-unit-typo", "memory_limit", _set("config.memory_limit", "2GB"))
    c.warn("q-secret-as-quantity", "cpu_limit",
           lambda d: d["config"].update(cpu_limit=c.secret(0)))
    c.warn("q-mem-huge", "memory_limit", _set("config.memory_limit", "1Ei"))
    c.warn("q-mem-request-over-limit", "memory_request",
           _both(_set("config.memory_request", "1Gi"), _set("config.memory_limit", "256Mi")))
    c.warn("q-cpu-request-over-limit", "cpu_request",
           _both(_set("config.cpu_request", "900m"), _set("config.cpu_limit", "500m")))
    # --- too big to be an environment variable: never a pod that cannot start --------------
    c.bad("config-2mb", "config_too_large", _set("config.blob", "x" * 2_000_000))
    c.bad("config-31k-keys", "config_too_large",
          lambda d: d["config"].update({f"k{i:05d}": i * 1.5 for i in range(31_000)}))
    # --- malformed: code path and entrypoint ------------------------------------------------
    c.bad("path-dotdot", "unsafe_code_path", _set("custom.filePath", "../x.zip"))
    c.bad("path-absolute", "unsafe_code_path", _set("custom.filePath", "/etc/passwd"))
    c.bad("path-inner-dotdot", "unsafe_code_path", _set("custom.filePath", "a/../../b"))
    c.bad("path-backslash", "unsafe_code_path", _set("custom.filePath", "a\\b"))
    # Not "bots/x\x00.zip": the test database (FerretDB on PostgreSQL, whose jsonb cannot hold
    # U+0000) refuses to store it, while MongoDB stores it. The parser's refusal of a NUL in
    # the path is tested in tests/unit/core/test_bot.py ("filePath NUL").
    c.bad("path-control", "unsafe_code_path", _set("custom.filePath", "bots/x\x01.zip"))
    c.bad("path-empty", "missing_code_path", _set("custom.filePath", ""))
    c.bad("path-missing", "missing_code_path", _drop("custom.filePath"))
    c.bad("path-int", "missing_code_path", _set("custom.filePath", 7))
    c.bad("entry-dotdot", "invalid_entrypoint",
          _set("custom.config.entrypoints.bot", "../../etc/shadow"))
    c.bad("entry-absolute", "invalid_entrypoint", _set("custom.config.entrypoints.bot", "/bin/sh"))
    c.bad("entry-empty", "invalid_entrypoint", _set("custom.config.entrypoints.bot", ""))
    c.bad("entry-int", "invalid_entrypoint", _set("custom.config.entrypoints.bot", 5))
    # --- malformed: ids that are strings but unusable ---------------------------------------
    c.bad("ctl\x07bell", "invalid_id", lambda d: None)
    c.bad("line\nbreak", "invalid_id", lambda d: None)
    c.bad("esc\x1b[2Jclear", "invalid_id", lambda d: None)
    c.bad("z" * 254, "invalid_id", lambda d: None)
    # --- malformed: one id, several documents (neither is acted on) -------------------------
    c.bad("dupe", "duplicate_id", lambda d: None)
    c.add(c.base("dupe"))
    c.bad("dupe-one-disabled", "duplicate_id", lambda d: None)
    c.add({**c.base("dupe-one-disabled"), "enabled": False})
    # --- no usable id: counted, never acted on ----------------------------------------------
    c.nameless(17)
    c.nameless(None)
    c.nameless(["a", "b"])
    c.nameless("")
    c.nameless({"id": "nested"})
    c.nameless(3.5)
    c.nameless(None, present=False)

    # --- odd but valid ids ------------------------------------------------------------------
    c.odd("Demo_Two.x")
    c.odd("UPPERCASE")
    c.odd("Case")
    c.odd("case")                               # must not collide with "Case"
    # The collision pair: an author who chooses as id the victim's hashed name (without its
    # prefix) gets other names, never the victim's Pod or Secret.
    c.odd("Victim Bot")
    c.odd(pod_name("Victim Bot").removeprefix("bot-"))
    c.odd("a.b")
    c.odd("a_b")                                # must not collide with "a.b"
    c.odd("with spaces in it")
    c.odd("ünïcödé-bøt")
    c.odd("日本語ボット")
    c.odd("rocket-🚀")
    c.odd("slash/in/id")
    c.odd("___")
    c.odd("L" * 200)
    c.odd("mixed-" + "Ab_.9" * 38 + "end")      # 200 characters
    c.odd("x" * 63)                             # a label value of exactly 63 characters
    c.odd("n" * 59)                             # "bot-" + 59 = a pod name of exactly 63
    c.odd("0123-leading-digits")
    c.odd("-leading-dash")
    c.odd("trailing-dash-")
    c.odd("clx0abcdefghijklmnopqrstu")          # a cuid2-like id, the common case
    c.warn("odd-numeric-limit", "memory_limit", _set("config.memory_limit", 268435456))
    c.odd("odd-low-limit-only", _set("config.memory_limit", "64Mi"))
    c.odd("odd-padded-quantity", _set("config.cpu_limit", " 250m "))
    c.warn("odd-blank-quantity", "cpu_limit", _set("config.cpu_limit", "  "))
    c.odd("odd-enabled-true", _set("config.enabled", "true"))
    c.odd("odd-enabled-one", _set("enabled", 1))
    c.odd("odd-nodejs-default-entry", _both(_set("custom.config.runtime", "nodejs20"),
                                            _drop("custom.config.entrypoints")))
    c.odd("odd-numeric-version", _set("custom.version", 3))

    # --- disabled in any spelling -----------------------------------------------------------
    for where in ("enabled", "config.enabled"):
        tag = "top" if where == "enabled" else "cfg"
        for label, value in (("str-false", "false"), ("str-zero", "0"), ("upper", "FALSE"),
                             ("int-zero", 0), ("bool", False), ("padded", " False "),
                             ("float-zero", 0.0)):
            c.off(f"off-{tag}-{label}", _set(where, value))
    c.off("off-and-broken", _both(_set("enabled", "false"),
                                  _set("custom.config.runtime", "cobol")))
    return c


def _pods_by_bot(core: Any, namespace: str) -> dict[str, list[Any]]:
    by_bot: dict[str, list[Any]] = {}
    for pod in core.list_namespaced_pod(namespace, label_selector=SELECTOR).items:
        by_bot.setdefault(pod.metadata.annotations[ANNOTATION_BOT_ID], []).append(pod)
    return by_bot


def _no_secret_in(text: str, secrets: list[str], where: str) -> None:
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"secret values {leaked} found in {where}"


@pytest.mark.slow(seconds=20)
def test_a_corpus_of_awkward_documents_affects_only_itself(
        controller: LiveBotController, bots: Any, statuses: Any, core: Any,
        restricted_namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="the0")
    corpus = build_corpus()
    awkward = len(corpus.docs)
    assert awkward >= 40
    normal = [bot_doc(f"ok-{i}") for i in range(5)]
    corpus.secrets += [d["config"]["api_key"] for d in normal]
    bots.insert_many([copy.deepcopy(d) for d in corpus.docs + normal])
    wanted = corpus.valid + [d["id"] for d in normal]

    report, outcomes = run_pass(controller)

    # Counted, never guessed at.
    assert report.unidentifiable == corpus.unidentifiable
    assert report.invalid == len(corpus.invalid)
    assert report.counts["create"] == len(wanted)
    assert sorted(outcomes) == ["created"] * len(wanted)

    # Exactly one pod per valid bot (odd ids included), none for anything else.
    by_bot = _pods_by_bot(core, restricted_namespace)
    assert sorted(by_bot) == sorted(wanted)
    names = set()
    for bot_id in wanted:
        (pod,) = by_bot[bot_id]
        name = pod.metadata.name
        assert name == pod_name(bot_id)
        assert len(name) <= 63 and DNS_LABEL.match(name), name
        label = pod.metadata.labels[LABEL_BOT_ID]
        assert label == label_value(bot_id) and len(label) <= 63 and LABEL_VALUE.match(label)
        names.add(name)
    assert len(names) == len(wanted)  # no two ids share a pod name
    assert by_bot["n" * 59][0].metadata.name == "bot-" + "n" * 59  # readable when it fits
    assert by_bot["case"][0].metadata.name == "bot-case"
    assert by_bot["Case"][0].metadata.name != "bot-case"
    attacker = pod_name("Victim Bot").removeprefix("bot-")
    assert by_bot[attacker][0].metadata.name != by_bot["Victim Bot"][0].metadata.name
    assert by_bot["Victim Bot"][0].metadata.annotations[ANNOTATION_BOT_ID] == "Victim Bot"

    # Status: one document per identifiable bot, each saying what it is. A pass writes
    # statuses for half an interval (1 s here), errors first, and leaves the rest to the next:
    # on a loaded machine the first pass (27 s) once wrote only the invalid bots' ones.
    for _ in range(5):
        docs = {s["id"]: s for s in statuses.find({}, {"_id": False})}
        if all(bot_id in docs for bot_id in wanted):
            break
        run_pass(controller)
    assert all(isinstance(bot_id, str) and bot_id for bot_id in docs)
    for bot_id, reason in corpus.invalid.items():
        status = docs.get(bot_id)
        assert status is not None, f"no status for invalid bot {bot_id!r}"
        assert status["phase"] == "Invalid", (bot_id, status)
        assert status["reason"] == reason, (bot_id, status)
        assert status["last_error"] and reason in status["last_error"], (bot_id, status)
        assert status["observed_config_hash"] == ""
    for bot_id in corpus.disabled:
        assert docs[bot_id]["phase"] == "Disabled", (bot_id, docs[bot_id])
        assert docs[bot_id]["object_name"] == ""
    for bot_id in wanted:
        assert docs[bot_id]["object_name"] == pod_name(bot_id)
        assert docs[bot_id]["phase"] in {"Creating", "Pending", "Running"}, docs[bot_id]
        warnings = docs[bot_id].get("warnings", [])
        if bot_id in corpus.warned:
            assert [w["reason"] for w in warnings] == ["resources_ignored"], docs[bot_id]
            assert f"config.{corpus.warned[bot_id]} " in warnings[0]["message"], docs[bot_id]
        else:
            assert warnings == [], docs[bot_id]
    # The pod got what the0 would have given it: the default, the ceiling or the limit.
    resources = {bot_id: by_bot[bot_id][0].spec.containers[0].resources for bot_id in wanted}
    assert resources["q-mem-number"].limits["memory"] == "512Mi"
    assert resources["q-mem-unit-typo"].limits["memory"] == "512Mi"
    assert resources["q-mem-huge"].limits["memory"] == "4Gi"
    assert resources["q-cpu-request-over-limit"].requests["cpu"] == "500m"
    assert set(docs) == set(corpus.invalid) | set(corpus.disabled) | set(wanted)

    # No secret value in any status document, log record, event or pod spec.
    _no_secret_in(json.dumps(list(docs.values()), default=str), corpus.secrets, "bot_status")
    assert caplog.records, "expected the controller to log at DEBUG/INFO"
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        _no_secret_in(text, corpus.secrets, f"log record of {record.name}")
    _no_secret_in(caplog.text, corpus.secrets, "captured log text")
    assert controller.rt.kube.flush_events(), "events still queued after 5 s"
    events = core.list_namespaced_event(restricted_namespace).items
    _no_secret_in(" ".join(str(e.message) for e in events), corpus.secrets, "events")
    serialise = client.ApiClient().sanitize_for_serialization
    _no_secret_in(json.dumps([serialise(p) for ps in by_bot.values() for p in ps]),
                  corpus.secrets, "pod specs")

    # Stable: once the pods run, a second pass does nothing and a third writes nothing.
    uids = {bot_id: ps[0].metadata.uid for bot_id, ps in by_bot.items()}
    wait_for(lambda: all(p.status.phase == "Running" for ps in _pods_by_bot(
        core, restricted_namespace).values() for p in ps), "pods Running")
    report, outcomes = run_pass(controller)
    assert outcomes == [] and sum(report.counts.values()) == 0, report.summary()
    assert report.invalid == len(corpus.invalid)
    assert report.unidentifiable == corpus.unidentifiable
    report, outcomes = run_pass(controller)
    assert outcomes == [] and report.status_writes == 0, report.summary()
    after = _pods_by_bot(core, restricted_namespace)
    assert {bot_id: ps[0].metadata.uid for bot_id, ps in after.items()} == uids
    assert all(len(ps) == 1 for ps in after.values())
    for bot_id in corpus.invalid:
        assert statuses.find_one({"id": bot_id})["phase"] == "Invalid"
