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


def test_the_command_answers_error_for_the_hours_it_is_told() -> None:
    command = [
        sys.executable, "-m", "growingio_pipeline.local_server", "--port", "0", "--token", "cli-token",
        "--error-hour", "2026112903=export job crashed: disk full",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        match = re.search(r"(http://127\.0\.0\.1:\d+)", process.stdout.readline())
        assert match, process.stderr.read()
        response = httpx.get(
            f"{match.group(1)}/v2/insights/hour/9b0d1f56d5baff1a/202611290300.json",
            headers={"Authorization": "cli-token"},
        )
        assert response.json()["status"] == "ERROR"
        assert response.json()["errorMsg"] == "export job crashed: disk full"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_command_refuses_an_error_hour_without_a_message() -> None:
    command = [sys.executable, "-m", "growingio_pipeline.local_server", "--error-hour", "2026112903"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "expected YYYYMMDDHH=MESSAGE" in finished.stderr
