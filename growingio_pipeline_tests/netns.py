"""Hosts in their own network namespaces that reach only chosen loopback ports of this machine.

A namespace made with ``ip netns add`` has nothing but its own loopback interface. For each port a host
may use (PostgreSQL, S3, the export API), a listener is opened on 127.0.0.1 *inside* the namespace and
relayed to the same port on this machine's 127.0.0.1, so every byte stays on loopback interfaces and the
host can reach nothing else. Sockets belong to the namespace of the thread that made them, so a short-lived
thread enters the namespace (``setns``, which acts on the calling thread only) to open the listener.
Where namespaces cannot be made (not root, no CAP_NET_ADMIN), hosts are plain processes.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

CLONE_NEWNET = 0x40000000
LOOPBACK = "127.0.0.1"


def namespaces_available() -> bool:
    """Whether this process may make network namespaces (root with the ``ip`` command)."""
    if os.geteuid() != 0:
        return False
    probe = f"growingio-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "delete", probe], check=False, capture_output=True)
    return made


@contextmanager
def isolated_host(name: str, ports: Sequence[int]) -> Iterator[list[str]]:
    """A network namespace reaching only ``ports`` on 127.0.0.1; yields the command prefix that runs in it."""
    namespace = f"growingio-{name}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
    listeners: list[socket.socket] = []
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True, capture_output=True)
        for port in ports:
            listeners.append(_listener_in(namespace, port))
            threading.Thread(target=_relay_connections, args=(listeners[-1], port), daemon=True).start()
        yield ["ip", "netns", "exec", namespace]
    finally:
        for listener in listeners:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        subprocess.run(["ip", "netns", "delete", namespace], check=True, capture_output=True)


def _listener_in(namespace: str, port: int) -> socket.socket:
    made: list[socket.socket | BaseException] = []

    def enter_and_listen() -> None:
        try:
            with open(Path("/run/netns") / namespace) as handle:
                if ctypes.CDLL(None, use_errno=True).setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
            made.append(socket.create_server((LOOPBACK, port)))
        except BaseException as error:
            made.append(error)

    thread = threading.Thread(target=enter_and_listen)  # dies in the namespace; this thread stays put
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def _relay_connections(listener: socket.socket, port: int) -> None:
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return  # the listener was closed
        try:
            outside = socket.create_connection((LOOPBACK, port))
        except OSError:
            inside.close()
            continue
        for source, target in ((inside, outside), (outside, inside)):
            threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copies one direction until end of stream, then passes the end on.

    Both sockets close once both directions' threads have ended and dropped them.
    """
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with suppress(OSError):
        target.shutdown(socket.SHUT_WR)
    with suppress(OSError):
        source.shutdown(socket.SHUT_RD)
