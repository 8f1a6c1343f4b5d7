"""Alerts to a webhook (``GROWINGIO_ALERT_WEBHOOK``): one JSON POST per event, secrets removed.

Free of Dagster. Every text field goes through the project's one redaction helper, so no token, link
signature or password leaves the machine, whatever an error message held.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from growingio_pipeline.lake import LAKE_SECRET_VARIABLES
from growingio_pipeline.redaction import redact_text

WEBHOOK_ENV = "GROWINGIO_ALERT_WEBHOOK"
SECRET_ENVS = ("GROWINGIO_TOKEN", "GROWINGIO_PRIVATE_KEY", *LAKE_SECRET_VARIABLES.values())
"""Variables whose values are masked in any alert text, besides URL query strings and userinfo."""
TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)


def webhook_url() -> str | None:
    """The configured webhook, or None when alerts are off."""
    return os.environ.get(WEBHOOK_ENV) or None


def redacted(payload: Mapping[str, object]) -> dict[str, object]:
    """``payload`` with every string (also inside lists and maps) redacted."""
    secrets = tuple(os.environ.get(name, "") for name in SECRET_ENVS)
    return {key: _redact_value(value, secrets) for key, value in payload.items()}


def _redact_value(value: object, secrets: tuple[str, ...]) -> object:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {str(key): _redact_value(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item, secrets) for item in value]
    return value


def send_alert(payload: Mapping[str, object], url: str | None = None) -> bool:
    """POST ``payload`` (redacted) as JSON to the webhook; whether it was delivered (False when alerts are off).

    A webhook that fails is logged with its host only (a webhook's path is often its secret), never
    raised: an alert must not turn a sensor tick or a check into a failure of its own.
    """
    url = url or webhook_url()
    if url is None:
        return False
    try:
        response = httpx.post(url, json=redacted(payload), timeout=TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPStatusError as error:
        logger.warning("alert webhook at %s answered HTTP %s", _host(url), error.response.status_code)
        return False
    except httpx.HTTPError as error:
        logger.warning("alert webhook at %s failed: %s", _host(url), type(error).__name__)
        return False
    return True


def _host(url: str) -> str:
    return urlsplit(url).hostname or "<no host>"
