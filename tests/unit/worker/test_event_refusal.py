"""worker.adapters.mongo.refusal: which failed event writes are the document's fault (refused,
never retried) and which are the server's (temporary, retried). The exceptions are the ones
pymongo raises for the answers recorded from the servers (docs/architecture.md, "Platform
events"); tests/integration/events/test_mongo_effects.py provokes them on the real test server.
"""

from __future__ import annotations

import bson.errors
import pymongo.errors
import pytest

from worker.adapters.mongo import REFUSED_CODES, refusal

FERRET_NUL = ("[msg_update.go:133 handler.(*Handler).updateDocument] [update.go:105 "
              "common.UpdateDocument] [collection.go:163 postgresql.(*collection).InsertAll."
              "func1] ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05)")
FERRET_PG_DOWN = ("[msg_update.go:117 handler.(*Handler).updateDocument] [collection.go:109 "
                  "postgresql.(*collection).Query] failed to connect to `user=postgres "
                  "database=ferretdb`: dial tcp 127.0.0.1:55432: connect: connection refused")


def write_error(code: int, errmsg: str = "x") -> pymongo.errors.WriteError:
    return pymongo.errors.WriteError(errmsg, code, {"index": 0, "code": code, "errmsg": errmsg})


def failure(code: int, errmsg: str) -> pymongo.errors.OperationFailure:
    return pymongo.errors.OperationFailure(errmsg, code, {"ok": 0.0, "code": code,
                                                          "errmsg": errmsg})


@pytest.mark.parametrize(("exc", "code"), [
    # FerretDB v1.24: dotted or $ keys at any depth, nested arrays, ±Infinity.
    (write_error(2, 'invalid key: "a.b" (key must not contain \'.\' sign)'), 2),
    # mongod: nesting beyond 180 levels, documents beyond 16 MiB, older servers' key checks.
    (write_error(15, "Document exceeds maximum nesting depth of 180"), 15),
    (write_error(17419, "Resulting document after update is larger than 16777216"), 17419),
    (write_error(17420, "Document to upsert is larger than 16777216"), 17420),
    (write_error(10334, "BSONObj size: 17000000 is invalid"), 10334),
    (write_error(52, "The dollar ($) prefixed field '$schema' is not valid for storage."), 52),
    (write_error(57, "The dotted field 'a.b' is not valid for storage."), 57),
    (write_error(121, "Document failed validation"), 121),
    (failure(2, "invalid value"), 2),
    # FerretDB: PostgreSQL refuses the data (NUL in a string, which MongoDB stores).
    (failure(1, FERRET_NUL), 1),
    # The driver, before sending: NUL in a key, > 16 MiB, > 64-bit ints, lone surrogates,
    # nesting deeper than Python recurses.
    (bson.errors.InvalidDocument("Key names must not contain the NULL byte"), 0),
    (pymongo.errors.DocumentTooLarge("update command document too large"), 0),
    (OverflowError("MongoDB can only handle up to 8-byte ints"), 0),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), 0),
    (RecursionError("maximum recursion depth exceeded while encoding an object to BSON"), 0),
])
def test_a_document_the_server_or_driver_refuses_is_refused(exc: BaseException,
                                                            code: int) -> None:
    refused = refusal(exc)
    assert refused is not None and refused.code == code
    # Our words only: the servers' messages quote the document (FerretDB: the whole value).
    assert "a.b" not in str(refused) and "$schema" not in str(refused)
    assert "SQLSTATE" not in str(refused)


@pytest.mark.parametrize("exc", [
    pymongo.errors.AutoReconnect("connection closed"),  # also FerretDB's answer to NaN
    pymongo.errors.NetworkTimeout("timed out"),
    pymongo.errors.ServerSelectionTimeoutError("no servers"),
    pymongo.errors.NotPrimaryError("not primary", {}),
    pymongo.errors.ExecutionTimeout("operation exceeded time limit", 50),
    pymongo.errors.WriteConcernError("waiting for replication timed out", 64, {}),
    pymongo.errors.WriteConcernError("odd", 2, {}),  # never the document's fault
    write_error(11000, "E11000 duplicate key error"),  # two upserts raced: retry
    failure(1, FERRET_PG_DOWN),  # FerretDB with PostgreSQL down
    failure(91, "The server is in quiesce mode and will shut down"),
    failure(13, "not authorized"),
])
def test_an_outage_or_anything_unknown_is_not_a_refusal(exc: BaseException) -> None:
    assert refusal(exc) is None


def test_the_table_says_what_in_our_words() -> None:
    assert all(what and "{" not in what for what in REFUSED_CODES.values())
    assert {2, 15, 10334, 17419, 17420} <= set(REFUSED_CODES)
