"""Services for the outbox end-to-end tests, run by ``ferryman run`` / ``ferryman relay`` (with
this directory as the working directory). Broker, registry and database come from FERRYMAN_*;
topic names from E2E_SUFFIX, so tests never share topics."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ferryman.config import ServiceConfig
from ferryman.service import Service
from ferryman.topics import EntityTopic, EventTopic

SUFFIX = os.environ.get("E2E_SUFFIX", "x")


@dataclass
class Step:
    key: str
    seq: int


steps = EventTopic(f"e2e.outbox.steps.{SUFFIX}", Step, partition_key="key", partitions=3)

# Writes its outbox and relays it in the same process (relay=True: no handlers, no sources).
writer = Service(f"e2e-outbox-writer-{SUFFIX}", config=ServiceConfig(relay=True))
# The same outbox without a relay inside: `ferryman relay outbox_apps:quiet` publishes it.
quiet = Service(f"e2e-outbox-quiet-{SUFFIX}", config=ServiceConfig(relay=False))


class Base(DeclarativeBase):
    pass


class ItemRow(Base):
    __tablename__ = "e2e_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


@dataclass
class Item:
    id: int
    name: str


items = EntityTopic(f"e2e.outbox.items.{SUFFIX}", Item, key="id")
# Publishes ItemRow's changes; `ferryman republish outbox_apps:sourced <items>` backfills it.
sourced = Service(f"e2e-outbox-sourced-{SUFFIX}", config=ServiceConfig(relay=False))
sourced.source(items, from_=ItemRow)
