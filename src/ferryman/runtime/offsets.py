"""Offset and pause bookkeeping of a consumer loop: pure, thread-free, unit-tested on its own.

Per partition: an epoch (bumped on revoke, so records fetched before a revoke are recognised
and dropped), the records fetched but not handled (in flight), the next offset to commit once
handled (done), and the offset last committed. A partition is paused when ``max_in_flight``
records are in flight and resumed once half is drained. Over all partitions that are read (not
paused), ``buffered`` counts what is in flight: the poll thread polls only while a full poll
fits under ``max_buffered``, so under normal load nothing is paused (on Kafka a pause throws
away what librdkafka prefetched). The caller serialises access (the consumer loop holds a
lock); nothing here blocks, sleeps or talks to a broker.
"""

from __future__ import annotations

from ferryman.records import TopicPartition


class Offsets:
    """What a consumer loop has fetched, handled and committed, per partition."""

    def __init__(self, max_in_flight: int, max_buffered: int | None = None) -> None:
        self._max_in_flight = max_in_flight
        self._max_buffered = max_in_flight if max_buffered is None else max_buffered
        self.buffered = 0
        """Records in flight of the partitions not paused."""
        self._epochs: dict[TopicPartition, int] = {}
        self._in_flight: dict[TopicPartition, int] = {}
        self._done: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._to_resume: set[TopicPartition] = set()

    def epoch(self, tp: TopicPartition) -> int:
        """The partition's current epoch: records of an older one were revoked."""
        return self._epochs.get(tp, 0)

    def fetched(self, tp: TopicPartition, count: int) -> bool:
        """Count ``count`` records of ``tp`` in flight; True if the partition must pause now."""
        in_flight = self._in_flight.get(tp, 0) + count
        self._in_flight[tp] = in_flight
        if tp in self._paused:
            return False
        self.buffered += count
        if in_flight >= self._max_in_flight:
            self._pause(tp)
            return True
        return False

    def _pause(self, tp: TopicPartition) -> None:
        self._paused.add(tp)
        self.buffered -= self._in_flight.get(tp, 0)

    def room_for(self, count: int) -> bool:
        """Whether ``count`` more records fit under ``max_buffered`` (the poll thread asks)."""
        return self.buffered + count <= self._max_buffered

    def progress(self) -> dict[TopicPartition, int]:
        """Where each partition with records in flight is, to tell later which moved."""
        return {tp: self._done.get(tp, -1) for tp, n in self._in_flight.items() if n}

    def stalled(self, since: dict[TopicPartition, int]) -> set[TopicPartition]:
        """Pause (and return) the read partitions that hold records in flight and handled none
        since ``since`` (a ``progress()``): their handler is stuck or slow, and must not hold
        the other partitions' room. They resume at half ``max_in_flight``, as any pause."""
        stuck = {
            tp
            for tp, n in self._in_flight.items()
            if n and tp not in self._paused and self._done.get(tp, -1) == since.get(tp)
        }
        for tp in stuck:
            self._pause(tp)
        return stuck

    def handled(self, tp: TopicPartition, epoch: int, offset: int, count: int) -> None:
        """``count`` records of ``tp``, up to ``offset``, were handled (or dead-lettered)."""
        if self._epochs.get(tp, 0) != epoch:
            return  # revoked meanwhile: the next owner reads them again
        self._done[tp] = offset + 1
        left = self._in_flight.get(tp, 0) - count
        self._in_flight[tp] = left
        if tp not in self._paused:
            self.buffered -= count
        elif left <= self._max_in_flight // 2:
            self._to_resume.add(tp)

    def must_resume(self) -> bool:
        """Whether some paused partition has drained to half (cheap: no set is built)."""
        return bool(self._to_resume)

    def take_resumes(self) -> set[TopicPartition]:
        """The paused partitions drained to half, now counted as resumed."""
        resume, self._to_resume = self._to_resume, set()
        self._paused -= resume
        for tp in resume:
            self.buffered += self._in_flight.get(tp, 0)
        return resume

    def to_commit(self) -> dict[TopicPartition, int]:
        """The next offset to read, per partition, where it moved since the last commit."""
        return {tp: off for tp, off in self._done.items() if self._committed.get(tp) != off}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """``offsets`` were committed."""
        self._committed.update(offsets)

    def commit_failed(self, offsets: dict[TopicPartition, int]) -> None:
        """A commit of ``offsets`` failed (the partitions moved): forget their done offsets."""
        for tp in offsets:
            self._done.pop(tp, None)

    def revoke(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Forget ``partitions`` (a new epoch each); returns their done offsets, to commit."""
        offsets = {tp: self._done[tp] for tp in partitions if tp in self._done}
        for tp in partitions:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
            held = self._in_flight.pop(tp, 0)
            if tp not in self._paused:
                self.buffered -= held
            self._done.pop(tp, None)
            self._committed.pop(tp, None)
            self._paused.discard(tp)
            self._to_resume.discard(tp)
        return offsets

    def in_flight(self) -> dict[TopicPartition, int]:
        """Records fetched but not handled, per partition that has any."""
        return {tp: n for tp, n in self._in_flight.items() if n}

    def paused(self) -> set[TopicPartition]:
        """Partitions paused for back-pressure."""
        return set(self._paused)
