"""BOT_CONFIG byte-identical to the0's Go runtime, against Go itself.

A seeded corpus of config documents, each value carrying its BSON type, goes through
tools/gojson-oracle (built by `make stack-build`): it decodes them into the Go types the0's
Mongo decoding gives (float64, int32, int64, string, maps, []interface{}) and prints
`json.Marshal` of each, as the0's pod generator does. Every line must equal what we write:
`go_json` and the pod Secret's BOT_CONFIG. No stack servers are needed; a missing oracle is a
failure, never a skip.
"""

from __future__ import annotations

import base64
import json
import math
import random
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tools.stack.paths import gojson_oracle
from worker.core.bot import Bot, BotKind, parse_bot
from worker.core.errors import InvalidBot
from worker.core.gojson import go_json
from worker.core.podspec import SECRET_KEY_CONFIG, SignedUrls, build_config_secret

SEED = 14
DOCUMENTS = 5_000
REFUSED_DOCUMENTS = 40  # NaN / infinities somewhere inside: Go refuses, so must we
DEEP_DOCUMENTS = 60  # nested up to 100 levels (MongoDB's limit)
SHOWN_DIFFERENCES = 5


@dataclass(frozen=True)
class Typed:
    """One value twice: as Python holds it (what PyMongo decodes) and as the oracle's typed
    wire JSON (what BSON type it had)."""

    value: Any
    wire: Any


def _double(number: float) -> Typed:
    # Hex is exact: subnormals and -0.0 arrive in Go bit for bit.
    return Typed(number, {"double": number.hex()})


def _string(text: str) -> Typed:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # invalid bytes (surrogateescape): Go gets the raw bytes
        raw = text.encode("utf-8", "surrogateescape")
        return Typed(text, {"bytes": base64.b64encode(raw).decode()})
    return Typed(text, text)


def _document(pairs: list[tuple[str, Typed]]) -> Typed:
    return Typed({key: item.value for key, item in pairs},
                 {"document": [[_string(key).wire, item.wire] for key, item in pairs]})


def _array(items: list[Typed]) -> Typed:
    return Typed([item.value for item in items], {"array": [item.wire for item in items]})


INTEGRAL_DOUBLES = [0.0, -0.0, 1.0, 5.0, -3.0, 100.0, 1e6, 123456789.0, 2.0**31, 2.0**53,
                    2.0**53 + 2, 2.0**63, 1e15, 1e16, 1e17, 1e20, 1e21, 1e22, 1e23, 1e100]
EDGE_DOUBLES = [0.1, 0.2, 0.3, 1 / 3, 2 / 3, 19.99, 0.015, 1e-5, 1e-6, 1e-7, 1.5e-7,
                math.nextafter(1e-6, 0.0), math.nextafter(1e-6, 1.0),
                math.nextafter(1e21, 0.0), math.nextafter(1e21, math.inf),
                5e-324, 1e-323, 2.2250738585072014e-308, 2.2250738585072009e-308,
                1.7976931348623157e308, 4.35e-10, 9.999999999999999e20, 123456789012.125]
EDGE_INTEGERS = [0, 1, -1, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63)]
EDGE_STRINGS = ["", "<script>&amp;</script>", "\u2028\u2029", '"\\/', "\b\f\n\r\t\x00\x1f\x7f",
                "é", "€", "\uffff", "\ufeff", "\U0001f600", "\U0010ffff", "a\u0301",
                "$schema", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "日本語",
                b"\xff\xfe".decode("utf-8", "surrogateescape"),
                b"ok\xf0\x9f\x98".decode("utf-8", "surrogateescape"),
                b"\xed\xa0\x80".decode("utf-8", "surrogateescape")]
# What a user may type, weighted towards what needs care (escapes, astral, non-ASCII).
ALPHABET = ("abcXYZ019 _-.$/<>&\"\\\b\f\n\r\t\x00\x01\x1f\x7féüßΩЖ中文\u2028\u2029\ufffd"
            "\U0001f600\U0001f4c8\U00010000\U0010ffff")


class Corpus:
    """The seeded generator: every kind of value the0 may decode, in random documents."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def double(self) -> Typed:
        rng = self.rng
        kind = rng.randrange(8)
        if kind == 0:
            number = rng.choice(INTEGRAL_DOUBLES)
        elif kind == 1:
            number = rng.choice(EDGE_DOUBLES)
        elif kind == 2:  # any finite bit pattern: subnormals, huge, tiny, every exponent
            number = math.inf
            while not math.isfinite(number):
                number = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        elif kind == 3:  # a price or amount with a few decimals
            number = round(rng.uniform(-1e5, 1e5), rng.randrange(0, 9))
        elif kind == 4:  # an integral double of any size
            number = float(rng.randrange(-(2**70), 2**70) >> rng.randrange(0, 70))
        elif kind == 5:  # a mantissa near an exponent cutoff
            number = rng.uniform(1, 10) * 10.0 ** rng.choice([-8, -7, -6, -5, 19, 20, 21, 22])
        elif kind == 6:
            number = math.ldexp(rng.random(), rng.randrange(-1074, 1024))
        else:
            number = rng.uniform(-1, 1)
        return _double(-number if rng.random() < 0.3 else number)

    def integer(self) -> Typed:
        rng = self.rng
        if rng.random() < 0.5:
            number = rng.choice(EDGE_INTEGERS) if rng.random() < 0.3 else rng.randrange(-1000, 1000)
            if -(2**31) <= number < 2**31:
                return Typed(number, {"int32": str(number)})
        else:
            number = rng.randrange(-(2**63), 2**63) >> rng.randrange(0, 63)
        return Typed(number, {"int64": str(number)})

    def text(self, longest: int = 12) -> str:
        rng = self.rng
        if rng.random() < 0.1:
            return rng.choice(EDGE_STRINGS)
        if rng.random() < 0.08:  # random bytes: invalid UTF-8 somewhere, as Go may hold it
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, longest)))
            return raw.decode("utf-8", "surrogateescape")
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, longest)))

    def scalar(self) -> Typed:
        rng = self.rng
        kind = rng.randrange(10)
        if kind < 4:
            return self.double()
        if kind < 6:
            return self.integer()
        if kind < 8:
            return _string(self.text(24))
        return Typed(*[(True, True), (False, False), (None, None)][rng.randrange(3)])

    def value(self, depth: int) -> Typed:
        roll = self.rng.random()
        if depth <= 0 or roll < 0.6:
            return self.scalar()
        if roll < 0.8:
            return _array([self.value(depth - 1) for _ in range(self.rng.randrange(0, 5))])
        return self.document(depth - 1)

    def document(self, depth: int) -> Typed:
        width = self.rng.randrange(0, 7)
        keys = {self.key() for _ in range(width)}
        return _document([(key, self.value(depth)) for key in keys])

    def key(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:  # sorting: shared prefixes, case, "$", non-ASCII, astral
            return rng.choice(["a", "aa", "a0", "A", "B", "_", "$schema", "é", "e", "z",
                               "\uffff", "\U00010000", "中", "amount", "Amount", "<"])
        return self.text(10)

    def deep(self, depth: int) -> Typed:
        inner = self.scalar()
        for level in range(depth - 1):
            inner = (_array([inner, self.scalar()]) if level % 3 == 2
                     else _document([(self.key(), inner), ("sibling", self.scalar())]))
        return _document([("deep", inner)])

    def refused(self) -> Typed:
        bad = _double(self.rng.choice([math.nan, math.inf, -math.inf]))
        return _document([("ok", self.double()), ("nested", _array([self.scalar(), bad]))])

    def documents(self) -> list[Typed]:
        corpus = [_document([("x", _double(number))]) for number in INTEGRAL_DOUBLES + EDGE_DOUBLES]
        corpus += [_document([("s", _string(text))]) for text in EDGE_STRINGS]
        corpus += [_document([]), _document([("a", _array([])), ("d", _document([]))])]
        corpus += [self.deep(self.rng.randrange(90, 101)) for _ in range(DEEP_DOCUMENTS)]
        while len(corpus) < DOCUMENTS:
            corpus.append(self.document(self.rng.randrange(0, 6)))
        corpus += [self.refused() for _ in range(REFUSED_DOCUMENTS)]
        self.rng.shuffle(corpus)
        return corpus


@dataclass(frozen=True)
class OracleRun:
    corpus: list[Typed]
    lines: list[str]
    seconds: float


@pytest.fixture(scope="module")
def oracle_run() -> OracleRun:
    binary = gojson_oracle()
    if not binary.exists():
        pytest.fail(f"the Go oracle {binary} is missing: run `make stack-build` "
                    "(or tools/stack/build.sh gojson-oracle)")
    corpus = Corpus(SEED).documents()
    wire = "".join(json.dumps(document.wire) + "\n" for document in corpus).encode("ascii")
    started = time.monotonic()
    result = subprocess.run([str(binary)], input=wire, capture_output=True, timeout=120,
                            check=False)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    lines = result.stdout.decode("utf-8").split("\n")
    assert lines.pop() == "", "the oracle's output does not end with a newline"
    assert len(lines) == len(corpus), f"{len(lines)} lines for {len(corpus)} documents"
    return OracleRun(corpus, lines, seconds)


def _ours_or_refusal(write: Callable[[Any], str], value: Any) -> str:
    try:
        return write(value)
    except ValueError as error:
        return f"!refused: {error}"


def _assert_all_equal(run: OracleRun, write: Callable[[Any], str], what: str) -> None:
    differences = []
    for number, (document, go_line) in enumerate(zip(run.corpus, run.lines, strict=True), 1):
        ours = _ours_or_refusal(write, document.value)
        go_refused, we_refused = go_line.startswith("!"), ours.startswith("!")
        if (go_refused, we_refused) == (True, True):
            continue
        if ours != go_line:
            differences.append(f"document {number}: {document.value!r:.300}\n"
                               f"  Go:   {go_line[:300]}\n  {what}: {ours[:300]}")
    assert not differences, (
        f"{len(differences)} of {len(run.corpus)} documents differ from Go's json.Marshal; "
        "the first ones:\n" + "\n".join(differences[:SHOWN_DIFFERENCES]))


def test_the_corpus_covers_what_the0_decodes(oracle_run: OracleRun) -> None:
    assert len(oracle_run.corpus) >= DOCUMENTS
    refused = sum(line.startswith("!") for line in oracle_run.lines)
    assert refused == REFUSED_DOCUMENTS
    print(f"\n{len(oracle_run.corpus)} documents through the Go oracle in "
          f"{oracle_run.seconds:.2f} s ({refused} refused by Go)")


def test_go_json_writes_what_go_marshal_writes(oracle_run: OracleRun) -> None:
    _assert_all_equal(oracle_run, go_json, "ours")


TEMPLATE_DOC = {
    "id": "gojsonoracle0000000000000",
    "config": {},
    "custom": {"version": "1.0.0", "filePath": "bots/x.zip",
               "config": {"runtime": "python3.11", "entrypoints": {"bot": "main.py"}}},
}
URLS = SignedUrls(code="https://c", state_get="https://g", state_put="https://p", signed_at=0.0)


def _pod_secret_bot_config(config: dict[str, Any]) -> str:
    try:
        bot: Bot = parse_bot({**TEMPLATE_DOC, "config": config}, kind=BotKind.LIVE)
    except InvalidBot as refused:  # the same refusal Go's Marshal makes, one step earlier
        raise ValueError(refused.reason) from None
    secret = build_config_secret(bot, pod_name="bot-x", pod_uid="uid", namespace="the0",
                                 urls=URLS)
    text: str = secret["stringData"][SECRET_KEY_CONFIG]
    return text


def test_the_pod_secret_holds_what_the0_writes_as_bot_config(oracle_run: OracleRun) -> None:
    _assert_all_equal(oracle_run, _pod_secret_bot_config, "pod Secret")
