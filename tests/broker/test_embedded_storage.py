"""The embedded broker's file: bad files and paths fail clearly; good ones persist."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.waiting import wait_until

from ferryman.broker import open_broker
from ferryman.broker.embedded import EmbeddedBroker, storage
from ferryman.errors import IncompatibleStorage, ProduceError, StorageError
from ferryman.records import TopicPartition, TopicSpec


def open_at(path: Path) -> EmbeddedBroker:
    return EmbeddedBroker(path, cleaner_interval=None)


def test_creates_parent_directories_and_persists_records(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "broker.db"
    broker = open_at(path)
    broker.admin().create_topic(TopicSpec("t", 2, {"cleanup.policy": "compact"}))
    producer = broker.producer()
    meta = producer.send("t", b"v", key=b"k", headers=(("h", b"\xff\x00"),)).result(10)
    broker.close()

    again = open_at(path)
    try:
        admin = again.admin()
        assert admin.describe_topic("t").config["cleanup.policy"] == "compact"
        assert admin.offsets("t")[meta.partition].latest == 1
    finally:
        again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_broker_url_gives_the_embedded_broker(tmp_path: Path) -> None:
    broker = open_broker(f"embedded:{tmp_path / 'b.db'}")
    try:
        assert isinstance(broker, EmbeddedBroker)
    finally:
        broker.close()


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StorageError, match="not a valid SQLite database") as err:
        open_at(path)
    assert str(path) in str(err.value)
    assert "FERRYMAN_BROKER" in str(err.value)


def test_a_corrupt_broker_file(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    open_at(path).close()
    with sqlite3.connect(path) as conn:  # fold the WAL into the file so the damage sticks
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(path.read_bytes())
    raw[100:4096] = b"\xa5" * (4096 - 100)  # the schema page, after the file header
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="corrupt") as err:
        open_at(path)
    assert str(path) in str(err.value)


def test_another_applications_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY)")
    with pytest.raises(StorageError, match="not an embedded broker file"):
        open_at(path)
    with sqlite3.connect(path) as conn:  # left untouched
        assert conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 0


@pytest.mark.parametrize("version", [2, 99])
def test_a_file_from_an_incompatible_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "broker.db"
    open_at(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={version}")
    with pytest.raises(IncompatibleStorage, match="newer version of ferryman") as err:
        open_at(path)
    assert "schema 1" in str(err.value)


def test_a_file_from_an_older_version(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    open_at(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=-1")
    with pytest.raises(IncompatibleStorage, match="older version"):
        open_at(path)


def test_a_path_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot open") as err:
        open_at(blocker / "broker.db")
    assert "embedded:PATH" in str(err.value)


def test_a_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a directory"):
        open_at(tmp_path)


def test_a_path_that_is_not_a_regular_file() -> None:
    with pytest.raises(StorageError, match="'/dev/null' is not a regular file"):
        open_at(Path("/dev/null"))


@pytest.mark.parametrize("path", ["/proc/x/r.db", "/proc/self/r.db"])
def test_a_path_where_no_file_can_be_created(path: str) -> None:
    # through the URL too: a raw FileNotFoundError told the user nothing about embedded:PATH
    with pytest.raises(StorageError, match="cannot open the embedded broker file") as err:
        open_broker(f"embedded:{path}")
    assert path in str(err.value)
    assert "choose another path with embedded:PATH" in str(err.value)


def test_the_file_damaged_while_open_fails_with_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    broker = open_at(path)
    try:
        broker.admin().create_topic(TopicSpec("t", 1))
        broker.close()
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = bytearray(path.read_bytes())
        raw[:16] = b"garbage garbage!"
        path.write_bytes(bytes(raw))
        with pytest.raises(StorageError):
            open_at(path)
    finally:
        broker.close()


@pytest.mark.parametrize("what", ["deleted", "replaced"])
def test_a_file_deleted_or_replaced_under_running_clients_fails_them_loudly(
    tmp_path: Path, what: str
) -> None:
    path = tmp_path / "broker.db"
    broker = open_at(path)
    try:
        broker.admin().create_topic(TopicSpec("t", 1))
        producer = broker.producer()
        reader = broker.consumer("g")
        reader.subscribe(["t"])
        producer.send("t", b"before").result(10)
        wait_until(lambda: reader.poll(0.1), 30, "the record produced before")
        if what == "deleted":
            path.unlink()
        else:
            open_at(tmp_path / "other.db").close()
            (tmp_path / "other.db").replace(path)
        # acknowledging this would be a lie: it would vanish with the process
        with pytest.raises(ProduceError, match=f"{what}") as err:
            producer.send("t", b"after").result(10)
        assert str(path) in str(err.value)
        for call in (lambda: reader.poll(0.1), lambda: reader.commit({TopicPartition("t", 0): 1})):
            with pytest.raises(StorageError, match=f"{str(path)!r} was {what}"):
                call()
        with pytest.raises(StorageError, match=what):
            broker.admin().create_topic(TopicSpec("u", 1))
    finally:
        broker.close()


def test_the_wal_is_copied_back_into_the_file_while_the_broker_runs(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    broker = open_at(path)
    try:
        broker.admin().create_topic(TopicSpec("t", 1))
        producer = broker.producer()
        for _ in range(6000):
            producer.send("t", b"x" * 1000)
        assert producer.flush(60) == 0
        # commits do not checkpoint (that would stall producers); the background thread does
        wait_until(
            lambda: path.stat().st_size >= 5_000_000,
            30,
            lambda: f"the WAL checkpointed: the file is {path.stat().st_size} bytes",
        )
    finally:
        broker.close()


def test_the_wal_is_cut_back_once_readers_that_held_it_move_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "WAL_LIMIT", 1 << 20)
    path = tmp_path / "broker.db"
    wal = tmp_path / "broker.db-wal"
    broker = open_at(path)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        broker.admin().create_topic(TopicSpec("t", 1))
        # a reader in the middle of a read keeps the WAL from being reused: it grows
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM batches").fetchall()
        producer = broker.producer()
        for _ in range(8000):
            producer.send("t", b"x" * 1000)
        assert producer.flush(60) == 0
        assert wal.stat().st_size > 4 << 20
        reader.execute("COMMIT")
        wait_until(
            lambda: wal.stat().st_size <= 1 << 20,
            30,
            lambda: f"the WAL cut back: it is {wal.stat().st_size} bytes",
        )
    finally:
        reader.close()
        broker.close()


_FILL_UNTIL_FULL = """
import resource, signal, sys
from ferryman.broker.embedded import EmbeddedBroker
from ferryman.errors import ProduceError
broker = EmbeddedBroker(sys.argv[1], cleaner_interval=None)
producer = broker.producer()
# the file may grow no further than this, as on a full disk
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
acked = 0
for i in range(10_000):
    try:
        producer.send("t", b"%06d" % i + bytes(994), partition=0).result(60)
    except ProduceError as exc:
        print(acked)
        print(exc)
        break
    acked += 1
broker.close()
"""


def test_a_full_disk_fails_unacknowledged_records_and_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    broker = open_at(path)
    broker.admin().create_topic(TopicSpec("t", 1))
    broker.close()
    out = subprocess.run(
        [sys.executable, "-c", _FILL_UNTIL_FULL, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 2, "the file never filled up"
    acked, message = int(out[0]), out[1]
    assert acked > 0
    assert "disk" in message
    assert "free" in message, message  # says what to do, not only what SQLite said

    again = open_at(path)
    try:
        reader = again.consumer(None)
        reader.assign([TopicPartition("t", 0)])
        got: list[bytes | None] = []
        while len(got) < acked:
            batch = reader.poll(10)
            assert batch, f"only {len(got)} of {acked} acknowledged records are readable"
            got += [r.value for r in batch]
        assert [v[:6] for v in got[:acked] if v is not None] == [b"%06d" % i for i in range(acked)]
    finally:
        again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
