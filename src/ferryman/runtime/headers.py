"""The ``ferryman.`` headers ferryman sets on records, and the ids they carry."""

from __future__ import annotations

import binascii
import random

MESSAGE_ID = "ferryman.message-id"
SOURCE = "ferryman.source"
CORRELATION_ID = "ferryman.correlation-id"
REPLY_TO = "ferryman.reply-to"
REQUESTER = "ferryman.requester"
ACK_REQUESTED = "ferryman.ack-requested"
REPLY_KIND = "ferryman.reply-kind"
ERROR_TYPE = "ferryman.error-type"
ERROR_MESSAGE = "ferryman.error-message"
DLQ_TOPIC = "ferryman.dlq.topic"
DLQ_PARTITION = "ferryman.dlq.partition"
DLQ_OFFSET = "ferryman.dlq.offset"
DLQ_ORIGINAL_TIMESTAMP = "ferryman.dlq.original-timestamp"
DLQ_GROUP = "ferryman.dlq.group"
DLQ_EXCEPTION_TYPE = "ferryman.dlq.exception-type"
DLQ_EXCEPTION_MESSAGE = "ferryman.dlq.exception-message"
DLQ_TRACEBACK = "ferryman.dlq.traceback"
DLQ_ATTEMPTS = "ferryman.dlq.attempts"
REPLAYED_FROM = "ferryman.replayed-from"
"""On a dead letter sent back by ``ferryman dlq replay``: the ``<topic>.dlq[partition]@offset``
it was replayed from."""

KIND_REPLY = b"reply"
"""``ferryman.reply-kind`` of a reply."""
KIND_ERROR = b"error"
"""``ferryman.reply-kind`` of an error reply (the responder raised)."""
KIND_ACK = b"ack"
"""``ferryman.reply-kind`` of a receipt acknowledgement."""


def new_id() -> str:
    """A random 128-bit id in UUID4 form, for message and correlation ids.

    From ``random`` (reseeded in forked children) rather than ``os.urandom``: the ids need to be
    unique, not secret, and the syscall releases the GIL on the hot path of every send. The
    version and variant bits are set as ``uuid.UUID(int=..., version=4).hex`` sets them, without
    building a UUID (a tenth of a send's CPU).
    """
    return "%032x" % (_getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)


def new_id_bytes() -> bytes:
    """``new_id()`` as ASCII bytes, as a header carries it (half the cost of formatting a str
    and encoding it: this runs for every record sent)."""
    return _hexlify((_getrandbits(128) & _UUID4_CLEAR | _UUID4_SET).to_bytes(16, "big"))


_hexlify = binascii.hexlify
_getrandbits = random.getrandbits
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)
