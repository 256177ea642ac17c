"""What a handler can see of a consumed record: its decoded value, lazily decoded key, headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ferryman.records import Headers
from ferryman.runtime.headers import MESSAGE_ID
from ferryman.schema.base import Codec, SerdeContext

T = TypeVar("T")

_UNDECODED: Any = object()


@dataclass(slots=True, eq=False)
class Message(Generic[T]):
    """A decoded record: its value (None for a tombstone), its key and coordinates.

    The key is decoded on first access (most event handlers never look at it), so an
    undecodable key raises DecodeError from ``.key``, inside the handler.
    """

    topic: str
    partition: int
    offset: int
    raw_key: bytes | None
    value: T | None
    headers: Headers
    timestamp: int
    key_codec: Codec | None = field(default=None, repr=False)
    _key: Any = field(default=_UNDECODED, repr=False)

    def set_key(self, key: Any) -> None:
        """Keep ``key``, decoded already, for ``.key`` (the decoder may decode it eagerly)."""
        self._key = key

    @property
    def key(self) -> Any:
        """The decoded key (None for an unkeyed record)."""
        if self._key is _UNDECODED:
            raw, codec = self.raw_key, self.key_codec
            if raw is None or codec is None:
                self._key = raw
            else:
                ctx = SerdeContext(self.topic, "key", self.headers, self.partition, self.offset)
                self._key = codec.decode(raw, ctx)
        return self._key

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None

    @property
    def message_id(self) -> str | None:
        """The ``ferryman.message-id`` the producer gave this record (for de-duplication)."""
        raw = self.header(MESSAGE_ID)
        return None if raw is None else raw.decode()
