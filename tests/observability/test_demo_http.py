"""``ferryman demo --http-port 0``: the demo's services on /metrics until Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

CLI = "from ferryman.cli import main; main()"


def test_the_demo_serves_its_metrics_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "demo", "--http-port", "0"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:  # the demo runs to its end, then says where it serves
            found = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics until Ctrl-C", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, proc.stderr.read() if proc.stderr else ""
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert ready.status_code == 200, ready.text
    consumed = re.findall(
        r'ferryman_records_consumed_total\{[^}]*service="(\w+)"[^}]*\} (\S+)', text
    )
    assert {service for service, n in consumed if float(n) > 0} >= {"orders", "analytics"}
    assert 'ferryman_request_duration_seconds_count{outcome="reply",service="orders"' in text
    assert "ok" in out
