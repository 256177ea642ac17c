"""Where newly assigned partitions start: the group's committed offset, unless the partition's
route keeps offsets of its own (a mirror or transactional handler, in its database).

The stored offsets are read in the assignment callback, but sought after the poll that ran it
returns: Kafka's client owns a partition only once the callback has returned, and that poll's
records of a sought partition (read from the group's offset) are dropped, to be read again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ferryman.broker.base import Consumer
from ferryman.records import Polled, TopicPartition
from ferryman.runtime.handlers import Route


def stored_positions(
    routes: Mapping[str, Route], partitions: set[TopicPartition]
) -> dict[TopicPartition, int]:
    """The stored next offset of each of ``partitions`` whose route keeps its offsets
    (partitions without one keep the group's)."""
    wanted: dict[str, set[TopicPartition]] = {}
    for tp in partitions:
        route = routes.get(tp.topic)
        if route is not None and route.stored_offsets is not None:
            wanted.setdefault(tp.topic, set()).add(tp)
    positions: dict[TopicPartition, int] = {}
    for topic, tps in sorted(wanted.items()):
        load = routes[topic].stored_offsets
        assert load is not None
        positions.update(load(tps))
    return positions


def seek_pending(
    consumer: Consumer, pending: dict[TopicPartition, int], rows: Sequence[Polled]
) -> Sequence[Polled]:
    """Seek the partitions of ``pending`` still owned (emptying it); returns ``rows`` without
    those partitions' records, which were read from before the seek."""
    sought = set()
    owned = consumer.assignment()
    for tp, offset in sorted(pending.items()):
        if tp in owned:
            consumer.seek(tp, offset)
            sought.add((tp.topic, tp.partition))
    pending.clear()
    if not sought:
        return rows
    return [r for r in rows if (r[0], r[1]) not in sought]
