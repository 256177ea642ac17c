"""Damaged batch rows: found by their checksum (or by not decoding), reported as StorageError
naming where they are, and dropped by ``drop_damaged_batches`` so the rest of the log reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ferryman.broker.embedded import DroppedBatch, EmbeddedBroker, drop_damaged_batches
from ferryman.errors import StorageError
from ferryman.records import TopicPartition, TopicSpec


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A broker file whose topic ``t`` has three batch rows in partition 1: offsets 0, 1, 2."""
    file = tmp_path / "broker.db"
    broker = EmbeddedBroker(file, cleaner_interval=None)
    broker.admin().create_topic(TopicSpec("t", 2, {"cleanup.policy": "compact"}))
    producer = broker.producer()
    for i in range(3):
        producer.send("t", b"value %d" % i, key=b"k%d" % i, partition=1).result(10)
    broker.close()
    return file


def rows(path: Path, partition: int) -> list[tuple[int, bytes, int | None]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT b.id, b.data, b.crc FROM batches b JOIN partitions p "
            "ON b.id >> 40 = p.pid WHERE p.topic = 't' AND p.partition = ? ORDER BY b.id",
            (partition,),
        ).fetchall()


def damage(path: Path, index: int, data: bytes, *, keep_crc: bool = True) -> None:
    """Overwrite the data of partition 1's ``index``-th row (and drop its checksum, as in a file
    written before checksums, unless ``keep_crc``)."""
    batch_id, _, crc = rows(path, 1)[index]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE batches SET data = ?, crc = ? WHERE id = ?",
            (data, crc if keep_crc else None, batch_id),
        )


def read_values(path: Path) -> list[bytes | None]:
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:
        tp = TopicPartition("t", 1)
        end = broker.admin().offsets("t")[1].latest
        consumer = broker.consumer(None)
        consumer.assign([tp])
        values: list[bytes | None] = []
        while consumer.position(tp) < end:
            values += [r.value for r in consumer.poll(5)]
        return values
    finally:
        broker.close()


def test_every_batch_row_carries_a_checksum(path: Path) -> None:
    assert all(crc is not None for _, _, crc in rows(path, 1))


def test_a_flipped_byte_is_a_storage_error_naming_file_topic_partition_and_offsets(
    path: Path,
) -> None:
    _, data, _ = rows(path, 1)[1]
    flipped = bytearray(data)
    flipped[-1] ^= 0x01  # one bit of the value: still decodes, but is not what was written
    damage(path, 1, bytes(flipped))
    with pytest.raises(StorageError) as err:
        read_values(path)
    message = str(err.value)
    assert str(path) in message
    assert "topic 't' partition 1, offsets 1 to 1" in message
    assert "checksum" in message
    assert "drop_damaged_batches" in message


def test_a_row_from_before_checksums_that_does_not_parse_is_a_storage_error(path: Path) -> None:
    # this was a raw struct.error, on every restart
    damage(path, 1, b"\x01\x02\x03", keep_crc=False)
    with pytest.raises(StorageError, match="offsets 1 to 1: its bytes do not parse"):
        read_values(path)


def test_a_length_pointing_past_the_row_is_a_storage_error(path: Path) -> None:
    _, data, _ = rows(path, 1)[0]
    longer = bytearray(data)
    longer[12:16] = (10_000).to_bytes(4, "little")  # the value's length
    damage(path, 0, bytes(longer), keep_crc=False)
    with pytest.raises(StorageError, match="offsets 0 to 0"):
        read_values(path)


def test_rows_from_before_checksums_still_read(path: Path) -> None:
    for index in range(3):
        damage(path, index, rows(path, 1)[index][1], keep_crc=False)
    assert read_values(path) == [b"value 0", b"value 1", b"value 2"]


def test_a_file_written_before_checksums_opens_reads_and_gains_them(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE batches DROP COLUMN crc")
    assert read_values(path) == [b"value 0", b"value 1", b"value 2"]
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:
        assert broker.producer().send("t", b"new", partition=1).result(10).offset == 3
    finally:
        broker.close()
    assert [crc is None for _, _, crc in rows(path, 1)] == [True, True, True, False]
    assert read_values(path) == [b"value 0", b"value 1", b"value 2", b"new"]


def test_dropping_damaged_batches_lets_the_rest_of_the_log_read(path: Path) -> None:
    damage(path, 1, b"\x01\x02\x03")
    dropped = drop_damaged_batches(path)
    assert dropped == [DroppedBatch("t", 1, 1, 1, "its checksum does not match its bytes")]
    assert read_values(path) == [b"value 0", b"value 2"]
    assert drop_damaged_batches(path) == []
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:  # the log goes on after the gap
        assert broker.producer().send("t", b"more", partition=1).result(10).offset == 3
    finally:
        broker.close()


def test_the_cleaner_reports_a_damaged_batch_and_still_cleans_other_partitions(
    path: Path,
) -> None:
    damage(path, 1, b"\x01\x02\x03", keep_crc=False)
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:
        producer = broker.producer()
        for value in (b"old", b"new"):
            producer.send("t", value, key=b"same", partition=0).result(10)
        with pytest.raises(StorageError, match="topic 't' partition 1, offsets 1 to 1"):
            broker.clean()
        reader = broker.consumer(None)
        reader.assign([TopicPartition("t", 0)])
        assert [r.value for r in reader.poll(5)] == [b"new"]
    finally:
        broker.close()


def test_a_damaged_header_in_a_row_from_before_checksums_is_not_given_a_checksum(
    tmp_path: Path,
) -> None:
    """Readers trust a checksummed row's header blocks (decoding them only when read), so the
    cleaner must not stamp a checksum on an unchecked row whose headers do not parse."""
    file = tmp_path / "broker.db"
    broker = EmbeddedBroker(file, cleaner_interval=None)
    broker.admin().create_topic(
        TopicSpec("t", 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
    )
    producer = broker.producer()
    first = [
        producer.send("t", b"v0", key=b"k0", headers=(("ab", b"x"),), partition=0),
        producer.send("t", b"v1", key=b"k1", partition=0),
    ]
    producer.flush()
    for f in first:
        f.result(10)
    producer.send("t", b"v1b", key=b"k1", partition=0).result(10)  # makes the first row dirty
    broker.close()
    with sqlite3.connect(file) as conn:
        batch_id, data = conn.execute("SELECT id, data FROM batches ORDER BY id").fetchone()
        at = data.index(b"ab")
        bad = data[:at] + b"\xff\xfe" + data[at + 2 :]  # the header name is no longer UTF-8
        conn.execute("UPDATE batches SET data = ?, crc = NULL WHERE id = ?", (bad, batch_id))
    broker = EmbeddedBroker(file, cleaner_interval=None)
    try:
        with pytest.raises(StorageError, match="offsets 0 to 1: its bytes do not parse"):
            broker.clean(now_ms=2**50)
        consumer = broker.consumer(None)
        consumer.assign([TopicPartition("t", 0)])
        with pytest.raises(StorageError, match="offsets 0 to 1"):
            consumer.poll_rows(5)
    finally:
        broker.close()
    with sqlite3.connect(file) as conn:
        assert conn.execute("SELECT crc FROM batches WHERE id = ?", (batch_id,)).fetchone() == (
            None,
        )
    assert [d.first_offset for d in drop_damaged_batches(file)] == [0]
