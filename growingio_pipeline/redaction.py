"""Redaction of secrets in links and free text: the one helper everything that logs or stores text uses.

Signed download links carry their signature in the query string; a link may also carry user info.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# A URL with a scheme, in plain or JSON-escaped form (``https:\/\/``), up to its query/fragment.
_URL_WITH_QUERY = re.compile(r"""([A-Za-z][A-Za-z0-9+.-]*:(?:\\?/){2}[^\s"'<>?#]*)[?#][^\s"'<>]*""")
_URL_USERINFO = re.compile(r"""(:(?:\\?/){2})[^\s"'<>/@]*@""")


def redact_url(url: str, *, keep_host: bool = True) -> str:
    """``url`` without its query string, fragment and user info: safe to log, show or store.

    ``keep_host=False`` keeps only the path, for labels that must not vary with the host serving a file.
    """
    try:
        parts = urlsplit(url)
    except (TypeError, ValueError, AttributeError):
        return "<unparseable link>"
    if not keep_host:
        return parts.path
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every URL's query string and user info removed and each of ``secrets`` masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_USERINFO.sub(r"\1", text)
    return _URL_WITH_QUERY.sub(r"\1?***", text)
