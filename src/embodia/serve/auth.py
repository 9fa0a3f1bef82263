"""API-key authentication at the websocket handshake.

The key travels the way openpi-client sends it, `Authorization: Api-Key <key>`, and is checked
in the handshake hook, so a wrong or missing key costs a 401 and never reaches the model.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "EMBODIA_API_KEY"
SCHEME = "Api-Key"
MIN_KEY_CHARS = 16
REDACTED = "<redacted>"
# query parameters and headers that carry credentials (a client may put its key in the URL)
_SECRET_PARAM = re.compile(r"(?i)\b(api[_-]?key|key|token|access[_-]?token|auth|password|secret)=[^&#\s]*")
_SECRET_HEADER = re.compile(r"(?i)\b(authorization|proxy-authorization|x-api-key|cookie)(\s*:\s*)[^\r\n]*")


@dataclass(frozen=True)
class ApiKeyAuth:
    """Constant-time comparison against one key (the key is never logged or echoed)."""

    key: str

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_CHARS:
            raise ValueError(f"API key must have at least {MIN_KEY_CHARS} characters")

    def __repr__(self) -> str:
        return "ApiKeyAuth(key=<hidden>)"

    def check(self, authorization: str | None) -> bool:
        """True for exactly `Api-Key <key>` (scheme case-insensitive, as HTTP schemes are)."""
        if not authorization:
            return False
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != SCHEME.lower():
            return False
        return hmac.compare_digest(given.strip().encode(), self.key.encode())

    def header(self) -> dict[str, str]:
        return {"Authorization": f"{SCHEME} {self.key}"}


def load_api_key(api_key_file: str | Path | None = None, environ: dict[str, str] | None = None) -> str | None:
    """--api-key-file wins over EMBODIA_API_KEY; surrounding whitespace (a trailing newline)
    is dropped. None when neither is set."""
    if api_key_file is not None:
        path = Path(api_key_file)
        try:
            key = path.read_text().strip()
        except OSError as e:
            raise ValueError(f"cannot read API key file {path}: {e.strerror}") from None
        if not key:
            raise ValueError(f"API key file {path} is empty")
        return key
    key = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    return key or None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without credentials: credential query parameters and header values become
    <redacted>, and so does every occurrence of a known secret (the server's key)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _SECRET_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class RedactingLogger(logging.LoggerAdapter):
    """A logger that formats each message and redacts it before it becomes a log record, so no
    handler, level or formatter can see a key. Passed to websockets too, whose debug log
    prints request paths and every header, Authorization included."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, secrets: Iterable[str] = ()) -> None:
        super().__init__(logger, {})
        self._secrets = tuple(s for s in secrets if s)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError, KeyError):
            text = " ".join(map(str, (msg, *args)))
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, "%s", redact(text, self._secrets), **kwargs)
