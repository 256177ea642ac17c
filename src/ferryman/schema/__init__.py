"""Schemas: Avro models, the Confluent wire format, registries and compatibility rules.

Floors, each importing only those below it: ``parsing`` (schema text) and ``base`` (the codec
seam); ``compat``, ``registry`` (the protocol), ``converters``; ``models``; ``avro``, ``embedded``,
``http``; ``open`` and ``server``.
"""

from ferryman.schema.avro import AvroCodec
from ferryman.schema.base import Codec, SchemaLookupNeeded, SerdeContext
from ferryman.schema.compat import DEFAULT_COMPATIBILITY, Compatibility
from ferryman.schema.embedded import EmbeddedRegistry
from ferryman.schema.http import HttpRegistry
from ferryman.schema.models import (
    DEFAULT_DECIMAL,
    TIMESTAMP_MILLIS,
    DecimalSpec,
    avro_schema,
)
from ferryman.schema.open import open_registry
from ferryman.schema.parsing import canonical, load_schema
from ferryman.schema.registry import RegisteredSchema, Registry

__all__ = [
    "DEFAULT_COMPATIBILITY",
    "DEFAULT_DECIMAL",
    "TIMESTAMP_MILLIS",
    "AvroCodec",
    "Codec",
    "Compatibility",
    "DecimalSpec",
    "EmbeddedRegistry",
    "HttpRegistry",
    "RegisteredSchema",
    "Registry",
    "SchemaLookupNeeded",
    "SerdeContext",
    "avro_schema",
    "canonical",
    "load_schema",
    "open_registry",
]
