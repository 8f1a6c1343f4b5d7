"""Fault switches: make the next API calls or downloads fail in the ways real ones do."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class _Countdown:
    """A fault that applies to the next ``remaining`` requests."""

    remaining: int = 0

    def take(self) -> bool:
        if self.remaining > 0:
            self.remaining -= 1
            return True
        return False


class Faults:
    """Switches read by the server on every request; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Turn every fault off."""
        with self._lock:
            self._failures = _Countdown()
            self._failure_status = 503
            self._stalls = _Countdown()
            self._stall_seconds = 0.0
            self._truncated = _Countdown()
            self._corrupt = _Countdown()
            self._wrong_length = _Countdown()
            self._html = _Countdown()
            self._expire_at_once = False

    def fail_next_api_calls(self, n: int, status: int = 503) -> None:
        """The next ``n`` API calls answer ``status`` (a 5xx) with a JSON error body."""
        if not 500 <= status <= 599:
            raise ValueError(f"a failing API call answers a 5xx status, got {status}")
        with self._lock:
            self._failures.remaining, self._failure_status = _count(n), status

    def stall_next_api_calls(self, n: int, seconds: float) -> None:
        """The next ``n`` API calls wait ``seconds`` before answering (to trip client timeouts)."""
        if seconds < 0:
            raise ValueError(f"a stall lasts a non-negative number of seconds, got {seconds}")
        with self._lock:
            self._stalls.remaining, self._stall_seconds = _count(n), seconds

    def truncate_next_downloads(self, n: int) -> None:
        """The next ``n`` downloads send half the bytes their Content-Length promises, then close."""
        with self._lock:
            self._truncated.remaining = _count(n)

    def corrupt_next_downloads(self, n: int) -> None:
        """The next ``n`` downloads send a damaged gzip part (with a matching Content-Length)."""
        with self._lock:
            self._corrupt.remaining = _count(n)

    def wrong_length_next_downloads(self, n: int) -> None:
        """The next ``n`` downloads declare a Content-Length 8 bytes short of the part and send that many.

        The HTTP exchange looks complete; only the gzip check (missing trailer) shows the damage.
        """
        with self._lock:
            self._wrong_length.remaining = _count(n)

    def html_next_downloads(self, n: int) -> None:
        """The next ``n`` downloads answer 200 with an HTML error page instead of gzip."""
        with self._lock:
            self._html.remaining = _count(n)

    def expire_links_immediately(self, enabled: bool = True) -> None:
        """New links expire at the moment they are issued (downloading them answers 403)."""
        with self._lock:
            self._expire_at_once = enabled

    def take_api_stall(self) -> float:
        """Seconds the current API call must stall (0 for none)."""
        with self._lock:
            return self._stall_seconds if self._stalls.take() else 0.0

    def take_api_failure(self) -> int | None:
        """The 5xx status the current API call must answer, if any."""
        with self._lock:
            return self._failure_status if self._failures.take() else None

    def take_download_fault(self) -> str | None:
        """Which fault the current download suffers: html, truncate, corrupt, wrong_length or None."""
        with self._lock:
            for name, countdown in (
                ("html", self._html),
                ("truncate", self._truncated),
                ("corrupt", self._corrupt),
                ("wrong_length", self._wrong_length),
            ):
                if countdown.take():
                    return name
            return None

    @property
    def links_expire_at_once(self) -> bool:
        """Whether new links are issued already expired."""
        with self._lock:
            return self._expire_at_once


def _count(n: int) -> int:
    if n < 0:
        raise ValueError(f"a fault applies to a non-negative number of requests, got {n}")
    return n
