"""The codec seam: how a value becomes the bytes of a record's key or value, and back.

Codecs are tiny: ``encode(value, ctx) -> bytes`` and ``decode(bytes, ctx) -> value``. The context
names the topic, whether this is the key or the value, the headers, and (on decode) the record's
coordinates so a DecodeError can say where the bad message is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ferryman.records import Headers

Field = Literal["key", "value"]


@dataclass(frozen=True, slots=True)
class SerdeContext:
    """Where the bytes belong: topic, key or value, headers, and coordinates when consumed.

    ``lookup=False`` forbids decode to ask the registry for a writer schema it has not seen: it
    raises SchemaLookupNeeded instead, for code that must not block (an event loop), which then
    runs the lookup elsewhere and decodes again.
    """

    topic: str
    field: Field = "value"
    headers: Headers = ()
    partition: int | None = None
    offset: int | None = None
    lookup: bool = True

    @property
    def subject(self) -> str:
        """The registry subject, TopicNameStrategy: ``<topic>-key`` / ``<topic>-value``."""
        return f"{self.topic}-{self.field}"


class SchemaLookupNeeded(Exception):
    """Decoding needs a writer schema the codec has not fetched, and the context forbade the
    registry call. ``load()`` makes it (blocking; it raises what the decode would have: DecodeError
    for an id the registry does not know, RegistryError when the registry cannot answer); decoding
    again then finds the schema."""

    def __init__(self, schema_id: int, load: Callable[[], object]) -> None:
        super().__init__(f"schema id {schema_id} is not fetched yet")
        self.schema_id = schema_id
        self.load = load


class Codec(Protocol):
    """Turns values into bytes and back for one kind of model."""

    def encode(self, value: Any, ctx: SerdeContext) -> bytes:
        """Encode ``value``; raises SchemaError, before anything is sent, if it does not fit."""
        ...

    def decode(self, data: bytes, ctx: SerdeContext) -> Any:
        """Decode ``data``; raises DecodeError carrying ``ctx``'s coordinates when it cannot."""
        ...
