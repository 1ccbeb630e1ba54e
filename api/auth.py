"""Access control: bearer tokens with roles (teacher, trainer, admin) and the rules of who may see what.

Tokens are random and stored only as an HMAC-SHA256 under a per-workspace pepper kept beside the database,
so a copy of WS/service.sqlite alone neither reveals nor verifies a token. Each token expires (a lifetime set at
creation, by default the service settings' `token_ttl_days`) and can be revoked by its public `token_id`; the
store is consulted on every request, so a revoked or expired token is refused at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import pandas as pd

from api.db import ThreadConnections
from api.settings import ServiceSettings
from data.workspace import Workspace

SERVICE_DB = "service.sqlite"
PEPPER_FILE = "service.pepper"
TOKEN_PREFIX = "tdr_"
_TOKEN_BYTES = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_hash  TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('teacher', 'trainer', 'admin')),
    teacher_id  TEXT,
    scope_kind  TEXT CHECK (scope_kind IN ('county', 'city', 'province')),
    scope_value TEXT,
    created_at  TEXT NOT NULL,
    token_id    TEXT,
    expires_at  TEXT,
    revoked_at  TEXT
)
"""
# Columns added after the first release: a store made before them gains them on opening (see _upgrade).
_LATER_COLUMNS = ("token_id", "expires_at", "revoked_at")
_TOKEN_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS tokens_id ON tokens (token_id)"


class Role(StrEnum):
    TEACHER = "teacher"
    TRAINER = "trainer"
    ADMIN = "admin"


class ScopeKind(StrEnum):
    COUNTY = "county"
    CITY = "city"
    PROVINCE = "province"


# Coarse to fine; a trainer sees a geographic cohort only at its own level (same value) or below it.
_GEO_LEVELS = ("province", "city", "county", "school")


class InvalidTokenError(Exception):
    """The bearer token is malformed or unknown."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a teacher bound to one id, a trainer bound to one area, or an admin."""

    role: Role
    teacher_id: str | None = None
    scope_kind: ScopeKind | None = None
    scope_value: str | None = None
    # when the token that named this caller expires: not part of who the caller is
    expires_at: datetime | None = field(default=None, compare=False)

    @property
    def scope(self) -> tuple[str, str] | None:
        """(kind, value) for a trainer, None otherwise; the form the engine takes to restrict a cohort."""
        if self.scope_kind is None or self.scope_value is None:
            return None
        return (self.scope_kind.value, self.scope_value)

    @property
    def scope_text(self) -> str | None:
        """'county:修水县', the form `tdr token create --scope` takes."""
        return ":".join(self.scope) if self.scope else None


def parse_scope(text: str) -> tuple[ScopeKind, str]:
    """'county:修水县' -> (COUNTY, '修水县'); raise ValueError naming the accepted forms otherwise."""
    kind, sep, value = text.partition(":")
    value = value.strip()
    if not sep or not value or kind.strip() not in ScopeKind.__members__.values():
        raise ValueError(f"scope must be county:<name>, city:<name> or province:<name>, got {text!r}")
    return ScopeKind(kind.strip()), value


def _principal_for(role: str, teacher_id: str | None, scope: str | None) -> Principal:
    """Validate the role/binding combination that `create_token` accepts."""
    role_ = Role(role)
    if role_ is Role.TEACHER:
        if not teacher_id or scope:
            raise ValueError("a teacher token needs --teacher ID and no --scope")
        return Principal(Role.TEACHER, teacher_id=teacher_id)
    if role_ is Role.TRAINER:
        if not scope or teacher_id:
            raise ValueError("a trainer token needs --scope county:|city:|province:<name> and no --teacher")
        kind, value = parse_scope(scope)
        return Principal(Role.TRAINER, scope_kind=kind, scope_value=value)
    if teacher_id or scope:
        raise ValueError("an admin token takes neither --teacher nor --scope")
    return Principal(Role.ADMIN)


def _check_against_teachers(ws_root: Path, principal: Principal) -> None:
    """Refuse a token bound to a teacher or area the workspace does not know (a typo would mint a dead token)."""
    table = Workspace(ws_root).table_path("teachers")
    if principal.role is Role.ADMIN or not table.exists():
        return
    if principal.role is Role.TEACHER:
        ids = pd.read_parquet(table, columns=["teacher_id"])["teacher_id"]
        if not ids.isin([principal.teacher_id]).any():
            raise ValueError("no such teacher in this workspace")
        return
    assert principal.scope_kind is not None
    column = principal.scope_kind.value
    values = pd.read_parquet(table, columns=[column])[column]
    if not values.isin([principal.scope_value]).any():
        raise ValueError(f"no teacher in this workspace has {column} = {principal.scope_value!r}")


def _load_or_create_pepper(ws_root: Path) -> bytes:
    """The workspace's pepper, created once; `link` makes creation atomic when CLI and server race."""
    path = ws_root / PEPPER_FILE
    if not path.exists():
        ws_root.mkdir(parents=True, exist_ok=True)
        tmp = ws_root / f".{PEPPER_FILE}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


@dataclass(frozen=True)
class TokenInfo:
    """What `tdr token list` shows of a token: never the token itself, which only its holder has."""

    token_id: str
    role: str
    teacher_id: str | None
    scope: str | None
    created_at: str
    expires_at: str
    revoked_at: str | None

    def state(self, now: datetime) -> str:
        """'revoked', 'expired' or 'active'."""
        if self.revoked_at:
            return "revoked"
        return "expired" if datetime.fromisoformat(self.expires_at) <= now else "active"


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _upgrade(con: sqlite3.Connection, ttl: timedelta) -> None:
    """Give tokens made before ids and lifetimes their id (from their hash) and a lifetime from now."""
    present = {row[1] for row in con.execute("PRAGMA table_info(tokens)")}
    for column in _LATER_COLUMNS:
        if column not in present:
            con.execute(f"ALTER TABLE tokens ADD COLUMN {column} TEXT")
    con.execute("UPDATE tokens SET token_id = substr(token_hash, 1, 12) WHERE token_id IS NULL")
    con.execute("UPDATE tokens SET expires_at = ? WHERE expires_at IS NULL", (_stamp(_now() + ttl),))


class TokenStore:
    """Tokens of one workspace in WS/service.sqlite (WAL); safe to share across the server's threads."""

    def __init__(self, ws_root: Path, settings: ServiceSettings | None = None) -> None:
        self.ws_root = Path(ws_root)
        self.db_path = self.ws_root / SERVICE_DB
        self.default_ttl = timedelta(days=(settings or ServiceSettings.from_env()).token_ttl_days)
        self._pepper = _load_or_create_pepper(self.ws_root)
        # one connection per thread, kept: authentication runs on every request
        self._db = ThreadConnections(self.db_path)
        with self._db.transaction() as con:
            con.execute(_SCHEMA)
            _upgrade(con, self.default_ttl)
            con.execute(_TOKEN_ID_INDEX)

    def _hash(self, token: str) -> str:
        return hmac.new(self._pepper, token.encode("utf-8"), hashlib.sha256).hexdigest()

    def create(
        self, role: str, teacher_id: str | None = None, scope: str | None = None, ttl: timedelta | None = None
    ) -> str:
        """A new token for the role and binding, valid for `ttl` (default: the settings' lifetime)."""
        principal = _principal_for(role, teacher_id, scope)
        lifetime = self.default_ttl if ttl is None else ttl
        if lifetime <= timedelta(0):
            raise ValueError("a token's lifetime must be positive")
        _check_against_teachers(self.ws_root, principal)
        token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        now = _now()
        with self._db.transaction() as con:
            con.execute(
                "INSERT INTO tokens (token_hash, role, teacher_id, scope_kind, scope_value, created_at, token_id,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self._hash(token),
                    principal.role.value,
                    principal.teacher_id,
                    principal.scope_kind.value if principal.scope_kind else None,
                    principal.scope_value,
                    _stamp(now),
                    secrets.token_hex(6),
                    _stamp(now + lifetime),
                ),
            )
        return token

    def authenticate(self, token: str) -> Principal:
        """The caller of a live token; InvalidTokenError for an unknown, expired or revoked one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise InvalidTokenError
        with self._db.transaction() as con:
            row = con.execute(
                "SELECT role, teacher_id, scope_kind, scope_value, expires_at FROM tokens"
                " WHERE token_hash = ? AND revoked_at IS NULL",
                (self._hash(token),),
            ).fetchone()
        if row is None:
            raise InvalidTokenError
        role, teacher_id, scope_kind, scope_value, expires_at = row
        expires = datetime.fromisoformat(expires_at)
        if expires <= _now():
            raise InvalidTokenError
        return Principal(
            Role(role),
            teacher_id=teacher_id,
            scope_kind=ScopeKind(scope_kind) if scope_kind else None,
            scope_value=scope_value,
            expires_at=expires,
        )

    def list_tokens(self) -> list[TokenInfo]:
        """Every token, oldest first."""
        with self._db.transaction() as con:
            rows = con.execute(
                "SELECT token_id, role, teacher_id, scope_kind, scope_value, created_at, expires_at, revoked_at"
                " FROM tokens ORDER BY created_at, token_id"
            ).fetchall()
        return [
            TokenInfo(tid, role, teacher, f"{kind}:{value}" if kind else None, created, expires, revoked)
            for tid, role, teacher, kind, value, created, expires, revoked in rows
        ]

    def revoke(self, token_id: str) -> bool:
        """Revoke the token with this id from now on; False when no live token has it."""
        with self._db.transaction() as con:
            cur = con.execute(
                "UPDATE tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (_stamp(_now()), token_id),
            )
            return cur.rowcount == 1


def create_token(
    ws_root: Path,
    role: str,
    teacher_id: str | None = None,
    scope: str | None = None,
    ttl: timedelta | None = None,
) -> str:
    """Mint a token for `tdr token create`; raises ValueError with a message for the operator when misused."""
    return TokenStore(Path(ws_root)).create(role, teacher_id=teacher_id, scope=scope, ttl=ttl)


def can_see_teacher(principal: Principal, teacher_row: Mapping[str, object]) -> bool:
    """Teacher: only itself. Trainer: a teacher whose county/city/province equals its scope. Admin: anyone."""
    if principal.role is Role.ADMIN:
        return True
    if principal.role is Role.TEACHER:
        return principal.teacher_id is not None and teacher_row.get("teacher_id") == principal.teacher_id
    assert principal.scope_kind is not None
    return teacher_row.get(principal.scope_kind.value) == principal.scope_value


def can_see_cohort(principal: Principal, by: str, value: str, spans: Mapping[str, Collection[str]]) -> bool:
    """Whether the caller may see the cohort `by = value` whose members span these areas.

    `spans` maps 'province' / 'city' / 'county' to the distinct values the cohort's members have. Teachers never
    see cohorts. A trainer never sees an area coarser than its scope, nor another area at its own level, and
    every member must lie inside its scope (so a cohort by stage or subject must have been restricted to it).
    """
    if principal.role is Role.ADMIN:
        return True
    if principal.role is not Role.TRAINER or principal.scope_kind is None:
        return False
    kind = principal.scope_kind.value
    if by in _GEO_LEVELS:
        if _GEO_LEVELS.index(by) < _GEO_LEVELS.index(kind):
            return False
        if by == kind and value != principal.scope_value:
            return False
    inside = spans.get(kind, ())
    return len(inside) > 0 and set(inside) == {principal.scope_value}
