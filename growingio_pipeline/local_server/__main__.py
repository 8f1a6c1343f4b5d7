"""``growingio-local-server``: run the local export server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

from growingio_pipeline.event_types import RETENTION_DAYS
from growingio_pipeline.local_server.csv_writer import DEFAULT_PART_SIZE_BYTES
from growingio_pipeline.local_server.server import LocalExportServer, link_bytes_per_second


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="growingio-local-server", description="Serve a local stand-in for GrowingIO's raw-data export API (v2)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--token", default="demo-token", help="the API token clients must send")
    parser.add_argument("--project", default="9b0d1f56d5baff1a", help="the project id (ai)")
    parser.add_argument("--client-id", default="demo-client-id", help="key-pair mode: the project's public key")
    parser.add_argument("--private-key", default="demo-private-key", help="key-pair mode: the project's private key")
    parser.add_argument("--project-uid", default="demo0uid", help="key-pair mode: the project UID")
    parser.add_argument("--rows-per-hour", type=int, default=5000, help="page rows per hour")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--part-size-bytes", type=int, default=DEFAULT_PART_SIZE_BYTES)
    parser.add_argument("--calls-per-second", type=float, default=2.0)
    parser.add_argument("--retention-days", type=int, default=RETENTION_DAYS)
    parser.add_argument(
        "--link-mbit",
        type=float,
        help="send parts no faster than this many megabits per second, all downloads together (default: no limit)",
    )
    parser.add_argument(
        "--error-hour",
        action="append",
        default=[],
        type=_error_hour,
        metavar="YYYYMMDDHH=MESSAGE",
        help="answer ERROR with MESSAGE as errorMsg for this hour's export (repeatable), to try a failed hour",
    )
    return parser.parse_args(argv)


def _error_hour(text: str) -> tuple[str, str]:
    export_date, separator, message = text.partition("=")
    if not separator or not message:
        raise argparse.ArgumentTypeError(f"expected YYYYMMDDHH=MESSAGE, got {text!r}")
    return export_date, message


def main(argv: Sequence[str] | None = None) -> None:
    """Start the server, print its base URL and serve until SIGINT or SIGTERM."""
    arguments = _arguments(argv)
    server = LocalExportServer(
        host=arguments.host,
        port=arguments.port,
        token=arguments.token,
        project_id=arguments.project,
        client_id=arguments.client_id,
        private_key=arguments.private_key,
        project_uid=arguments.project_uid,
        seed=arguments.seed,
        rows_per_hour=arguments.rows_per_hour,
        part_size_bytes=arguments.part_size_bytes,
        calls_per_second=arguments.calls_per_second,
        retention_days=arguments.retention_days,
        error_hours=dict(arguments.error_hour),
        download_bytes_per_second=link_bytes_per_second(arguments.link_mbit),
    )
    stop_requested = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    server.start()
    try:
        print(f"GrowingIO local export server for project {server.project_id} at {server.base_url}", flush=True)
        stop_requested.wait()
    finally:
        server.stop()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
