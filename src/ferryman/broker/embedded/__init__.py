"""The embedded broker: a message log in one SQLite file that processes on one machine share.

Modules: ``storage`` (the file, schema, durability, contention, checkpoints), ``codec``
(record batches), ``admin``, ``producer`` and ``queued`` (records waiting for the writer),
``consumer`` and ``group`` (consumer groups), ``cleaner`` (retention and compaction),
``wakeup`` (cross-process wake-ups), ``repair`` (dropping damaged batches).
"""

from ferryman.broker.embedded.broker import EmbeddedBroker
from ferryman.broker.embedded.repair import DroppedBatch, drop_damaged_batches

__all__ = ["DroppedBatch", "EmbeddedBroker", "drop_damaged_batches"]
