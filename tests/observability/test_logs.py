"""Structured logs: record coordinates on the dead-letter line, JSON and text formats, the rate
limit on repeated warnings, and the CLI's --log-format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass

import pytest
from tests.runtime.conftest import Env, run
from tests.waiting import eventually

from ferryman.observability.logs import JsonFormatter, RateLimit, TextFormatter
from ferryman.topics import EventTopic


@dataclass
class Job:
    n: int


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_dead_letter_line_names_the_record(env: Env) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    lines = Lines()
    logger = logging.getLogger("ferryman.runtime")
    logger.addHandler(lines)

    async def main() -> None:
        producer, worker = env.service("producer"), env.service("worker", retries=0)

        @worker.on(jobs)
        def work(job: Job) -> None:
            raise ValueError(f"job {job.n} fails")

        async with worker, producer:
            await producer.emit(jobs, Job(7))
            await eventually(lambda: worker.stats["dead_lettered"] == 1, env.timeout, "a DLQ")

    try:
        run(main())
    finally:
        logger.removeHandler(lines)
    record = next(r for r in lines.records if "sending to" in r.getMessage())
    line = json.loads(JsonFormatter("worker").format(record))
    assert line["level"] == "error"
    assert line["service"] == "worker"
    assert line["group"] == env.name("worker")
    assert (line["topic"], line["partition"], line["offset"]) == (jobs.name, 0, 0)
    assert isinstance(line["message_id"], str)
    assert len(line["message_id"]) > 8
    text = TextFormatter("worker").format(record)
    assert f"topic={jobs.name} partition=0 offset=0 message_id=" in text.splitlines()[0]


def test_repeated_warnings_are_rate_limited() -> None:
    limit = RateLimit(burst=3, interval=0.2)

    def warning(msg: str = "broker %s unreachable") -> logging.LogRecord:
        return logging.LogRecord("ferryman.x", logging.WARNING, __file__, 1, msg, ("b1",), None)

    passed = [limit.filter(warning()) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limit.filter(warning("another message %s"))  # another kind has its own budget
    info = logging.LogRecord("ferryman.x", logging.INFO, __file__, 1, "x", (), None)
    assert all(limit.filter(info) for _ in range(10))  # below WARNING: never limited
    limit.interval = 0.0  # the window is over
    after = warning()
    assert limit.filter(after)
    assert after.getMessage() == "broker b1 unreachable (7 similar lines suppressed)"


def test_a_bad_log_format_is_one_line_and_status_2() -> None:
    cli = [sys.executable, "-c", "from ferryman.cli import main; main()"]
    done = subprocess.run(
        [*cli, "run", "x:y", "--log-format", "xml"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--log-format 'xml': write json or text" in done.stderr


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_a_bad_http_port_is_one_line_and_status_2(port: str) -> None:
    cli = [sys.executable, "-c", "from ferryman.cli import main; main()"]
    done = subprocess.run([*cli, "run", "x:y", "--http-port", port], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"--http-port {port}: write a port from 1 to 65535" in done.stderr
