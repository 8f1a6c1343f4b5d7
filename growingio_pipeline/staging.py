"""Working directories for downloaded parts and their rejects, one per loading process.

A process killed mid-load (SIGKILL, OOM, a lost machine) cannot remove its directory, and a busy
hour's parts take hundreds of megabytes. So each directory is named after its host and
process, and opening a new one first removes those of this host whose process is gone. Directories
of other hosts sharing the folder are left alone: their process ids mean nothing here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_DIRECTORY_NAME = re.compile(r"run-(?P<host>[\w.-]+)-(?P<pid>\d+)-[0-9a-f]{8}")


def _host() -> str:
    return re.sub(r"[^\w.-]", "_", socket.gethostname()) or "localhost"


def directory_name(pid: int) -> str:
    """A new working directory's name for process ``pid`` of this host."""
    return f"run-{_host()}-{pid}-{secrets.token_hex(4)}"


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def sweep_abandoned(root: Path) -> list[Path]:
    """Remove the working directories under ``root`` whose process on this host no longer exists; those removed."""
    removed = []
    for directory in root.glob("run-*"):
        match = _DIRECTORY_NAME.fullmatch(directory.name)
        if match and match["host"] == _host() and directory.is_dir() and not _process_is_alive(int(match["pid"])):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


@contextmanager
def staging_directory(root: Path) -> Iterator[Path]:
    """A fresh working directory under ``root`` for this process, removed on exit.

    Directories that killed processes left under ``root`` are removed first, and ``root`` itself on exit
    once no other process works in it.
    """
    root.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(root)
    directory = root / directory_name(os.getpid())
    # parents: another process may have just removed the empty root.
    directory.mkdir(parents=True)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        _remove_if_empty(root)


def _remove_if_empty(root: Path) -> None:
    # OSError: another process's directory is still in it (or it is already gone).
    with suppress(OSError):
        root.rmdir()
