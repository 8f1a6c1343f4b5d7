"""GrowingIO key-pair authentication: the signed ``POST /auth/token`` request and the one shared code.

Accounts with a public key (``X-Client-Id``) and a private key, instead of an API token, exchange a
signed request for a code (vendor docs: developer-manual/api-reference/authenticate/ ``gettoken.md``,
``getauth.md``). The code goes in ``Authorization`` next to ``X-Client-Id``, lasts 30 days, and getting a
new one invalidates the old: every run must share one code, kept in an :class:`AuthCodeStore`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable

from growingio_pipeline.auth_code_store import AuthCodeStore, StoredCode

logger = logging.getLogger(__name__)

TOKEN_PATH = "/auth/token"
CODE_LIFETIME_S = 30 * 24 * 3600.0
"""The vendor's code lifetime: 30 days from issue."""
REFRESH_BEFORE_EXPIRY_S = 24 * 3600.0
"""A code this close to its expiry is replaced before use, so no run starts with a code that dies mid-run."""


def signature_message(project_uid: str, project_id: str, tm: int) -> str:
    """The text the vendor signs: ``POST\\n/auth/token\\nproject=<uid>&ai=<ai>&tm=<tm>``."""
    return f"POST\n{TOKEN_PATH}\nproject={project_uid}&ai={project_id}&tm={tm}"


def sign(private_key: str, project_uid: str, project_id: str, tm: int) -> str:
    """``auth``: hex HMAC-SHA256 of :func:`signature_message` with the private key (both UTF-8)."""
    message = signature_message(project_uid, project_id, tm)
    return hmac.new(private_key.encode(), message.encode(), hashlib.sha256).hexdigest()


def code_request_body(private_key: str, project_uid: str, project_id: str, tm: int) -> str:
    """The raw (not form-encoded) body of ``POST /auth/token``, signed for epoch milliseconds ``tm``."""
    return f"project={project_uid}&ai={project_id}&tm={tm}&auth={sign(private_key, project_uid, project_id, tm)}"


def code_scope(base_url: str, client_id: str, project_uid: str, project_id: str) -> str:
    """The store key of a key pair's code: a digest, so the store names no host or key in clear."""
    identity = "\n".join((base_url.rstrip("/"), client_id, project_uid, project_id))
    return hashlib.sha256(identity.encode()).hexdigest()


class SharedAuthCode:
    """The code every run of one key pair uses: read from the store, fetched only when needed.

    A new code is fetched (under the store's lock, by one caller) only when there is none, when the stored
    one is within :data:`REFRESH_BEFORE_EXPIRY_S` of expiry, or when the API refused the very code a
    caller used and the store still holds it. A caller whose code another run already replaced gets the
    replacement, so runs never invalidate each other's codes in a loop.
    """

    def __init__(self, store: AuthCodeStore, scope: str, fetch: Callable[[], str]):
        self._store = store
        self._scope = scope
        self._fetch = fetch

    def current(self) -> str:
        """The code to use now."""
        stored = self._store.load(self._scope)
        if stored is not None and _fresh(stored):
            return stored.code
        return self._store.exchange(self._scope, _fresh, self._fetch_logged("no code, or one near expiry")).code

    def replace(self, refused: str) -> str:
        """The code to use after the API refused ``refused``: the store's newer one, or a new one."""
        return self._store.exchange(
            self._scope,
            lambda stored: _fresh(stored) and stored.code != refused,
            self._fetch_logged("the API refused the shared code"),
        ).code

    def _fetch_logged(self, reason: str) -> Callable[[], str]:
        def fetch() -> str:
            logger.info("requesting a new GrowingIO auth code (%s)", reason)
            return self._fetch()

        return fetch


def _fresh(stored: StoredCode) -> bool:
    return time.time() - stored.issued_at < CODE_LIFETIME_S - REFRESH_BEFORE_EXPIRY_S
