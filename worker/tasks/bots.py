"""Per-bot tasks of live bots: `bots.create|delete|replace|recreate` (from the pass) and
`reconcile.bot` (from NATS events). Each re-reads the bot and acts on the world as it is."""

from __future__ import annotations

from worker.core.bot import BotKind
from worker.reconcile.controller import LiveBotController
from worker.reconcile.converge import Call
from worker.runtime import Runtime
from worker.tasks.base import action_task, event_task

LIVE = BotKind.LIVE


@action_task("bots.create", kind=LIVE, intent="create")
def create(rt: Runtime, bot_id: str, call: Call) -> str:
    return LiveBotController(rt).converge(bot_id, intent="create", call=call)


@action_task("bots.delete", kind=LIVE, intent="delete")
def delete(rt: Runtime, bot_id: str, call: Call) -> str:
    return LiveBotController(rt).converge(bot_id, intent="delete", call=call)


@action_task("bots.replace", kind=LIVE, intent="replace")
def replace(rt: Runtime, bot_id: str, call: Call) -> str:
    return LiveBotController(rt).converge(bot_id, intent="replace", call=call)


@action_task("bots.recreate", kind=LIVE, intent="recreate")
def recreate(rt: Runtime, bot_id: str, call: Call) -> str:
    return LiveBotController(rt).converge(bot_id, intent="recreate", call=call)


@event_task("reconcile.bot", kind=LIVE)
def reconcile_bot(rt: Runtime, bot_id: str, call: Call) -> str:
    return LiveBotController(rt).converge(bot_id, intent="event", call=call)
