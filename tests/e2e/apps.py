"""Services run in their own processes by the end-to-end tests.

As services for ``ferryman run apps:<name>`` (run with this directory as the working
directory); as a script for the requester: ``python apps.py request <count> <first-id>``.
Where things are comes from the environment (FERRYMAN_BROKER, FERRYMAN_REGISTRY), the outputs
from E2E_OUT and the topic names from E2E_SUFFIX, so tests never share topics or groups.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from dataclasses import dataclass, replace

from ferryman.config import ServiceConfig
from ferryman.runtime.message import Message
from ferryman.service import Service
from ferryman.topics import EntityTopic, EventTopic, RequestTopic

SUFFIX = os.environ.get("E2E_SUFFIX", "x")
OUT = os.environ.get("E2E_OUT", os.devnull)
FAST = ServiceConfig(
    commit_interval=0.05,
    shutdown_timeout=10,
    consumer_config={"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
)


@dataclass
class Tick:
    key: str
    seq: int


@dataclass
class Customer:
    id: int
    name: str


@dataclass
class Echo:
    id: int


@dataclass
class Echoed:
    id: int
    pid: int


ticks = EventTopic(f"e2e.ticks.{SUFFIX}", Tick, partition_key="key", partitions=4)
customers = EntityTopic(f"e2e.customers.{SUFFIX}", Customer, key="id", partitions=3)
echo = RequestTopic(f"e2e.echo.{SUFFIX}", Echo, reply=Echoed, partitions=4, reply_partitions=2)

poison = EventTopic(f"e2e.poison.{SUFFIX}", Tick, partitions=1)
held = EventTopic(f"e2e.held.{SUFFIX}", Tick, partitions=1)

ticker = Service(f"e2e-ticker-{SUFFIX}", config=FAST)
strict = Service(f"e2e-strict-{SUFFIX}", config=replace(FAST, on_error="stop", retries=1))
# Never commits on its own: a committed offset can only come from the SIGTERM shutdown.
mirror = Service(f"e2e-mirror-{SUFFIX}", config=replace(FAST, commit_interval=3600))
responder = Service(f"e2e-responder-{SUFFIX}", config=FAST)
# Its handler never returns in a process started with E2E_STUCK=1. The client.id orders the
# members (the embedded broker's range assignment sorts them), so the test knows who owns what.
holder = Service(
    f"e2e-holder-{SUFFIX}",
    config=replace(
        FAST,
        shutdown_timeout=2,
        consumer_config={
            **FAST.consumer_config,
            "max.poll.interval.ms": "6000",
            "client.id": os.environ.get("E2E_CLIENT_ID", "ferryman"),
        },
    ),
)

_out = open(OUT, "a", buffering=1)  # noqa: SIM115 - lives as long as the process


@ticker.on(ticks)
async def record_tick(tick: Tick) -> None:
    _out.write(f"{tick.key},{tick.seq}\n")


@strict.on(poison)
async def refuse(tick: Tick) -> None:
    raise ValueError(f"tick {tick.seq} is poison")


@holder.on(held)
def hold(tick: Tick) -> None:
    _out.write(f"start,{os.getpid()},{tick.seq}\n")
    if os.environ.get("E2E_STUCK") == "1":
        threading.Event().wait()  # a sync handler stuck for good (a lost lock, a hung socket)
    _out.write(f"done,{os.getpid()},{tick.seq}\n")


@mirror.on(customers)
async def record_customer(customer: Customer | None, msg: Message[Customer]) -> None:
    _out.write(json.dumps([msg.key, None if customer is None else customer.name]) + "\n")


@responder.responder(echo)
async def answer(req: Echo) -> Echoed:
    return Echoed(req.id, os.getpid())


async def request(count: int, first: int) -> None:
    client = Service(f"e2e-client-{SUFFIX}", config=FAST)
    async with client:
        limit = asyncio.Semaphore(16)

        async def one(i: int) -> tuple[int, int, int]:
            async with limit:
                reply = await client.request(echo, Echo(i), timeout=60)
            return i, reply.id, reply.pid

        results = await asyncio.gather(*(one(first + i) for i in range(count)))
    wrong = [r for r in results if r[0] != r[1]]
    print(
        json.dumps(
            {
                "count": len(results),
                "wrong": wrong,
                "pids": sorted({r[2] for r in results}),
                "late": client.late_replies,
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "request":
        asyncio.run(request(int(sys.argv[2]), int(sys.argv[3])))
