"""A client in its own OS process, for the contract tests that kill processes with SIGKILL.

    python proc_worker.py consume URL TOPIC GROUP [STALL_AFTER]
                                                    group member; logs to stdout what it handled;
                                                    after STALL_AFTER records it hangs before
                                                    committing (to be killed holding uncommitted work)
    python proc_worker.py produce URL TOPIC [COUNT [TAG]]
                                                    produces COUNT records (or until killed), values
                                                    TAG0, TAG1, ...; logs each acknowledgement

Every line is flushed before the next step, so what a killed process printed is what it did:

    assign P,P / revoke P,P      rebalance callbacks (partitions of TOPIC)
    handled P OFFSET VALUE       a record handled, printed *before* its offset is committed
    committed                    the records handled so far are committed
    stalled                      hanging with handled but uncommitted records
    ack P OFFSET VALUE           a record acknowledged (printed only after the acknowledgement)
    done                         every record acknowledged, clients closed
"""

from __future__ import annotations

import sys
import threading

from ferryman.broker import open_broker
from ferryman.errors import CommitFailed
from ferryman.records import TopicPartition

SESSION = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def names(parts: set[TopicPartition]) -> str:
    return ",".join(str(tp.partition) for tp in sorted(parts))


def consume(url: str, topic: str, group: str, stall_after: int | None) -> None:
    broker = open_broker(url)
    consumer = broker.consumer(group, auto_offset_reset="earliest", config=SESSION)
    consumer.subscribe(
        [topic],
        on_assign=lambda parts: say("assign " + names(parts)),
        on_revoke=lambda parts: say("revoke " + names(parts)),
    )
    handled = 0
    while True:
        # small batches, so a kill lands between handling and committing now and then
        records = consumer.poll(0.2, max_records=7)
        if not records:
            continue
        for r in records:
            say(f"handled {r.partition} {r.offset} {(r.value or b'').decode()}")
        handled += len(records)
        if stall_after is not None and handled >= stall_after:
            say("stalled")
            threading.Event().wait()
        nxt: dict[TopicPartition, int] = {}
        for r in records:
            nxt[r.topic_partition] = r.offset + 1
        try:
            consumer.commit(nxt)
            say("committed")
        except CommitFailed:
            # revoked meanwhile: the new owner re-reads from the last commit (at-least-once)
            say("commit-failed")


def produce(url: str, topic: str, count: int | None, tag: str) -> None:
    broker = open_broker(url)
    producer = broker.producer()
    seq = 0
    while count is None or seq < count:
        batch = []
        for _ in range(50 if count is None else min(50, count - seq)):
            value = f"{tag}{seq}".encode()
            batch.append((seq, producer.send(topic, value, key=b"key-%d" % (seq % 37))))
            seq += 1
        producer.flush(60.0)
        for n, future in batch:
            ack = future.result(60.0)
            say(f"ack {ack.partition} {ack.offset} {tag}{n}")
    producer.close()
    broker.close()
    say("done")


def main(argv: list[str]) -> None:
    role, url, topic, *rest = argv
    if role == "consume":
        consume(url, topic, rest[0], int(rest[1]) if len(rest) > 1 else None)
    elif role == "produce":
        count = int(rest[0]) if rest else None
        produce(url, topic, count, rest[1] if len(rest) > 1 else "")
    else:
        raise SystemExit(f"unknown role {role!r}: use consume or produce")


if __name__ == "__main__":
    main(sys.argv[1:])
