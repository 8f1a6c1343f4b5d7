"""A benchmark's figures and checks as JSON (``--json PATH``): what the tests read instead of printed text."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The ``--json PATH`` option."""
    parser.add_argument("--json", type=Path, help="also write the figures and checks to this JSON file")


def write_json(path: Path | None, figures: Mapping[str, object]) -> None:
    """Write ``figures`` to ``path`` (nothing without one)."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
