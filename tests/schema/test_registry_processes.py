"""The embedded registry shared by several processes at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ferryman.schema import EmbeddedRegistry, canonical

WORKER = """
import json, sys
from ferryman.schema import EmbeddedRegistry

path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
registry = EmbeddedRegistry(path)
registry.set_compatibility("NONE", "shared-value")
ids = {}
for i in range(count):
    shared = {"type": "record", "name": "Shared", "fields": [{"name": "a", "type": "long"}]}
    own = {"type": "record", "name": f"W{worker}N{i}", "fields": [{"name": "a", "type": "long"}]}
    ids["shared"] = registry.register("shared-value", shared)
    ids[f"W{worker}N{i}"] = registry.register("shared-value", own)
print(json.dumps(ids))
"""


def test_processes_registering_at_once_get_consistent_versions_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    workers, count = 4, 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(w), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    with EmbeddedRegistry(path) as registry:
        versions = registry.versions("shared-value")
        # One version per distinct schema, numbered without gaps or duplicates.
        assert versions == list(range(1, workers * count + 2))
        shared_ids = {r["shared"] for r in results}
        assert len(shared_ids) == 1
        all_ids = [i for r in results for name, i in r.items() if name != "shared"]
        assert len(set(all_ids)) == workers * count
        assert shared_ids.isdisjoint(all_ids)
        for r in results:
            for name, schema_id in r.items():
                schema = registry.get_schema(schema_id)
                assert isinstance(schema, dict)
                assert schema["name"] == ("Shared" if name == "shared" else name)
        seen = {canonical(registry.get_version("shared-value", v).schema) for v in versions}
        assert len(seen) == len(versions)
