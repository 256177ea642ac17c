"""Turns a topic's keys and values into record bytes and back, through registered Avro codecs.

Codecs are built once per (topic, key-or-value) and cached. Subjects follow the topic name
strategy: ``<topic>-key`` and ``<topic>-value``; a request topic's replies use
``<topic>.reply-value`` (owned, like the request schema, by the responder).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ferryman.errors import DecodeError, RegistryError, SchemaError
from ferryman.records import Polled, Record, headers_of
from ferryman.runtime.message import Message
from ferryman.schema.base import Codec, Field, SchemaLookupNeeded, SerdeContext
from ferryman.topics import RequestTopic, Topic

CodecFactory = Callable[[type[Any], str], Codec]
"""Builds a codec for a model (a dataclass, pydantic model, or key type) and a compatibility."""

REPLY_COMPATIBILITY = "FORWARD_TRANSITIVE"
"""Replies are written by the responder and read by older requesters: new data, old readers."""


KeyedEncoder = Callable[[Any], tuple[bytes | None, bytes]]
"""A value -> its (key, value) bytes, the key being the value's own key field."""


# A named tuple's own __new__ is a Python function; tuple.__new__ builds one straight from a row.
_as_keyed = tuple.__new__


class Keyed(NamedTuple):
    """A consumed record with its key and value decoded (value None: a tombstone)."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    timestamp: int


class Serde:
    """Encodes and decodes the keys and values of declared topics."""

    def __init__(self, factory: CodecFactory) -> None:
        self._factory = factory
        self._codecs: dict[tuple[str, Field], Codec] = {}
        self._value_decoders: dict[tuple[str, bool], Callable[[Polled], Any]] = {}
        # per topic name, as the codecs: (codec.encode, the topic's send context)
        self._value_encoders: dict[str, tuple[Callable[[Any, SerdeContext], bytes], SerdeContext]]
        self._key_encoders: dict[str, tuple[Callable[[Any, SerdeContext], bytes], SerdeContext]]
        self._value_encoders, self._key_encoders = {}, {}
        # per topic name: (the declaration it was made for, its encode_keyed)
        self._keyed_encoders: dict[str, tuple[Topic[Any], KeyedEncoder]] = {}
        self._lock = threading.Lock()

    def _codec(self, subject_topic: str, field: Field, model: type[Any], compat: str) -> Codec:
        codec = self._codecs.get((subject_topic, field))
        if codec is None:
            with self._lock:
                codec = self._codecs.get((subject_topic, field))
                if codec is None:
                    codec = self._factory(model, compat)
                    self._codecs[(subject_topic, field)] = codec
        return codec

    def encode_key(self, topic: Topic[Any], key: Any) -> bytes | None:
        key_type = topic.key_type
        if key_type is None:
            return None
        if key is None or not isinstance(key, key_type):
            raise _bad_key(topic, key_type, key)
        bound = self._key_encoders.get(topic.name) or self._bind(topic, "key", key_type)
        return bound[0](key, bound[1])

    def encode_value(self, topic: Topic[Any], value: Any) -> bytes:
        model = topic.model
        if value.__class__ is not model and not isinstance(value, model):
            raise _not_model(topic, value)
        bound = self._value_encoders.get(topic.name) or self._bind(topic, "value", model)
        return bound[0](value, bound[1])

    def encode_keyed(self, topic: Topic[Any], value: Any) -> tuple[bytes | None, bytes]:
        """``(key, value)`` bytes of ``value`` keyed by its own key field (publish, emit): what
        ``encode_value`` and ``encode_key(topic, topic.key_of(value))`` give, through one
        encoder made per topic (the per-record path of a send)."""
        found = self._keyed_encoders.get(topic.name)
        if found is None or found[0] is not topic:
            found = self._keyed_encoders[topic.name] = (topic, self._keyed_encoder(topic))
        return found[1](value)

    def _keyed_encoder(self, topic: Topic[Any]) -> KeyedEncoder:
        model, key_type, key_of = topic.model, topic.key_type, topic.key_of
        encode, ctx = self._value_encoders.get(topic.name) or self._bind(topic, "value", model)
        if key_type is None:

            def unkeyed(value: Any) -> tuple[bytes | None, bytes]:
                if value.__class__ is not model and not isinstance(value, model):
                    raise _not_model(topic, value)
                return None, encode(value, ctx)

            return unkeyed
        encode_key, key_ctx = self._key_encoders.get(topic.name) or self._bind(
            topic, "key", key_type
        )

        def keyed(value: Any) -> tuple[bytes | None, bytes]:
            if value.__class__ is not model and not isinstance(value, model):
                raise _not_model(topic, value)
            payload = encode(value, ctx)  # before the key: it checked the value's fields
            key = key_of(value)
            if key.__class__ is not key_type and (key is None or not isinstance(key, key_type)):
                raise _bad_key(topic, key_type, key)
            return encode_key(key, key_ctx), payload

        return keyed

    def _bind(
        self, topic: Topic[Any], field: Field, model: type[Any]
    ) -> tuple[Callable[[Any, SerdeContext], bytes], SerdeContext]:
        """A send's codec ``encode`` and context, kept per topic: the same for every record of
        a topic (one look-up per record; a frozen dataclass per record was a tenth of emit's
        CPU)."""
        codec = self._codec(topic.name, field, model, topic.compatibility)
        encoders = self._key_encoders if field == "key" else self._value_encoders
        with self._lock:
            return encoders.setdefault(topic.name, (codec.encode, SerdeContext(topic.name, field)))

    def encode_reply(self, topic: RequestTopic[Any, Any], value: Any) -> bytes:
        if not isinstance(value, topic.reply_model):
            raise SchemaError(
                f"the responder of {topic.name!r} returned {type(value).__name__}; "
                f"return a {topic.reply_model.__name__}"
            )
        codec = self._codec(topic.reply_topic, "value", topic.reply_model, REPLY_COMPATIBILITY)
        return codec.encode(value, SerdeContext(topic.reply_topic, "value"))

    def decode_reply(
        self, topic: RequestTopic[Any, Any], record: Record, *, lookup: bool = True
    ) -> Any:
        codec = self._codec(topic.reply_topic, "value", topic.reply_model, REPLY_COMPATIBILITY)
        if record.value is None:
            raise DecodeError(
                f"a reply on {record.topic!r} has no value; the responder sent a null reply",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        return codec.decode(record.value, _ctx(record, "value", lookup))

    def value_decoder(self, topic: Topic[Any], *, lookup: bool = True) -> Callable[[Polled], Any]:
        """``decode_value`` for ``topic`` with its codec and context looked up once (and the
        decoder cached here, the one cache of them): the consumer's per-record path, which takes
        a Record or its row. With ``lookup=False`` a writer schema not fetched yet raises
        SchemaLookupNeeded instead of calling the registry (for use on an event loop)."""
        decode = self._value_decoders.get((topic.name, lookup))
        if decode is None:
            decode = self._value_decoder(topic, lookup)
            self._value_decoders[(topic.name, lookup)] = decode
        return decode

    def _value_decoder(self, topic: Topic[Any], lookup: bool) -> Callable[[Polled], Any]:
        codec = self._codec(topic.name, "value", topic.model, topic.compatibility)
        decode = codec.decode
        # The codec (AvroCodec) reads the context only to describe a failure; a shared one
        # saves building a context per record, and a failure decodes again with the full one.
        shared = SerdeContext(topic.name, "value", lookup=lookup)

        def value_of(record: Polled) -> Any:
            raw = record[4]  # a row or a Record: the consumer hands rows over, not Records
            if raw is None:
                return None
            try:
                return decode(raw, shared)
            except (RegistryError, SchemaLookupNeeded):
                raise  # the registry is down, not the record bad: retried, never dead-lettered
            except Exception:
                return _decode_again(topic, codec, record, raw, lookup)

        return value_of

    def keyed_decoder(self, topic: Topic[Any], *, lookup: bool = True) -> Callable[[Polled], Keyed]:
        """A row as ``Keyed`` (coordinates, key and value decoded, as a mirror applies them),
        with shared contexts as ``value_decoder``: no Message per record."""
        value_of = self.value_decoder(topic, lookup=lookup)
        if topic.key_type is None:
            return lambda row: _as_keyed(
                Keyed, (row[0], row[1], row[2], row[3], value_of(row), row[6])
            )
        codec = self._codec(topic.name, "key", topic.key_type, topic.compatibility)
        decode = codec.decode
        shared = SerdeContext(topic.name, "key", lookup=lookup)

        def keyed(row: Polled) -> Keyed:
            raw, key = row[3], None
            if raw is not None:
                try:
                    key = decode(raw, shared)
                except (RegistryError, SchemaLookupNeeded):
                    raise
                except Exception:
                    key = _decode_again(topic, codec, row, raw, lookup, "key")
            return _as_keyed(Keyed, (row[0], row[1], row[2], key, value_of(row), row[6]))

        return keyed

    def decode_value(self, topic: Topic[Any], record: Record, *, lookup: bool = True) -> Any:
        """The value of ``record`` (None for a tombstone); DecodeError, with coordinates, if it
        cannot be decoded; RegistryError, passed through, if the registry cannot be asked;
        SchemaLookupNeeded with ``lookup=False`` (see value_decoder)."""
        return self.value_decoder(topic, lookup=lookup)(record)

    def decode(
        self, topic: Topic[Any], record: Polled, *, key: bool = True, lookup: bool = True
    ) -> Message[Any]:
        """The Message of ``record`` (a Record or its row); raises DecodeError (with
        coordinates) if it cannot be decoded. With ``key=False`` the key is decoded only if
        it is read."""
        topic_name, partition, offset, raw_key, _, headers, timestamp = record
        key_codec = None
        if raw_key is not None and topic.key_type is not None:
            key_codec = self._codecs.get((topic.name, "key"))
            if key_codec is None:
                key_codec = self._codec(topic.name, "key", topic.key_type, topic.compatibility)
        message = Message(
            topic_name,
            partition,
            offset,
            raw_key,
            self.value_decoder(topic, lookup=lookup)(record),
            headers_of(headers),
            timestamp,
            key_codec,
        )
        if key and key_codec is not None and raw_key is not None:
            try:  # decoded now, kept for Message.key
                message.set_key(key_codec.decode(raw_key, _ctx(record, "key", lookup)))
            except (DecodeError, RegistryError, SchemaLookupNeeded):
                raise
            except Exception as exc:
                raise DecodeError(
                    f"cannot decode the key of a record of {topic.name!r}: "
                    f"{type(exc).__name__}: {exc}",
                    topic=topic_name,
                    partition=partition,
                    offset=offset,
                ) from exc
        return message


def _not_model(topic: Topic[Any], value: Any) -> SchemaError:
    return SchemaError(
        f"{topic.kind} {topic.name!r} carries {topic.model.__name__}, not "
        f"{type(value).__name__}; pass a {topic.model.__name__}"
    )


def _bad_key(topic: Topic[Any], key_type: type, key: Any) -> SchemaError:
    return SchemaError(
        f"{topic.kind} {topic.name!r}: key {key!r} is not a {key_type.__name__}; "
        f"pass the value of the key field as a {key_type.__name__}"
    )


def _ctx(record: Polled, field: Field, lookup: bool = True) -> SerdeContext:
    return SerdeContext(record[0], field, headers_of(record[5]), record[1], record[2], lookup)


def _decode_again(
    topic: Topic[Any],
    codec: Codec,
    record: Polled,
    raw: bytes,
    lookup: bool,
    field: Field = "value",
) -> Any:
    """Decode with the record's full context, so a failure carries its coordinates."""
    try:
        return codec.decode(raw, _ctx(record, field, lookup))
    except (DecodeError, RegistryError, SchemaLookupNeeded):
        raise
    except Exception as exc:  # a codec bug or a corrupt record must not stop the consumer
        raise DecodeError(
            f"cannot decode a record of {topic.name!r}: {type(exc).__name__}: {exc}",
            topic=record[0],
            partition=record[1],
            offset=record[2],
        ) from exc
