"""Gzip inflation through Intel's ISA-L (the ``isal`` package), for the download's check and the parser.

A 73 MiB part inflated in 0.59 s, against zlib's 1.15 s; like zlib, ISA-L releases the GIL while it works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, cast

from isal import igzip, isal_zlib

INFLATE_ERROR = cast(type[Exception], isal_zlib.error)
"""What a corrupt deflate stream raises (isal 1.9.1's stub declares ``error`` as an instance, not a class)."""
GZIP_READ_ERRORS = (OSError, EOFError, INFLATE_ERROR)
"""What reading a broken gzip file raises (``igzip.BadGzipFile`` is an ``OSError``)."""


def gzip_member_inflater() -> Any:
    """A ``zlib.decompressobj``-like inflater for one gzip member."""
    return isal_zlib.decompressobj(wbits=31)


def open_gzip(path: Path) -> BinaryIO:
    """The inflated contents of the gzip file at ``path``, as a binary stream; the caller closes it."""
    return cast(BinaryIO, igzip.open(path, "rb"))  # type: ignore[no-untyped-call]  # isal 1.9.1 leaves open untyped
