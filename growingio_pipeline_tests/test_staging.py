"""Working directories for staged parts: one per process, removed on exit, and swept once their process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from growingio_pipeline.staging import directory_name, staging_directory, sweep_abandoned


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_directory_is_this_process_and_is_removed_on_exit(tmp_path: Path) -> None:
    with staging_directory(tmp_path / "staging") as directory:
        (directory / "part.arrow").write_bytes(b"staged")
        assert directory.parent == tmp_path / "staging"
        name_without_token = directory_name(os.getpid()).rsplit("-", 1)[0]
        assert directory.name.rsplit("-", 1)[0] == name_without_token

    assert not directory.exists()


def test_the_directory_is_removed_when_the_load_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="load failed"), staging_directory(tmp_path) as directory:
        (directory / "part.arrow").write_bytes(b"staged")
        raise RuntimeError("load failed")

    assert not directory.exists()


def test_directories_of_ended_processes_are_swept_and_the_rest_kept(tmp_path: Path) -> None:
    abandoned = tmp_path / directory_name(dead_pid())
    (abandoned / "nested").mkdir(parents=True)
    (abandoned / "nested" / "part.arrow").write_bytes(b"x" * 1024)
    live = tmp_path / directory_name(os.getpid())
    live.mkdir()
    other_host = tmp_path / f"run-another-host-{dead_pid()}-0a1b2c3d"
    other_host.mkdir()
    unrelated = [tmp_path / "notes", tmp_path / "run-abc-12", tmp_path / f"{directory_name(dead_pid())}.txt"]
    unrelated[0].mkdir()
    unrelated[1].mkdir()
    unrelated[2].write_text("a file, not a working directory")

    with staging_directory(tmp_path) as directory:
        assert not abandoned.exists()
        assert live.exists() and other_host.exists() and all(path.exists() for path in unrelated)
        assert directory.exists()


def test_sweep_reports_what_it_removed(tmp_path: Path) -> None:
    abandoned = [tmp_path / directory_name(dead_pid()) for _ in range(2)]
    for directory in abandoned:
        directory.mkdir()

    assert sorted(sweep_abandoned(tmp_path)) == sorted(abandoned)
    assert sweep_abandoned(tmp_path) == []


def test_the_root_is_removed_once_empty_and_kept_while_another_process_works_in_it(tmp_path: Path) -> None:
    root = tmp_path / ".growingio-staging"
    with staging_directory(root):
        pass
    assert not root.exists(), "no empty staging folder is left behind"

    with staging_directory(root) as outer, staging_directory(root) as inner:
        pass
    assert not root.exists()
    assert not outer.exists() and not inner.exists()

    other = root / directory_name(os.getpid())  # a live process's directory (this one's)
    other.mkdir(parents=True)
    with staging_directory(root):
        pass
    assert other.is_dir(), "a directory in use keeps the root"
