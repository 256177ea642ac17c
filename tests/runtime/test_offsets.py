"""The consumer loop's bookkeeping on its own: epochs, in-flight counts, offsets, pauses."""

from __future__ import annotations

from ferryman.records import TopicPartition
from ferryman.runtime.offsets import Offsets

A = TopicPartition("orders", 0)
B = TopicPartition("orders", 1)


def test_a_partition_pauses_at_max_in_flight_once_and_resumes_at_half() -> None:
    offsets = Offsets(max_in_flight=10)
    assert offsets.fetched(A, 6) is False
    assert offsets.fetched(A, 4) is True, "10 in flight: pause"
    assert offsets.fetched(A, 3) is False, "already paused: not paused again"
    assert offsets.paused() == {A}
    offsets.handled(A, 0, offset=6, count=7)  # 6 left: not yet half
    assert not offsets.must_resume()
    offsets.handled(A, 0, offset=7, count=1)  # 5 left: half
    assert offsets.must_resume()
    assert offsets.take_resumes() == {A}
    assert offsets.paused() == set()
    assert not offsets.must_resume()
    assert offsets.in_flight() == {A: 5}


def test_done_offsets_are_committed_once_and_forgotten_when_a_commit_fails() -> None:
    offsets = Offsets(max_in_flight=100)
    offsets.fetched(A, 3)
    offsets.fetched(B, 2)
    offsets.handled(A, 0, offset=41, count=2)
    offsets.handled(B, 0, offset=7, count=2)
    assert offsets.to_commit() == {A: 42, B: 8}, "the next offset to read"
    offsets.committed({A: 42, B: 8})
    assert offsets.to_commit() == {}
    offsets.handled(A, 0, offset=42, count=1)
    assert offsets.to_commit() == {A: 43}
    offsets.commit_failed({A: 43})
    assert offsets.to_commit() == {}, "the partition moved: its next owner resumes"
    assert offsets.in_flight() == {}


def test_revoke_returns_done_offsets_and_ignores_what_the_old_epoch_handles_later() -> None:
    offsets = Offsets(max_in_flight=4)
    offsets.fetched(A, 4)
    offsets.fetched(B, 1)
    offsets.handled(A, 0, offset=10, count=1)
    assert offsets.revoke({A}) == {A: 11}
    assert offsets.epoch(A) == 1
    assert offsets.epoch(B) == 0
    assert offsets.paused() == set()
    assert offsets.in_flight() == {B: 1}
    offsets.handled(A, 0, offset=12, count=2)  # finished after the revoke: not counted
    assert offsets.to_commit() == {}
    assert offsets.in_flight() == {B: 1}
    assert offsets.revoke({A}) == {}, "nothing done in the new epoch"
    offsets.fetched(A, 1)
    offsets.handled(A, 2, offset=12, count=1)
    assert offsets.to_commit() == {A: 13}


def test_a_revoked_paused_partition_is_not_resumed() -> None:
    offsets = Offsets(max_in_flight=2)
    offsets.fetched(A, 2)
    offsets.handled(A, 0, offset=0, count=1)
    assert offsets.must_resume()
    offsets.revoke({A})
    assert offsets.take_resumes() == set()


def test_room_counts_the_partitions_being_read_and_frees_as_records_are_handled() -> None:
    offsets = Offsets(max_in_flight=100, max_buffered=10)
    assert offsets.room_for(10)
    offsets.fetched(A, 6)
    offsets.fetched(B, 2)
    assert offsets.room_for(2)
    assert not offsets.room_for(3), "8 in flight: a poll of 3 would pass max_buffered"
    offsets.handled(A, 0, offset=0, count=1)
    assert offsets.room_for(3)
    assert offsets.paused() == set(), "waiting for room pauses nothing"


def test_a_stalled_partition_is_paused_and_leaves_the_room_to_the_others() -> None:
    offsets = Offsets(max_in_flight=100, max_buffered=10)
    offsets.fetched(A, 5)
    offsets.fetched(B, 5)
    since = offsets.progress()
    offsets.handled(B, 0, offset=0, count=1)  # B moved, A did not
    assert offsets.stalled(since) == {A}
    assert offsets.paused() == {A}
    assert offsets.room_for(6), "A's records no longer hold the room"
    assert offsets.stalled(offsets.progress()) == {B}, "no progress since the new snapshot"
    offsets.handled(A, 0, offset=0, count=1)
    assert offsets.take_resumes() == {A}, "A moved: it resumes (under half in flight); B did not"
    assert not offsets.room_for(7), "A's records count again once it is read again"
    offsets.revoke({A})
    assert offsets.room_for(10), "revoked: its records count no more (B is paused)"
