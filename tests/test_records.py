"""RecordBatch: a poll's records, as Records on demand and as plain rows."""

from __future__ import annotations

import pytest

from ferryman.records import Record, RecordBatch, Row

ROWS: list[Row] = [
    ("t", 0, 5, b"k", b"v", (), 1000),
    ("t", 1, 9, None, None, (("a", b"1"),), 2000),
    ("u", 0, 0, b"", b"", (), 0),
]


def test_iterating_gives_records_with_the_rows_fields() -> None:
    batch = RecordBatch(ROWS)
    records = list(batch)
    assert all(type(r) is Record for r in records)
    assert records[1].partition == 1
    assert records[1].value is None
    assert records[1].header("a") == b"1"
    assert [tuple(r) for r in records] == ROWS
    assert batch.rows == ROWS
    assert len(batch) == 3
    assert batch
    assert not RecordBatch()


def test_indexing_and_slicing() -> None:
    batch = RecordBatch(ROWS)
    assert batch[0] == Record("t", 0, 5, b"k", b"v", (), 1000)
    assert type(batch[-1]) is Record
    assert batch[-1].topic == "u"
    tail = batch[1:]
    assert isinstance(tail, RecordBatch)
    assert tail.rows == ROWS[1:]
    with pytest.raises(IndexError):
        batch[3]


def test_a_batch_equals_any_sequence_of_the_same_records() -> None:
    batch = RecordBatch(ROWS)
    assert batch == [Record(*row) for row in ROWS]
    assert batch == RecordBatch(list(ROWS))
    assert batch != [Record(*row) for row in ROWS[:2]]
    assert batch != [Record(*ROWS[0]), Record(*ROWS[1]), Record(*ROWS[1])]
    assert batch != ["not", "records", "!"]
    assert RecordBatch() == []
    assert RecordBatch() != [Record(*ROWS[0])]
    assert batch != "abc"
    assert batch != 3
    with pytest.raises(TypeError):
        hash(batch)


def test_of_and_repr_round_trip_records() -> None:
    records = [Record(*row) for row in ROWS]
    batch = RecordBatch.of(records)
    assert list(batch) == records
    assert all(type(row) is tuple for row in batch.rows)
    assert repr(RecordBatch(ROWS[:1])) == f"RecordBatch([{records[0]!r}])"


def test_the_rows_are_not_copied_from_a_list_and_the_batch_does_not_change_them() -> None:
    rows = list(ROWS)
    batch = RecordBatch(rows)
    list(batch), batch[0], batch[1:]
    assert batch.rows is rows
    assert rows == ROWS
