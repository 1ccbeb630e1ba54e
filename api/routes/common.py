"""Shared pieces of the /api/v1 routes: the documented error responses."""

from __future__ import annotations

from typing import Any

from api.schemas import Problem


def problems(*statuses: int, ok: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a route can answer (sent as problem+json, see `api.errors`), and for a
    200 that is not the route's default answer (`ok`)."""
    documented: dict[int | str, dict[str, Any]] = {s: {"model": Problem} for s in statuses}
    if ok is not None:
        documented[200] = ok
    return documented
