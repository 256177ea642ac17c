"""At-least-once and durability across real OS processes killed with SIGKILL.

The clients run ``proc_worker.py`` in their own processes; each prints what it did (flushed line
by line) into a file, which is what a killed process leaves behind as evidence.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ferryman.testing.contract.backend import Backend
from ferryman.testing.contract.helpers import by_partition, produce_n
from ferryman.testing.waiting import wait_until

WORKER = Path(__file__).with_name("proc_worker.py")


@dataclass
class Worker:
    """A client process and the file its stdout goes to."""

    name: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def lines(self) -> list[list[str]]:
        """The complete lines printed so far (a line cut by a kill is dropped)."""
        text = self.out.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [line.split() for line in complete.splitlines()]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30.0)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited: {self.err.read_text()[-3000:]}")


@dataclass
class MemberLog:
    """A consumer worker's log replayed: what it owns now and what it handled."""

    owned: set[int] = field(default_factory=set)
    handled: list[tuple[int, int, str]] = field(default_factory=list)


def replay(worker: Worker) -> MemberLog:
    """Replay a consumer's log, checking that within each period of owning a partition it
    handled consecutive offsets (nothing skipped, nothing out of order) and only owned ones."""
    log = MemberLog()
    last: dict[int, int | None] = {}
    for words in worker.lines():
        kind, args = words[0], words[1:]
        if kind in ("assign", "revoke"):
            parts = {int(p) for p in args[0].split(",")} if args else set()
            if kind == "assign":
                log.owned |= parts
                last.update(dict.fromkeys(parts))
            else:
                log.owned -= parts
        elif kind == "handled":
            p, offset = int(args[0]), int(args[1])
            assert p in log.owned, f"{worker.name} handled {p}@{offset} without owning {p}"
            prev = last[p]
            assert prev is None or offset == prev + 1, (
                f"{worker.name} went from {p}@{prev} to {p}@{offset}: skipped or out of order"
            )
            last[p] = offset
            log.handled.append((p, offset, args[2] if len(args) > 2 else ""))
    return log


Spawn = Callable[..., Worker]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    started: list[Worker] = []

    def start(name: str, *args: str) -> Worker:
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(WORKER), *args], stdout=stdout, stderr=stderr
            )
        worker = Worker(name, process, out, err)
        started.append(worker)
        return worker

    yield start
    for w in started:
        if w.process.poll() is None:
            w.kill()


def test_group_members_in_two_processes_split_and_survive_sigkill(
    backend: Backend, spawn: Spawn
) -> None:
    topic = backend.topic(4)
    group = backend.group()
    producer = backend.producer()
    everything = set(range(4))
    values: dict[tuple[int, int], str] = {}

    def produce(start: int, n: int) -> None:
        acks = produce_n(
            producer,
            topic,
            n,
            key=lambda i: b"k%d" % (start + i),
            value=lambda i: b"%d" % (start + i),
        )
        for i, a in enumerate(acks):
            values[(a.partition, a.offset)] = str(start + i)

    produce(0, 400)
    # the member to be killed hangs, holding handled but uncommitted records, after 600
    a = spawn("a", "consume", backend.shared_url(), topic, group, "600")
    b = spawn("b", "consume", backend.shared_url(), topic, group)

    def split() -> bool:
        a.check_alive()
        b.check_alive()
        mine, theirs = replay(a).owned, replay(b).owned
        return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == everything

    wait_until(split, 2 * backend.join_timeout, lambda: (replay(a).owned, replay(b).owned))
    a_owned = replay(a).owned

    produce(400, 2000)
    wait_until(
        lambda: ["stalled"] in a.lines(), backend.join_timeout, lambda: len(replay(a).handled)
    )
    a.kill()
    produce(2400, 400)

    def taken_over() -> bool:
        b.check_alive()
        log_b = replay(b)
        seen = {(p, o) for p, o, _ in replay(a).handled + log_b.handled}
        return log_b.owned == everything and seen >= set(values)

    wait_until(
        taken_over,
        3 * backend.join_timeout,
        lambda: (replay(b).owned, len(values) - len({(p, o) for p, o, _ in replay(b).handled})),
    )

    log_a, log_b = replay(a), replay(b)
    handled = log_a.handled + log_b.handled
    assert {(p, o) for p, o, _ in handled} == set(values), "a record was skipped"
    for p, o, v in handled:
        assert values[(p, o)] == v, f"{p}@{o} handled as {v}, written as {values[(p, o)]}"
    # what the killed member handled after its last commit was handled again by the survivor
    lines_a = a.lines()
    last_commit = max(i for i, words in enumerate(lines_a) if words == ["committed"])
    uncommitted = {(int(w[1]), int(w[2])) for w in lines_a[last_commit:] if w[0] == "handled"}
    assert uncommitted, "the killed member held no uncommitted records"
    assert uncommitted <= {(p, o) for p, o, _ in log_b.handled}, "uncommitted records were lost"
    # the survivor really handled records of the partitions the killed member owned
    assert {p for p, _, v in log_b.handled if int(v) >= 2400} >= a_owned


def test_acknowledged_records_survive_a_producer_killed_mid_stream(
    backend: Backend, spawn: Spawn
) -> None:
    topic = backend.topic(3)
    producer = spawn("producer", "produce", backend.shared_url(), topic)

    def enough_acks() -> int:
        producer.check_alive()
        return len(producer.lines()) >= 1000

    wait_until(enough_acks, backend.join_timeout, lambda: len(producer.lines()))
    producer.kill()
    acks = [(int(p), int(o), s) for _, p, o, s in producer.lines()]
    assert len({(p, o) for p, o, _ in acks}) == len(acks), "two acknowledgements for one offset"

    stored = {(r.partition, r.offset): r for r in backend.read_all(topic)}
    for p, o, seq in acks:
        assert (p, o) in stored, f"acknowledged record {seq} at {p}@{o} is gone"
        assert stored[(p, o)].value == seq.encode()
        assert stored[(p, o)].key == b"key-%d" % (int(seq) % 37)

    # the log stays writable after the kill, and offsets go on from where they were
    ack = produce_n(backend.producer(), topic, 1, partition=0)[0]
    assert ack.offset > max((o for p, o, _ in acks if p == 0), default=-1)


def test_producers_in_many_processes_at_once_lose_nothing(backend: Backend, spawn: Spawn) -> None:
    topic = backend.topic(3)
    tags = ["a", "b", "c", "d"]
    producers = [
        spawn(f"producer-{t}", "produce", backend.shared_url(), topic, "1500", t) for t in tags
    ]

    def all_done() -> bool:
        for p in producers:
            if p.process.poll() not in (None, 0):
                raise AssertionError(f"{p.name} failed: {p.err.read_text()[-3000:]}")
        return all(p.process.poll() == 0 for p in producers)

    wait_until(all_done, 4 * backend.join_timeout, lambda: [len(p.lines()) for p in producers])
    acks: dict[tuple[int, int], str] = {}
    for p in producers:
        lines = p.lines()
        assert lines[-1] == ["done"]
        for _, partition, offset, value in lines[:-1]:
            acks[(int(partition), int(offset))] = value
    assert len(acks) == 4 * 1500, "two records acknowledged at one offset"

    records = backend.read_all(topic)
    assert {(r.partition, r.offset): (r.value or b"").decode() for r in records} == acks
    # each producer's records keep its send order within a partition
    for tag in tags:
        for part, rs in by_partition(
            r for r in records if (r.value or b"").startswith(tag.encode())
        ).items():
            seqs = [int((r.value or b"")[1:]) for r in rs]
            assert seqs == sorted(seqs), f"producer {tag} reordered in partition {part}"
