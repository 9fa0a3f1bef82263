"""Bearer tokens with roles: created once, shown once, kept only as a SHA-256 digest.

Why a plain digest and not a slow password hash: tokens are 256 random bits, so nothing
can be guessed from the digest, and every request can be checked with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from embodia.serve.fleet.models import ROLES, Token

PREFIX = "emb_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's role, and for a robot token the robot it is bound to."""

    token_id: int
    role: str
    robot_id: str | None = None


def create_token(session: Session, role: str) -> str:
    """A new token of `role`; the caller shows it once, only its digest is stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(Token(digest=digest(token), role=role))
    session.commit()
    return token


def lookup(session: Session, authorization: str | None) -> Principal | None:
    """The principal for an `Authorization: Bearer <token>` header, None for anything else."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = session.scalar(select(Token).where(Token.digest == digest(token.strip())))
    return Principal(row.id, row.role, row.robot_id) if row else None
