"""Schemas: Avro models, the Confluent wire format, registries and compatibility rules."""

from ferryman.schema.base import Codec, SerdeContext

__all__ = ["Codec", "SerdeContext"]
