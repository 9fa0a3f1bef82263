"""API-key authentication at the websocket handshake.

The key travels the way openpi-client sends it, `Authorization: Api-Key <key>`, and is checked
in the handshake hook, so a wrong or missing key costs a 401 and never reaches the model.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "EMBODIA_API_KEY"
SCHEME = "Api-Key"
MIN_KEY_CHARS = 16


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
