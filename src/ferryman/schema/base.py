"""The codec seam: how a value becomes the bytes of a record's key or value, and back.

Codecs are tiny: ``encode(value, ctx) -> bytes`` and ``decode(bytes, ctx) -> value``. The context
names the topic, whether this is the key or the value, the headers, and (on decode) the record's
coordinates so a DecodeError can say where the bad message is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ferryman.records import Headers

Field = Literal["key", "value"]


@dataclass(frozen=True, slots=True)
class SerdeContext:
    """Where the bytes belong: topic, key or value, headers, and coordinates when consumed."""

    topic: str
    field: Field = "value"
    headers: Headers = ()
    partition: int | None = None
    offset: int | None = None

    @property
    def subject(self) -> str:
        """The registry subject, TopicNameStrategy: ``<topic>-key`` / ``<topic>-value``."""
        return f"{self.topic}-{self.field}"


class Codec(Protocol):
    """Turns values into bytes and back for one kind of model."""

    def encode(self, value: Any, ctx: SerdeContext) -> bytes:
        """Encode ``value``; raises SchemaError, before anything is sent, if it does not fit."""
        ...

    def decode(self, data: bytes, ctx: SerdeContext) -> Any:
        """Decode ``data``; raises DecodeError carrying ``ctx``'s coordinates when it cannot."""
        ...
