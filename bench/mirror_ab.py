"""``svc.mirror`` of two source trees, interleaved: the change in a mirror's rows/s and process
CPU per row, on one topic produced once.

Run: ``git archive <commit> src | tar -x -C /tmp/before`` then
``python bench/mirror_ab.py --before-src /tmp/before/src [--updates 40000] [--rounds 3]``.

Each run is a fresh process (``bench/mirror.py``'s ``mirror`` on the embedded broker and SQLite,
in a fresh group and table) with ``PYTHONPATH`` set to one tree; the trees alternate, so a noisy
neighbour hits both alike. CPU per row is the whole process's CPU time (startup included) over
the updates: on a shared host it moves less than the wall-clock rows/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
AFTER_SRC = BENCH.parent / "src"

SETUP = """
import sys
sys.path.insert(0, {bench!r})
import mirror as mb
from ferryman.topics import EntityTopic
topic = EntityTopic(
    "bench.accounts.ab", mb.Account, key="id", partitions=4,
    config={{"min.compaction.lag.ms": 86_400_000}},  # every run reads every update
)
broker, registry = "embedded:{tmp}/broker.db", "embedded:{tmp}/registry.db"
"""

PRODUCE = SETUP + "mb.produce(broker, registry, topic, {n}, max(1, {n} // 10))\n"

RUN = (
    SETUP
    + """
import time
end = mb.end_offsets(broker, topic.name)
cpu = time.process_time()
elapsed = mb.mirror(broker, registry, "sqlite:///{tmp}/mirror.db", topic, end, {poll})
print({n} / elapsed, (time.process_time() - cpu) / {n} * 1e6)
"""
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before-src", required=True, help="the src directory of the old tree")
    parser.add_argument("--updates", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=int, default=2000)
    args = parser.parse_args()
    trees = {"before": Path(args.before_src).resolve(), "after": AFTER_SRC}
    with tempfile.TemporaryDirectory(prefix="ferryman-ab-") as tmp:
        fill = {"bench": str(BENCH), "tmp": tmp, "n": args.updates, "poll": args.poll}
        env = dict(os.environ, PYTHONPATH=str(AFTER_SRC))
        subprocess.run([sys.executable, "-c", PRODUCE.format(**fill)], env=env, check=True)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                env = dict(os.environ, PYTHONPATH=str(src))
                done = subprocess.run(
                    [sys.executable, "-c", RUN.format(**fill)],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if done.returncode:
                    sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
                rate, cpu = (float(x) for x in done.stdout.split()[-2:])
                results[name].append((rate, cpu))
                print(f"{name:6s} {rate:9,.0f} rows/s  {cpu:6.1f} us CPU/row", flush=True)
        for name, runs in results.items():
            best = max(r for r, _ in runs)
            least = min(c for _, c in runs)
            print(f"{name:6s} best {best:9,.0f} rows/s  least {least:6.1f} us CPU/row")


if __name__ == "__main__":
    main()
