"""Services that tests/observability runs with ``ferryman run`` in a process of their own.

Topic names come from OBS_SUFFIX (no two tests share one); OBS_HANDLER_SECONDS slows the
handler so that a lag builds up and Prometheus sees it fall.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from ferryman.config import ServiceConfig
from ferryman.service import Service
from ferryman.topics import EventTopic

SUFFIX = os.environ.get("OBS_SUFFIX", "x")
HANDLER_SECONDS = float(os.environ.get("OBS_HANDLER_SECONDS", "0"))


@dataclass
class Reading:
    sensor: str
    value: float


readings = EventTopic(f"obs.readings.{SUFFIX}", Reading, partition_key="sensor", partitions=2)

meter = Service(f"meter-{SUFFIX}", config=ServiceConfig(commit_interval=0.05, shutdown_timeout=10))


@meter.on(readings)
async def record(reading: Reading) -> None:
    if HANDLER_SECONDS:
        await asyncio.sleep(HANDLER_SECONDS)
