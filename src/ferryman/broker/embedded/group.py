"""Consumer groups in the SQLite file: members, generations, assignment and ownership.

Every membership change (join, leave, a member declared dead) bumps the group's generation.
Each member computes the assignment for the current generation itself, deterministically from
the member rows. Ownership is a separate table: a member releases a partition it lost (after
``on_revoke``) before the new owner may claim it, so a partition never has two live owners;
a dead member's partitions are freed when it is expired. Commits are accepted only from the
owner.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from ferryman.broker.embedded.storage import write
from ferryman.errors import CommitFailed, ConfigError
from ferryman.records import TopicPartition

STRATEGIES = {"range": "range", "roundrobin": "roundrobin", "cooperative-sticky": "roundrobin"}
"""Accepted ``partition.assignment.strategy`` values (librdkafka's names) and what they mean here."""


def strategy_of(value: str | None) -> str:
    if value is None:
        return "range"
    for name in value.split(","):
        if name.strip() in STRATEGIES:
            return STRATEGIES[name.strip()]
    raise ConfigError(
        f"partition.assignment.strategy={value!r} is not supported by the embedded broker; "
        f"use one of {', '.join(STRATEGIES)}"
    )


def now_ms() -> int:
    # wall-clock time, because members in different processes compare heartbeats
    return time.time_ns() // 1_000_000


def assign(
    members: list[tuple[str, set[str]]], partitions: dict[str, int], strategy: str
) -> dict[str, set[TopicPartition]]:
    """The partitions each member owns: a pure function of sorted members and topic sizes."""
    members = sorted(members)
    out: dict[str, set[TopicPartition]] = {m: set() for m, _ in members}
    if strategy == "roundrobin":
        turn = 0
        for topic in sorted(partitions):
            subs = [m for m, topics in members if topic in topics]
            for p in range(partitions[topic]):
                if not subs:
                    break
                # the next member in the global cycle that subscribes to this topic
                while members[turn % len(members)][0] not in subs:
                    turn += 1
                out[members[turn % len(members)][0]].add(TopicPartition(topic, p))
                turn += 1
        return out
    for topic in sorted(partitions):
        subs = [m for m, topics in members if topic in topics]
        if not subs:
            continue
        per, extra = divmod(partitions[topic], len(subs))
        start = 0
        for i, member in enumerate(subs):
            n = per + (1 if i < extra else 0)
            out[member].update(TopicPartition(topic, p) for p in range(start, start + n))
            start += n
    return out


class Membership:
    """One member's view of its group; every method takes the caller's connection."""

    def __init__(
        self, path: Path, group_id: str, member_id: str, session_ms: int, strategy: str
    ) -> None:
        self.path = path
        self.group_id = group_id
        self.member_id = member_id
        self.session_ms = session_ms
        self.strategy = strategy
        self._grace_until = 0

    def _bump(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO groups(group_id, generation) VALUES (?, 1) "
            "ON CONFLICT(group_id) DO UPDATE SET generation = generation + 1",
            (self.group_id,),
        )

    def _expire(self, conn: sqlite3.Connection, now: int) -> bool:
        # Every member runs on this machine and reads the same wall clock, so a heartbeat
        # more than a session in the future means the clock was set back: without the second
        # test, a member that died then would hold its partitions until the clock caught up.
        dead = conn.execute(
            "DELETE FROM members WHERE group_id = ?1 AND member_id != ?2 "
            "AND (heartbeat_ms < ?3 - session_ms OR heartbeat_ms > ?3 + session_ms) "
            "RETURNING member_id",
            (self.group_id, self.member_id, now),
        ).fetchall()
        if dead:
            conn.execute(
                "DELETE FROM owners WHERE group_id = ? AND member_id NOT IN "
                "(SELECT member_id FROM members WHERE group_id = ?)",
                (self.group_id, self.group_id),
            )
            self._bump(conn)
        return bool(dead)

    def join(self, conn: sqlite3.Connection, topics: Iterable[str]) -> None:
        def body(c: sqlite3.Connection) -> None:
            now = now_ms()
            self._expire(c, now)
            c.execute(
                "INSERT OR REPLACE INTO members(group_id, member_id, topics, strategy, "
                "heartbeat_ms, session_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    self.group_id,
                    self.member_id,
                    json.dumps(sorted(set(topics))),
                    self.strategy,
                    now,
                    self.session_ms,
                ),
            )
            self._bump(c)

        write(conn, self.path, body, patient=True)

    def leave(self, conn: sqlite3.Connection) -> None:
        def body(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM owners WHERE group_id = ? AND member_id = ?",
                (self.group_id, self.member_id),
            )
            gone = c.execute(
                "DELETE FROM members WHERE group_id = ? AND member_id = ?",
                (self.group_id, self.member_id),
            ).rowcount
            if gone:
                self._bump(c)

        write(conn, self.path, body)

    def heartbeat(self, conn: sqlite3.Connection) -> tuple[bool, bool]:
        """(still a member, the group changed because someone was expired)."""

        def body(c: sqlite3.Connection) -> tuple[bool, bool]:
            now = now_ms()
            before = c.execute(
                "SELECT heartbeat_ms FROM members WHERE group_id = ? AND member_id = ?",
                (self.group_id, self.member_id),
            ).fetchone()
            if before is None:
                return False, self._expire(c, now)
            if now - int(before[0]) > self.session_ms:
                # this member could not beat for a whole session: the file was most likely
                # locked, and the others could not beat either; give them a session to do so
                # before declaring them dead
                self._grace_until = now + self.session_ms
            c.execute(
                "UPDATE members SET heartbeat_ms = ? WHERE group_id = ? AND member_id = ?",
                (now, self.group_id, self.member_id),
            )
            return True, now >= self._grace_until and self._expire(c, now)

        return write(conn, self.path, body)

    def view(self, conn: sqlite3.Connection) -> tuple[int, int, bool]:
        """(generation, topics version, still a member): what decides the assignment."""
        row = conn.execute(
            "SELECT (SELECT generation FROM groups WHERE group_id = ?), "
            "(SELECT value FROM meta WHERE key = 'topics_version'), "
            "EXISTS(SELECT 1 FROM members WHERE group_id = ? AND member_id = ?)",
            (self.group_id, self.group_id, self.member_id),
        ).fetchone()
        return int(row[0] or 0), int(row[1]), bool(row[2])

    def target(self, conn: sqlite3.Connection) -> set[TopicPartition]:
        """The partitions the current generation gives this member."""
        rows = conn.execute(
            "SELECT member_id, topics, strategy FROM members WHERE group_id = ? ORDER BY member_id",
            (self.group_id,),
        ).fetchall()
        members = [(m, set(json.loads(t))) for m, t, _ in rows]
        strategy = rows[0][2] if rows else self.strategy
        wanted = set().union(*(t for _, t in members)) if members else set()
        sizes = {
            str(name): int(n)
            for name, n in conn.execute("SELECT name, partitions FROM topics").fetchall()
            if name in wanted
        }
        return assign(members, sizes, strategy).get(self.member_id, set())

    def claim(
        self, conn: sqlite3.Connection, wanted: set[TopicPartition], generation: int
    ) -> set[TopicPartition] | None:
        """Take the free ones of ``wanted``; None if the generation moved on meanwhile."""

        def body(c: sqlite3.Connection) -> set[TopicPartition] | None:
            row = c.execute(
                "SELECT generation FROM groups WHERE group_id = ?", (self.group_id,)
            ).fetchone()
            if row is None or int(row[0]) != generation:
                return None
            got: set[TopicPartition] = set()
            for tp in sorted(wanted):
                taken = c.execute(
                    "INSERT INTO owners(group_id, topic, partition, member_id) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(group_id, topic, partition) DO UPDATE SET "
                    "member_id = excluded.member_id WHERE owners.member_id = excluded.member_id "
                    "OR owners.member_id NOT IN (SELECT member_id FROM members WHERE group_id = ?)",
                    (self.group_id, tp.topic, tp.partition, self.member_id, self.group_id),
                ).rowcount
                if taken:
                    got.add(tp)
            return got

        return write(conn, self.path, body, patient=True)

    def release(self, conn: sqlite3.Connection, partitions: Iterable[TopicPartition]) -> None:
        rows = [(self.group_id, tp.topic, tp.partition, self.member_id) for tp in partitions]

        def body(c: sqlite3.Connection) -> None:
            c.executemany(
                "DELETE FROM owners WHERE group_id = ? AND topic = ? AND partition = ? "
                "AND member_id = ?",
                rows,
            )

        write(conn, self.path, body, patient=True)

    def check_owner(self, conn: sqlite3.Connection, partitions: Iterable[TopicPartition]) -> None:
        """Inside a write transaction: raise CommitFailed unless this member owns them all."""
        for tp in partitions:
            row = conn.execute(
                "SELECT member_id FROM owners WHERE group_id = ? AND topic = ? AND partition = ?",
                (self.group_id, tp.topic, tp.partition),
            ).fetchone()
            if row is None or row[0] != self.member_id:
                raise CommitFailed(
                    f"cannot commit {tp} for group {self.group_id!r}: this member no longer "
                    "owns it (the group rebalanced, or the member missed its heartbeats); "
                    "its records will be redelivered to the new owner, so drop the work and "
                    "poll again"
                )
