"""The ``growingio-local-server`` command: prints its base URL, serves, stops on SIGINT/SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pytest


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_until_signalled(stop_signal: signal.Signals) -> None:
    command = [
        sys.executable, "-m", "growingio_pipeline.local_server",
        "--port", "0", "--token", "cli-token", "--project", "9b0d1f56d5baff1a", "--rows-per-hour", "50", "--seed", "3",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first_line)
        assert match, first_line + process.stderr.read()
        response = httpx.get(
            f"{match.group(1)}/v2/insights/hour/page/9b0d1f56d5baff1a/2020010100.json",
            headers={"Authorization": "cli-token"},
        )
        assert response.status_code == 200
        assert response.json()["status"] == "NOT_EXISTS"  # beyond retention by the real clock
        assert "cli-token" not in first_line

        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
