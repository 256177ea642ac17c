"""Topic administration and offset inspection on the SQLite file."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping

from ferryman.broker.base import GroupMember
from ferryman.broker.embedded.group import now_ms
from ferryman.broker.embedded.storage import PID_SHIFT, Store, bump_topics_version, read, write
from ferryman.broker.embedded.topics import (
    DEFAULTS,
    check_config,
    check_name,
    check_partitions,
    normalize_policy,
)
from ferryman.broker.embedded.wakeup import Notifier
from ferryman.errors import (
    ClientClosed,
    GroupBusy,
    InvalidTopic,
    TopicExists,
    TopicMismatch,
    UnknownPartition,
    UnknownTopic,
)
from ferryman.records import PartitionOffsets, TopicInfo, TopicPartition, TopicSpec


def load_topic(conn: sqlite3.Connection, store: Store, name: str) -> tuple[int, dict[str, str]]:
    """(partitions, explicit config) of a topic; raises UnknownTopic."""
    rows = read(conn, store.path, "SELECT partitions, config FROM topics WHERE name = ?", (name,))
    if not rows:
        raise UnknownTopic(
            f"unknown topic {name!r}: create it first (admin.create_topic or a topic "
            "declaration); the embedded broker does not create topics on use"
        )
    partitions, config = rows[0]
    return int(partitions), json.loads(str(config))


class EmbeddedAdmin:
    """Admin of the embedded broker; safe to share between threads."""

    def __init__(self, store: Store, notifier: Notifier, clock: Callable[[], int]) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._conn: sqlite3.Connection | None = store.connect()
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ClientClosed("this admin client is closed; ask the broker for a new one")
        return self._conn

    def create_topic(self, spec: TopicSpec, *, exist_ok: bool = False) -> None:
        check_name(spec.name)
        check_partitions(spec.name, spec.partitions)
        config = dict(spec.config)
        check_config(spec.name, config)

        def body(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT partitions, config FROM topics WHERE name = ?", (spec.name,)
            ).fetchone()
            if row is not None:
                if not exist_ok:
                    raise TopicExists(
                        f"topic {spec.name!r} already exists; pass exist_ok=True to accept "
                        "an existing topic of the same shape"
                    )
                self._check_same(spec, int(row[0]), json.loads(row[1]))
                return False
            conn.execute(
                "INSERT INTO topics(name, partitions, config, created_ms) VALUES (?, ?, ?, ?)",
                (spec.name, spec.partitions, json.dumps(config, sort_keys=True), self._clock()),
            )
            conn.executemany(
                "INSERT INTO partitions(topic, partition) VALUES (?, ?)",
                [(spec.name, p) for p in range(spec.partitions)],
            )
            bump_topics_version(conn)
            return True

        self._store.check_file()
        with self._lock:
            created = write(self._c(), self._store.path, body)
        if created:
            self._notifier.notify()

    @staticmethod
    def _check_same(spec: TopicSpec, partitions: int, config: dict[str, str]) -> None:
        default = DEFAULTS["cleanup.policy"]
        have = normalize_policy(config.get("cleanup.policy", default))
        want = normalize_policy(spec.config.get("cleanup.policy", default))
        if partitions != spec.partitions or have != want:
            raise TopicMismatch(
                f"topic {spec.name!r} exists with {partitions} partitions and "
                f"cleanup.policy={have}, but is declared with {spec.partitions} partitions and "
                f"cleanup.policy={want}; change the declaration to match, or delete the topic "
                "(losing its records) and create it again"
            )

    def delete_topic(self, name: str) -> None:
        def body(conn: sqlite3.Connection) -> None:
            load_topic(conn, self._store, name)
            pids = [
                r[0] for r in conn.execute("SELECT pid FROM partitions WHERE topic = ?", (name,))
            ]
            for pid in pids:
                conn.execute(
                    "DELETE FROM batches WHERE id >= ? AND id < ?",
                    (pid << PID_SHIFT, (pid + 1) << PID_SHIFT),
                )
                conn.execute("DELETE FROM clean_marks WHERE pid = ?", (pid,))
            for table in ("partitions", "offsets", "owners"):
                conn.execute(f"DELETE FROM {table} WHERE topic = ?", (name,))
            conn.execute("DELETE FROM topics WHERE name = ?", (name,))
            bump_topics_version(conn)

        self._store.check_file()
        with self._lock:
            write(self._c(), self._store.path, body)
        self._notifier.notify()

    def alter_topic(
        self, name: str, *, partitions: int | None = None, config: Mapping[str, str] | None = None
    ) -> None:
        def body(conn: sqlite3.Connection) -> None:
            have, settings = load_topic(conn, self._store, name)
            wanted = {**settings, **(config or {})}
            check_config(name, wanted)
            more = have if partitions is None else partitions
            check_partitions(name, more)
            if more < have:
                raise InvalidTopic(
                    f"topic {name!r} has {have} partitions; a topic cannot lose partitions "
                    f"(their records would go): declare partitions={have} or more"
                )
            conn.execute(
                "UPDATE topics SET partitions = ?, config = ? WHERE name = ?",
                (more, json.dumps(wanted, sort_keys=True), name),
            )
            conn.executemany(
                "INSERT INTO partitions(topic, partition) VALUES (?, ?)",
                [(name, p) for p in range(have, more)],
            )
            bump_topics_version(conn)

        self._store.check_file()
        with self._lock:
            write(self._c(), self._store.path, body)
        self._notifier.notify()

    def describe_topic(self, name: str) -> TopicInfo:
        with self._lock:
            partitions, config = load_topic(self._c(), self._store, name)
        return TopicInfo(
            name, partitions, {**DEFAULTS, **config}, frozenset(DEFAULTS.keys() - config)
        )

    def list_topics(self) -> list[str]:
        with self._lock:
            rows = read(self._c(), self._store.path, "SELECT name FROM topics ORDER BY name")
        return [str(r[0]) for r in rows]

    def offsets(self, topic: str) -> dict[int, PartitionOffsets]:
        with self._lock:
            conn = self._c()
            load_topic(conn, self._store, topic)
            rows = read(
                conn,
                self._store.path,
                "SELECT partition, log_start, next_offset FROM partitions WHERE topic = ?",
                (topic,),
            )
        return {int(p): PartitionOffsets(int(s), int(n)) for p, s, n in rows}

    def committed(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        sql = "SELECT topic, partition, offset FROM offsets WHERE group_id = ?"
        params: tuple[object, ...] = (group,)
        if topic is not None:
            sql += " AND topic = ?"
            params = (group, topic)
        with self._lock:
            rows = read(self._c(), self._store.path, sql, params)
        return {TopicPartition(str(t), int(p)): int(o) for t, p, o in rows}

    def group_lag(self, group: str, topic: str) -> dict[TopicPartition, int]:
        bounds = self.offsets(topic)
        done = self.committed(group, topic)
        lag: dict[TopicPartition, int] = {}
        for p, o in sorted(bounds.items()):
            tp = TopicPartition(topic, p)
            position = max(done.get(tp, o.earliest), o.earliest)
            lag[tp] = max(o.latest - position, 0)
        return lag

    def list_groups(self) -> list[str]:
        sql = "SELECT group_id FROM offsets UNION SELECT group_id FROM members ORDER BY 1"
        with self._lock:
            rows = read(self._c(), self._store.path, sql)
        return [str(r[0]) for r in rows]

    def group_members(self, group: str) -> list[GroupMember]:
        with self._lock:
            conn = self._c()
            members = read(
                conn,
                self._store.path,
                "SELECT member_id, heartbeat_ms, session_ms FROM members WHERE group_id = ? "
                "ORDER BY member_id",
                (group,),
            )
            owners = read(
                conn,
                self._store.path,
                "SELECT member_id, topic, partition FROM owners WHERE group_id = ?",
                (group,),
            )
        now = now_ms()
        owned: dict[str, set[TopicPartition]] = {}
        for member, topic, partition in owners:
            owned.setdefault(str(member), set()).add(TopicPartition(str(topic), int(partition)))
        # A member whose heartbeat is older than its session is dead, though not yet expired
        # (the group's next join or heartbeat removes it).
        return [
            GroupMember(str(m), "", frozenset(owned.get(str(m), ())))
            for m, beat, session in members
            if abs(now - int(beat)) <= int(session)
        ]

    def reset_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        def body(conn: sqlite3.Connection) -> None:
            # Checked in the writing transaction, so no member can join between check and write.
            (live,) = conn.execute(
                "SELECT count(*) FROM members WHERE group_id = ?1 "
                "AND abs(?2 - heartbeat_ms) <= session_ms",
                (group, now_ms()),
            ).fetchone()
            if live:
                raise GroupBusy(_busy(group, int(live)))
            for tp, offset in offsets.items():
                partitions, _ = load_topic(conn, self._store, tp.topic)
                if not 0 <= tp.partition < partitions:
                    raise UnknownPartition(
                        f"{tp} does not exist: topic {tp.topic!r} has {partitions} partitions"
                    )
                conn.execute(
                    "INSERT OR REPLACE INTO offsets(group_id, topic, partition, offset) "
                    "VALUES (?, ?, ?, ?)",
                    (group, tp.topic, tp.partition, int(offset)),
                )

        self._store.check_file()
        with self._lock:
            write(self._c(), self._store.path, body)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _busy(group: str, members: int) -> str:
    return (
        f"group {group!r} has {members} live member(s); stop its consumers (every process of "
        "the service) before resetting its offsets, so none commits over the reset"
    )
