"""Schemas: Avro models, the Confluent wire format, registries and compatibility rules."""

from ferryman.schema.avro import AvroCodec
from ferryman.schema.base import Codec, SchemaLookupNeeded, SerdeContext
from ferryman.schema.embedded import EmbeddedRegistry
from ferryman.schema.http import HttpRegistry
from ferryman.schema.models import (
    DEFAULT_DECIMAL,
    TIMESTAMP_MILLIS,
    DecimalSpec,
    avro_schema,
    load_schema,
)
from ferryman.schema.registry import (
    DEFAULT_COMPATIBILITY,
    Compatibility,
    RegisteredSchema,
    Registry,
    canonical,
    open_registry,
)

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
