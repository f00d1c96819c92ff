"""FerretDB, versitygw, Redis and NATS are real servers speaking their real protocols."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import nats
import pymongo

from tools.stack.supervisor import StackEnv


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
