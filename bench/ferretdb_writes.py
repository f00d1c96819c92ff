"""Which write patterns are safe on the stack's FerretDB (on PostgreSQL), and how fast are they.

    .venv/bin/python bench/ferretdb_writes.py            # starts its own stack (no real node)
    .venv/bin/python bench/ferretdb_writes.py --docs 10000 --patterns-only

Part 1 runs each write pattern on a fresh collection of 1,000 documents (a `bulk_write` of
50 `ReplaceOne(upsert=True)` wedged FerretDB-on-PostgreSQL once) and checks, after each, that
FerretDB still answers a ping and that none of its PostgreSQL sessions is left busy. Part 2
times single-document operations by `id` at `--docs` documents, with and without an index on
`id`. Prints one JSON line per result; tools/stack/README.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymongo
from pymongo import DeleteOne, ReplaceOne, UpdateOne

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.stack.supervisor import Stack

TIMEOUT_MS = 15_000  # a wedged FerretDB never answers
DB = "bench_ferretdb_writes"


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def doc(i: int, prefix: str = "b") -> dict[str, Any]:
    return {"id": f"{prefix}{i:06d}", "enabled": True,
            "config": {"name": f"bot {i}", "schedule": "*/5 * * * *", "n": float(i)},
            "custom": {"version": "1.0.0", "filePath": f"code/{i}.zip",
                       "config": {"runtime": "python3.11", "entrypoints": {"bot": "main.py"}}}}


class Bench:
    def __init__(self, stack: Stack) -> None:
        assert stack.env is not None
        self.stack = stack
        self.env = stack.env
        self.client: pymongo.MongoClient[dict[str, Any]] = self.new_client()
        self.patterns = 0

    def new_client(self) -> pymongo.MongoClient[dict[str, Any]]:
        return pymongo.MongoClient(self.env.mongo_uri, serverSelectionTimeoutMS=5000,
                                   socketTimeoutMS=TIMEOUT_MS, connectTimeoutMS=5000)

    def pg_sessions(self) -> int:
        """FerretDB's PostgreSQL sessions (its pool holds at most 50: pool_max_conns)."""
        out = subprocess.run(
            [str(self.stack.bins.psql), "-X", "-At", self.env.postgres_url, "-c",
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'FerretDB'"],
            capture_output=True, text=True, timeout=10, check=False)
        return int(out.stdout.strip() or -1)

    def plan(self, collection: str) -> str:
        """How PostgreSQL runs FerretDB's pushed-down `id` equality (`_jsonb->'id' @> ...`)
        on the collection's table (FerretDB names it <collection>_<hash>)."""
        psql = [str(self.stack.bins.psql), "-X", "-At", self.env.postgres_url]
        table = subprocess.run(
            [*psql, "-c", "SELECT format('%I.%I', table_schema, table_name) FROM "
             f"information_schema.tables WHERE table_schema = '{DB}' "
             f"AND table_name LIKE '{collection}\\_%'"],
            capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        out = subprocess.run(
            [*psql, "-c", f"""EXPLAIN SELECT _jsonb FROM {table} WHERE _jsonb->'id' @> '"x"'"""],
            capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip().split("\n")[0]

    def healthy(self) -> bool:
        probe: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            self.env.mongo_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=5000)
        try:
            probe.admin.command("ping")
            probe[DB]["probe"].find_one({"id": "x"})
            return True
        except pymongo.errors.PyMongoError:
            return False
        finally:
            probe.close()

    def recover(self) -> None:
        """Ends FerretDB's PostgreSQL sessions and restarts FerretDB."""
        subprocess.run([str(self.stack.bins.psql), "-X", "-q", self.env.postgres_url, "-c",
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'FerretDB'"],
                       capture_output=True, timeout=10, check=False)
        with self.stack.stopped("ferretdb"):
            pass
        self.client.close()
        self.client = self.new_client()

    def fresh(self, name: str, seed: int) -> Any:
        coll = self.client[DB][name]
        coll.drop()
        coll.create_index("id")
        if seed:
            coll.insert_many([doc(i) for i in range(seed)])
        return coll

    def pattern(self, name: str, run: Callable[[Any], Any], *, seed: int = 1000,
                threads: int = 1) -> None:
        """`run(collection)` in `threads` threads at once (each with its own client)."""
        self.patterns += 1
        coll = self.fresh(f"pattern{self.patterns}", seed)
        errors: list[str] = []

        def work(t: int) -> None:
            client = self.new_client()
            try:
                run(client[DB][coll.name], t)
            except pymongo.errors.PyMongoError as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            finally:
                client.close()

        started = time.monotonic()
        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        took = time.monotonic() - started
        ok = self.healthy()
        emit(pattern=name, seconds=round(took, 3), errors=errors, ferretdb_answers=ok,
             pg_sessions=self.pg_sessions())
        if not ok:
            self.recover()
            emit(pattern=name, restarted_ferretdb=True, ferretdb_answers=self.healthy())


def part1(bench: Bench) -> None:
    """Each pattern on a fresh collection of 1,000 documents (`b000000`...) indexed on `id`;
    `new` ids match nothing, `old` ones match a document each."""
    def new(n: int, t: int = 0) -> list[dict[str, Any]]:
        return [doc(t * 10_000 + i, "n") for i in range(n)]

    def old(n: int, t: int = 0) -> list[dict[str, Any]]:
        return [doc(t * n + i) for i in range(n)]

    def upd(d: dict[str, Any], upsert: bool = False) -> UpdateOne:
        return UpdateOne({"id": d["id"]}, {"$set": d}, upsert=upsert)

    p = bench.pattern
    p("insert_many 1000", lambda c, t: c.insert_many(new(1000)), seed=0)
    p("insert_many 500 unordered, 250 duplicates",
      lambda c, t: c.insert_many([doc(i) for i in range(750, 1250)], ordered=False))
    p("update_one upsert x50 (new ids)",
      lambda c, t: [c.update_one({"id": d["id"]}, {"$set": d}, upsert=True) for d in new(50)])
    p("update_one upsert x50 (existing ids)",
      lambda c, t: [c.update_one({"id": d["id"]}, {"$set": d}, upsert=True) for d in old(50)])
    p("replace_one upsert x50 (existing ids)",
      lambda c, t: [c.replace_one({"id": d["id"]}, d, upsert=True) for d in old(50)])
    p("update_one upsert, 16 threads x 50 (existing ids)",
      lambda c, t: [c.update_one({"id": d["id"]}, {"$set": d}, upsert=True)
                    for d in old(50, t)], threads=16)
    p("find_one_and_update upsert x50 (existing ids)",
      lambda c, t: [c.find_one_and_update({"id": d["id"]}, {"$set": d}, upsert=True)
                    for d in old(50)])
    p("update_many id $in 500", lambda c, t: c.update_many(
        {"id": {"$in": [d["id"] for d in old(500)]}}, {"$set": {"enabled": False}}))
    p("delete_many id $in 500",
      lambda c, t: c.delete_many({"id": {"$in": [d["id"] for d in old(500)]}}))
    p("bulk_write DeleteOne x500 (existing ids)",
      lambda c, t: c.bulk_write([DeleteOne({"id": d["id"]}) for d in old(500)]))
    p("bulk_write UpdateOne upsert x500 (new ids)",
      lambda c, t: c.bulk_write([upd(d, True) for d in new(500)]))
    p("bulk_write UpdateOne upsert, 4 threads x 200 (new ids)",
      lambda c, t: c.bulk_write([upd(d, True) for d in new(200, t)]), threads=4)
    p("bulk_write UpdateOne x40 (existing ids)",
      lambda c, t: c.bulk_write([upd(d) for d in old(40)]))
    p("bulk_write UpdateOne, 2 threads x 20 (existing ids)",
      lambda c, t: c.bulk_write([upd(d) for d in old(20, t)]), threads=2)
    # PostgreSQL's jsonb has no NUL character: MongoDB stores this string, FerretDB refuses it.
    p("insert_one with a NUL in a string value",
      lambda c, t: c.insert_one({"id": "nul", "custom": {"filePath": "bots/x\x00.zip"}}))
    # The traps: each statement that matches a document holds one of FerretDB's 50 PostgreSQL
    # connections until its command returns; past 50 at once, FerretDB waits for ever.
    p("bulk_write UpdateOne upsert x100 (existing ids)",
      lambda c, t: c.bulk_write([upd(d, True) for d in old(100)]))
    p("bulk_write ReplaceOne upsert x50 (existing ids)",
      lambda c, t: c.bulk_write([ReplaceOne({"id": d["id"]}, d, upsert=True) for d in old(50)]))
    p("bulk_write UpdateOne, 2 threads x 30 (existing ids)",
      lambda c, t: c.bulk_write([upd(d) for d in old(30, t)]), threads=2)


def timed(op: Callable[[int], Any], n: int) -> float:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def part2(bench: Bench, docs: int, n: int = 50) -> None:
    """Single-document operations by `id` at `docs` documents (median of n), without and
    with an index on `id`; then ways of rewriting 1,000 existing documents (per document)."""
    coll = bench.client[DB]["scale"]
    coll.drop()
    started = time.monotonic()
    for at in range(0, docs, 1000):
        coll.insert_many([doc(i) for i in range(at, min(docs, at + 1000))])
    emit(seed_docs=docs, insert_many_per_doc_s=round((time.monotonic() - started) / docs, 5))
    step = max(1, docs // n)

    def measure(label: str) -> None:
        ids = [doc(i * step)["id"] for i in range(n)]
        oids = [d["_id"] for d in coll.find({"id": {"$in": ids}}, {"_id": True})]  # warms up
        result = {
            "find_one_by_id_s": timed(lambda i: coll.find_one({"id": ids[i]}), n),
            "find_one_by__id_s": timed(lambda i: coll.find_one({"_id": oids[i]}), len(oids)),
            "update_one_by_id_s": timed(lambda i: coll.update_one(
                {"id": ids[i]}, {"$set": {"config.n": -1.0}}), n),
            "upsert_new_id_s": timed(lambda i: coll.update_one(
                {"id": doc(i, label)["id"]}, {"$set": doc(i, label)}, upsert=True), n),
            "delete_one_by_id_s": timed(lambda i: coll.delete_one({"id": doc(i, label)["id"]}),
                                        n),
        }
        started = time.perf_counter()
        read = len(list(coll.find({}, {"_id": False, "id": True, "config": True},
                                  batch_size=2000)))
        result["full_projected_read_s"] = time.perf_counter() - started
        emit(docs=read, index_on_id=label == "indexed",
             **{k: round(v, 4) for k, v in result.items()}, plan=bench.plan(coll.name))

    measure("noindex")
    coll.create_index("id")
    measure("indexed")

    rewrite = [doc(i) for i in range(0, docs, max(1, docs // 1000))][:1000]

    def per_doc(label: str, write: Callable[[], Any]) -> None:
        started = time.perf_counter()
        write()
        emit(rewrite_1000_existing=label,
             per_doc_s=round((time.perf_counter() - started) / len(rewrite), 5))

    per_doc("update_one each", lambda: [coll.update_one({"id": d["id"]}, {"$set": d})
                                        for d in rewrite])
    per_doc("bulk_write UpdateOne, batches of 20", lambda: [
        coll.bulk_write([UpdateOne({"id": d["id"]}, {"$set": d})
                         for d in rewrite[at:at + 20]]) for at in range(0, len(rewrite), 20)])
    per_doc("delete_many id $in + insert_many, batches of 500", lambda: [
        (coll.delete_many({"id": {"$in": [d["id"] for d in rewrite[at:at + 500]]}}),
         coll.insert_many([dict(d) for d in rewrite[at:at + 500]]))
        for at in range(0, len(rewrite), 500)])
    coll.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--patterns-only", action="store_true")
    parser.add_argument("--scale-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fdbw-") as tmp, \
            Stack(Path(tmp) / "stack", real_node=None) as stack:
        bench = Bench(stack)
        emit(ferretdb=stack.bins.ferretdb.parent.name,
             postgres=subprocess.run([str(stack.bins.postgres), "--version"],
                                     capture_output=True, text=True).stdout.strip())
        if not args.scale_only:
            part1(bench)
        if not args.patterns_only:
            part2(bench, args.docs)
        bench.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
