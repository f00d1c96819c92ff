"""FerretDB (on PostgreSQL), versitygw, Redis and NATS are real servers speaking their real
protocols; a server that cannot start fails the start naming it, with its log tail."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import nats
import pymongo
import pytest

from tools.stack.process import ServerFailed, descendants, same_process
from tools.stack.supervisor import Stack, StackEnv


def test_ferretdb_keeps_its_data_in_the_stacks_postgresql(
        stack: Stack, stack_env: StackEnv, mongo: Any, db_names: dict[str, str]) -> None:
    postgres = next(s for s in stack.servers if s.name == "postgres")
    ferretdb = next(s for s in stack.servers if s.name == "ferretdb")
    assert same_process(postgres.pid, postgres.started)
    # The recorded pid is the postmaster itself (setpriv execs it), run as `postgres` by root.
    assert Path(f"/proc/{postgres.pid}/comm").read_text().strip() == "postgres"
    owner = Path(f"/proc/{postgres.pid}").stat().st_uid
    assert owner == (pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid())
    assert "--handler=postgresql" in ferretdb.argv
    assert f"--postgresql-url={stack_env.postgres_url}" in ferretdb.argv

    mongo[db_names["bot_runner"]]["bots"].insert_one({"id": "in-postgres"})
    # FerretDB keeps a MongoDB database as a PostgreSQL schema of its database `ferretdb`.
    schemas = subprocess.run(
        [str(stack.bins.psql), "-X", "-At", stack_env.postgres_url, "-c",
         "SELECT nspname FROM pg_namespace"],
        capture_output=True, text=True, timeout=30, check=True).stdout.split()
    assert db_names["bot_runner"] in schemas


def test_a_lookup_by_an_indexed_field_answers_as_mongodb_does_and_reads_an_index(
        stack: Stack, stack_env: StackEnv, mongo: Any, db_names: dict[str, str]) -> None:
    """The stack's FerretDB is patched (tools/stack/patches/ferretdb-test-stack.py) so that a
    find or upsert by an indexed top-level field reads an index, as on MongoDB, instead of the
    whole table; and still answers what MongoDB answers: an array holding the value matches,
    a quote in the value is data, a missing value matches nothing."""
    bots = mongo[db_names["bot_runner"]]["bots"]
    bots.create_index("id", unique=True)
    bots.insert_many([{"id": f"b{i:04d}", "n": i} for i in range(2000)]
                     + [{"id": ["arr-1", "arr-2"], "n": -1}, {"id": "it's", "n": -2}])
    assert [d["n"] for d in bots.find({"id": "b0042"})] == [42]
    assert [d["n"] for d in bots.find({"id": {"$eq": "b0043"}})] == [43]
    assert [d["n"] for d in bots.find({"id": "arr-2"})] == [-1]
    assert [d["n"] for d in bots.find({"id": "it's"})] == [-2]
    assert list(bots.find({"id": "b9999"})) == []
    status = mongo[db_names["bot_runner"]]["bot_status"]
    status.replace_one({"_id": "b0042"}, {"_id": "b0042", "phase": "Running"}, upsert=True)
    status.replace_one({"_id": "b0042"}, {"_id": "b0042", "phase": "Stopped"}, upsert=True)
    assert list(status.find({}, {"_id": 0})) == [{"phase": "Stopped"}]

    # FerretDB's own explain: PostgreSQL's plan of the statement it sends for each lookup.
    database = mongo[db_names["bot_runner"]]
    for collection, field, value in (("bots", "id", "b0042"), ("bot_status", "_id", "b0042")):
        plan = json.dumps(database.command(
            "explain", {"find": collection, "filter": {field: value}})["queryPlanner"])
        assert "Bitmap Index Scan" in plan and "_gin" in plan and "Seq Scan" not in plan, plan


def test_a_broken_postgres_fails_the_start_naming_it_with_its_log(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "s", real_node=None, postgres_settings={"shared_buffers": "lots"})
    with pytest.raises(ServerFailed) as info:
        stack.start()
    message = str(info.value)
    print(message)  # what a developer sees (pytest -s)
    assert message.startswith("postgres exited with code")
    assert f"--- last lines of {tmp_path / 's' / 'logs' / 'postgres.log'} ---" in message
    assert 'invalid value for parameter "shared_buffers": "lots"' in message
    assert stack.servers == []  # start() stopped what it had started


def test_a_failed_initdb_fails_the_start_naming_postgres_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "initdb"
    fake.write_text("#!/bin/sh\necho 'initdb: could not create directory' >&2\nexit 1\n")
    fake.chmod(0o755)
    stack = Stack(tmp_path / "s", real_node=None)
    stack.bins = dataclasses.replace(stack.bins, initdb=fake)
    with pytest.raises(ServerFailed) as info:
        stack.start()
    message = str(info.value)
    assert message.startswith("postgres: initdb exited with code 1.")
    assert f"--- last lines of {tmp_path / 's' / 'logs' / 'postgres-initdb.log'} ---" in message
    assert "initdb: could not create directory" in message


def test_a_failed_ferretdb_start_names_it_and_leaves_no_postgres_process(
        tmp_path: Path) -> None:
    fake = tmp_path / "ferretdb"
    fake.write_text("#!/bin/sh\necho 'no PostgreSQL for me' >&2\nexit 3\n")
    fake.chmod(0o755)
    postgres_family: dict[int, int | None] = {}

    def progress(message: str) -> None:
        if message == "starting ferretdb":  # postgres is up: its postmaster and children
            server = next(s for s in stack.servers if s.name == "postgres")
            postgres_family.update({server.pid: server.started, **descendants(server.pid)})

    stack = Stack(tmp_path / "s", real_node=None, progress=progress)
    stack.bins = dataclasses.replace(stack.bins, ferretdb=fake)
    with pytest.raises(ServerFailed) as info:
        stack.start()
    message = str(info.value)
    assert message.startswith("ferretdb exited with code 3 during start-up")
    assert "no PostgreSQL for me" in message
    assert len(postgres_family) >= 4  # postmaster, checkpointer, background writer, ...
    left = [pid for pid, started in postgres_family.items() if same_process(pid, started)]
    assert left == []


def test_ferretdb_documents_indexes_and_find_one_and_update(mongo: Any,
                                                             db_names: dict[str, str]) -> None:
    bots = mongo[db_names["bot_runner"]]["bots"]
    bots.create_index("id", unique=True)
    bots.insert_many([{"id": "a", "config": {"name": "A"}}, {"id": "b", "config": {"name": "B"}}])
    assert any(ix["key"] == {"id": 1} and ix.get("unique") for ix in bots.list_indexes())
    # FerretDB v1 refuses a projection on findAndModify ("fields"): the product never uses one.
    updated = bots.find_one_and_update({"id": "a"}, {"$set": {"config.name": "AA"}},
                                       return_document=pymongo.ReturnDocument.AFTER)
    updated.pop("_id")
    assert updated == {"id": "a", "config": {"name": "AA"}}
    assert sorted(d["id"] for d in bots.find({}, {"id": True})) == ["a", "b"]
    try:
        bots.insert_one({"id": "a"})
    except pymongo.errors.DuplicateKeyError:
        pass
    else:
        raise AssertionError("unique index not enforced")


def test_versitygw_bucket_and_object_round_trip(s3: Any, test_id: str) -> None:
    name = f"t-{test_id}-rt"
    s3.make_bucket(name)
    assert s3.bucket_exists(name)
    s3.put_object(name, "code/bot.zip", io.BytesIO(b"PK\x03\x04zip"), length=7)
    assert s3.get_object(name, "code/bot.zip").read() == b"PK\x03\x04zip"
    assert [o.object_name for o in s3.list_objects(name, prefix="code/", recursive=True)] == [
        "code/bot.zip"]
    s3.remove_object(name, "code/bot.zip")
    assert list(s3.list_objects(name, recursive=True)) == []
    s3.remove_bucket(name)
    assert not s3.bucket_exists(name)


def test_redis_round_trip(redis_client: Any, test_id: str) -> None:
    assert redis_client.set(f"t:{test_id}", "v", ex=30)
    assert redis_client.get(f"t:{test_id}") == b"v"


def test_nats_queue_group_delivers_each_message_to_exactly_one_member(
        stack_env: StackEnv, test_id: str) -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        received: tuple[list[int], list[int]] = ([], [])
        subscribers = [await nats.connect(stack_env.nats_url) for _ in range(2)]
        for index, nc in enumerate(subscribers):
            async def handler(msg: Any, index: int = index) -> None:
                received[index].append(int(msg.data))
            await nc.subscribe(f"t.{test_id}", queue="runtime", cb=handler)
            await nc.flush()
        publisher = await nats.connect(stack_env.nats_url)
        for i in range(200):
            await publisher.publish(f"t.{test_id}", str(i).encode())
        await publisher.flush()
        for _ in range(50):
            if len(received[0]) + len(received[1]) >= 200:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # would let a duplicate arrive
        for nc in [*subscribers, publisher]:
            await nc.close()
        return received

    first, second = asyncio.run(scenario())
    assert sorted(first + second) == list(range(200))
    assert first and second  # both members really got a share
