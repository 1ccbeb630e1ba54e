"""Access control of the service: tokens, roles and scopes on every route, and what errors may reveal."""

from __future__ import annotations

import hashlib
import hmac
import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from typer.testing import CliRunner

import api.auth
from api.app import API_PREFIX, create_app
from api.auth import (
    PEPPER_FILE,
    SERVICE_DB,
    InvalidTokenError,
    Principal,
    Role,
    ScopeKind,
    TokenStore,
    can_see_cohort,
    can_see_teacher,
    create_token,
)
from api.settings import ServiceSettings
from tdr.cli import app as cli

# (teacher_id, city, county, school_id, stage); all in 江西省
ROSTER = [
    *[(f"XS{i:02d}", "九江市", "修水县", "S-XS-1", "primary") for i in range(6)],
    *[(f"XS{i:02d}", "九江市", "修水县", "S-XS-2", "junior") for i in range(6, 9)],
    *[(f"WN{i:02d}", "九江市", "武宁县", "S-WN-1", "primary") for i in range(6)],
    *[(f"NC{i:02d}", "南昌市", "新建区", '=HYPERLINK("x")', "senior") for i in range(5)],
]
COMPETENCIES = ["TEA-1", "IT-A3", "EVAL-2"]


@dataclass(frozen=True)
class FakePortrait:
    teacher_id: str
    province: str
    city: str
    county: str
    school_id: str
    stage: str
    competencies: list[dict[str, object]] = field(default_factory=list)


class FakeEngine:
    """A tiny in-memory engine with the interface of `api.deps.EngineProtocol` (no model behind it)."""

    version = "v-test-1"

    def __init__(self) -> None:
        self.teachers = pd.DataFrame(
            ROSTER, columns=["teacher_id", "city", "county", "school", "stage"]
        ).assign(province="江西省")

    def portrait(self, teacher_id: str) -> FakePortrait | None:
        rows = self.teachers[self.teachers.teacher_id == teacher_id]
        if rows.empty:
            return None
        r = rows.iloc[0]
        comps = [
            {"competency": c, "estimate": 50.0 + i, "std_error": 5.0, "source": "items"}
            for i, c in enumerate(COMPETENCIES)
        ]
        return FakePortrait(r.teacher_id, r.province, r.city, r.county, r.school, r.stage, comps)

    def menu(self, teacher_id: str, constraints: object | None) -> dict[str, object] | None:
        if self.portrait(teacher_id) is None:
            return None
        hours = getattr(constraints, "hours", None) or 50.0
        item = {"course_id": "C1", "title": "数据支持的学情分析", "hours": hours, "reason": "针对您的差距。"}
        return {"teacher_id": teacher_id, "items": [item], "hours_target": hours}

    def search(self, q: str, top_k: int) -> list[dict[str, object]]:
        # an engine record may carry more than the API shows; none of it may reach the client
        hit = {"course_id": "C1", "title": "数据支持的学情分析", "score": 0.9, "enrolled_teachers": ["WN01"]}
        return [hit][:top_k]

    def course(self, course_id: str) -> dict[str, object] | None:
        if course_id != "C1":
            return None
        return {
            "course_id": "C1",
            "title": "数据支持的学情分析",
            "hours": 16.0,
            "enrolled_teachers": ["WN01"],
        }

    def cohort(self, by: str, value: str, scope: tuple[str, str] | None) -> dict[str, object] | None:
        if by not in self.teachers:
            return None
        members = self.teachers[self.teachers[by] == value]
        if scope is not None:
            members = members[members[scope[0]] == scope[1]]
        sizes = members.groupby("school").size()
        return {
            "by": by,
            "value": value,
            "n_teachers": len(members),
            "span": {k: sorted(members[k].unique()) for k in ("province", "city", "county")},
            "competencies": [{"competency": c, "name": c, "mean": 55.0} for c in COMPETENCIES],
            "heatmap": {
                "row_level": "school",
                "rows": list(sizes.index),
                "row_sizes": [int(n) for n in sizes],
                "columns": COMPETENCIES,
                "values": [[50.0, 60.0, 70.0] for _ in sizes],
            },
            "behind_on_hours": [
                {"teacher_id": t, "school_id": s, "county": c, "hours_owed": 40.0}
                for t, s, c in members[["teacher_id", "school", "county"]].itertuples(index=False)
            ],
        }


def _bundle(ws: Path, version: str) -> None:
    (ws / "bundles").mkdir(parents=True, exist_ok=True)
    (ws / "bundles" / "CURRENT").write_text(version + "\n", encoding="utf-8")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    _bundle(tmp_path, "v-test-1")
    return tmp_path


@pytest.fixture
def client(ws: Path) -> Iterator[TestClient]:
    app = create_app(
        ws, engine_factory=lambda _: FakeEngine(), settings=ServiceSettings(reload_interval_s=3600)
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _auth(ws: Path, role: str, teacher_id: str | None = None, scope: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(ws, role, teacher_id=teacher_id, scope=scope)}"}


def _is_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["title"] and body["detail"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["detail"]), "detail is written in Chinese"
    return body  # type: ignore[no-any-return]


# --- tokens ----------------------------------------------------------------------------------------------


def test_token_is_stored_only_as_a_peppered_hash(ws: Path) -> None:
    token = create_token(ws, "teacher", teacher_id="XS01")
    with sqlite3.connect(ws / SERVICE_DB) as con:
        rows = con.execute("SELECT * FROM tokens").fetchall()
    stored = " ".join(str(v) for row in rows for v in row)
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() not in stored, "a bare sha256 could be checked offline"
    assert TokenStore(ws).authenticate(token) == Principal(Role.TEACHER, teacher_id="XS01")


def test_tokens_are_random_and_bound_to_their_role(ws: Path) -> None:
    a, b = create_token(ws, "admin"), create_token(ws, "admin")
    assert a != b and len(a) > 40
    trainer = TokenStore(ws).authenticate(create_token(ws, "trainer", scope="county:修水县"))
    assert (trainer.role, trainer.scope) == (Role.TRAINER, ("county", "修水县"))


@pytest.mark.parametrize(
    ("role", "teacher_id", "scope"),
    [
        ("teacher", None, None),
        ("teacher", "XS01", "county:修水县"),
        ("trainer", None, None),
        ("trainer", None, "school:S-XS-1"),
        ("trainer", None, "county:"),
        ("admin", "XS01", None),
        ("owner", None, None),
    ],
)
def test_token_create_refuses_a_wrong_binding(
    ws: Path, role: str, teacher_id: str | None, scope: str | None
) -> None:
    with pytest.raises(ValueError):
        create_token(ws, role, teacher_id=teacher_id, scope=scope)


def test_token_create_refuses_a_teacher_or_area_the_workspace_does_not_know(ws: Path) -> None:
    (ws / "tables").mkdir()
    FakeEngine().teachers.to_parquet(ws / "tables" / "teachers.parquet")
    assert create_token(ws, "teacher", teacher_id="XS01")
    assert create_token(ws, "trainer", scope="city:九江市")
    with pytest.raises(ValueError):
        create_token(ws, "teacher", teacher_id="NOBODY")
    with pytest.raises(ValueError):
        create_token(ws, "trainer", scope="county:修水")


def test_unknown_or_malformed_tokens_are_401(client: TestClient, ws: Path) -> None:
    for header in ({}, {"Authorization": "Bearer tdr_not-a-token"}, {"Authorization": "Basic abc"}):
        response = client.get("/api/v1/me", headers=header)
        _is_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


# --- the rules, as pure functions ------------------------------------------------------------------------


def test_can_see_teacher_follows_role_and_scope() -> None:
    row = {"teacher_id": "XS01", "province": "江西省", "city": "九江市", "county": "修水县"}
    assert can_see_teacher(Principal(Role.TEACHER, teacher_id="XS01"), row)
    assert not can_see_teacher(Principal(Role.TEACHER, teacher_id="XS02"), row)
    assert can_see_teacher(Principal(Role.TRAINER, scope_kind=ScopeKind.COUNTY, scope_value="修水县"), row)
    assert can_see_teacher(Principal(Role.TRAINER, scope_kind=ScopeKind.CITY, scope_value="九江市"), row)
    assert not can_see_teacher(
        Principal(Role.TRAINER, scope_kind=ScopeKind.COUNTY, scope_value="武宁县"), row
    )
    assert not can_see_teacher(Principal(Role.TRAINER, scope_kind=ScopeKind.COUNTY, scope_value="修水县"), {})
    assert can_see_teacher(Principal(Role.ADMIN), row)


def test_can_see_cohort_keeps_trainers_inside_their_area() -> None:
    county = Principal(Role.TRAINER, scope_kind=ScopeKind.COUNTY, scope_value="修水县")
    city = Principal(Role.TRAINER, scope_kind=ScopeKind.CITY, scope_value="九江市")
    xs = {"province": ["江西省"], "city": ["九江市"], "county": ["修水县"]}
    both = {"province": ["江西省"], "city": ["九江市"], "county": ["修水县", "武宁县"]}
    assert can_see_cohort(county, "county", "修水县", xs)
    assert can_see_cohort(county, "stage", "primary", xs)
    assert not can_see_cohort(county, "county", "武宁县", xs)
    assert not can_see_cohort(county, "city", "九江市", xs), "a coarser area than the scope"
    assert not can_see_cohort(county, "stage", "primary", both), "members outside the scope"
    assert can_see_cohort(city, "county", "武宁县", both)
    assert not can_see_cohort(county, "stage", "primary", {"county": []})
    assert not can_see_cohort(Principal(Role.TEACHER, teacher_id="XS01"), "county", "修水县", xs)
    assert can_see_cohort(Principal(Role.ADMIN), "province", "江西省", both)


# --- every route refuses the wrong role or scope ----------------------------------------------------------

TEACHER_ROUTES = [
    ("GET", "/api/v1/teachers/{tid}/portrait", None),
    ("GET", "/api/v1/teachers/{tid}/menu", None),
    ("POST", "/api/v1/teachers/{tid}/menu", {"hours": 40}),
    ("GET", "/api/v1/teachers/{tid}/events", None),
]


@pytest.mark.parametrize(("method", "path", "body"), TEACHER_ROUTES)
def test_teacher_route_serves_own_data_and_refuses_another_teacher(
    client: TestClient, ws: Path, method: str, path: str, body: dict[str, object] | None
) -> None:
    headers = _auth(ws, "teacher", teacher_id="XS01")
    assert client.request(method, path.format(tid="XS01"), headers=headers, json=body).status_code == 200
    refused = _is_problem(client.request(method, path.format(tid="WN02"), headers=headers, json=body), 403)
    assert "WN02" not in str(refused) and "XS01" not in str(refused)


@pytest.mark.parametrize(("method", "path", "body"), TEACHER_ROUTES)
def test_teacher_route_refuses_a_trainer_outside_scope_exactly_as_an_unknown_teacher(
    client: TestClient, ws: Path, method: str, path: str, body: dict[str, object] | None
) -> None:
    headers = _auth(ws, "trainer", scope="county:修水县")
    assert client.request(method, path.format(tid="XS03"), headers=headers, json=body).status_code == 200
    outside = _is_problem(client.request(method, path.format(tid="WN02"), headers=headers, json=body), 403)
    unknown = _is_problem(client.request(method, path.format(tid="ZZ99"), headers=headers, json=body), 403)
    assert outside["detail"] == unknown["detail"], "existence of a teacher outside the scope must not show"


@pytest.mark.parametrize(("method", "path", "body"), TEACHER_ROUTES)
def test_city_trainer_and_admin_reach_teachers_of_the_city(
    client: TestClient, ws: Path, method: str, path: str, body: dict[str, object] | None
) -> None:
    city = _auth(ws, "trainer", scope="city:九江市")
    assert client.request(method, path.format(tid="WN02"), headers=city, json=body).status_code == 200
    _is_problem(client.request(method, path.format(tid="NC01"), headers=city, json=body), 403)
    assert (
        client.request(method, path.format(tid="NC01"), headers=_auth(ws, "admin"), json=body).status_code
        == 200
    )


def test_admin_gets_404_for_an_unknown_teacher(client: TestClient, ws: Path) -> None:
    _is_problem(client.get("/api/v1/teachers/ZZ99/portrait", headers=_auth(ws, "admin")), 404)


COHORT_ROUTES = ["/api/v1/cohorts/{by}/{value}", "/api/v1/cohorts/{by}/{value}/export"]


@pytest.mark.parametrize("path", COHORT_ROUTES)
def test_trainer_sees_own_county_cohort_and_not_another(client: TestClient, ws: Path, path: str) -> None:
    headers = _auth(ws, "trainer", scope="county:修水县")
    assert client.get(path.format(by="county", value="修水县"), headers=headers).status_code == 200
    other = _is_problem(client.get(path.format(by="county", value="武宁县"), headers=headers), 403)
    missing = _is_problem(client.get(path.format(by="county", value="无此县"), headers=headers), 403)
    assert other["detail"] == missing["detail"]
    _is_problem(client.get(path.format(by="city", value="九江市"), headers=headers), 403)
    _is_problem(client.get(path.format(by="school", value="S-WN-1"), headers=headers), 403)


@pytest.mark.parametrize("path", COHORT_ROUTES)
def test_teacher_sees_no_cohort(client: TestClient, ws: Path, path: str) -> None:
    headers = _auth(ws, "teacher", teacher_id="XS01")
    _is_problem(client.get(path.format(by="county", value="修水县"), headers=headers), 403)


@pytest.mark.parametrize("path", COHORT_ROUTES)
def test_cohort_of_fewer_than_five_teachers_is_refused(client: TestClient, ws: Path, path: str) -> None:
    # S-XS-2 has three teachers
    refused = _is_problem(
        client.get(path.format(by="school", value="S-XS-2"), headers=_auth(ws, "admin")), 403
    )
    assert "5" in refused["detail"]
    assert client.get(path.format(by="school", value="S-XS-1"), headers=_auth(ws, "admin")).status_code == 200


def test_cohort_by_stage_covers_only_the_trainers_county(client: TestClient, ws: Path) -> None:
    body = client.get(
        "/api/v1/cohorts/stage/primary", headers=_auth(ws, "trainer", scope="county:修水县")
    ).json()
    assert (
        body["n_teachers"] == 6 and body["span"]["county"] == ["修水县"] and body["scope"] == "county:修水县"
    )
    assert {t["county"] for t in body["behind_on_hours"]} == {"修水县"}


def test_city_trainer_sees_a_county_of_its_city(client: TestClient, ws: Path) -> None:
    body = client.get(
        "/api/v1/cohorts/county/武宁县", headers=_auth(ws, "trainer", scope="city:九江市")
    ).json()
    assert body["n_teachers"] == 6


def test_heatmap_hides_groups_below_the_privacy_floor(client: TestClient, ws: Path) -> None:
    body = client.get(
        "/api/v1/cohorts/county/修水县", headers=_auth(ws, "trainer", scope="county:修水县")
    ).json()
    assert body["heatmap"]["rows"] == ["S-XS-1"] and body["heatmap"]["row_sizes"] == [6]
    assert body["hidden_rows"] == 1


def test_unknown_cohort_grouping_is_a_422_problem(client: TestClient, ws: Path) -> None:
    _is_problem(client.get("/api/v1/cohorts/gender/女", headers=_auth(ws, "admin")), 422)


def test_cohort_export_is_a_workbook_of_the_cohort_with_text_kept_as_text(
    client: TestClient, ws: Path
) -> None:
    response = client.get("/api/v1/cohorts/county/新建区/export", headers=_auth(ws, "admin"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(response.content))
    assert {"概览", "能力点分布", "热力图", "学时落后教师"} <= set(book.sheetnames)
    behind = list(book["学时落后教师"].iter_rows(min_row=2, values_only=True))
    assert sorted(r[0] for r in behind) == [f"NC{i:02d}" for i in range(5)]
    school = book["热力图"]["A2"]
    assert school.value == '=HYPERLINK("x")' and school.data_type == "s", "a name must never become a formula"


# --- courses, events, identity ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["teacher", "trainer", "admin"])
def test_course_search_and_detail_serve_every_role_with_course_fields_only(
    client: TestClient, ws: Path, role: str
) -> None:
    headers = _auth(ws, role, teacher_id="XS01" if role == "teacher" else None,
                    scope="county:修水县" if role == "trainer" else None)  # fmt: skip
    found = client.get("/api/v1/courses", params={"q": "学情分析"}, headers=headers)
    detail = client.get("/api/v1/courses/C1", headers=headers)
    assert found.status_code == detail.status_code == 200
    assert found.json()["hits"][0]["course_id"] == "C1"
    assert "WN01" not in found.text and "WN01" not in detail.text
    _is_problem(client.get("/api/v1/courses/C404", headers=headers), 404)


def test_events_refuse_a_trainer_and_a_teacher_speaking_for_another(client: TestClient, ws: Path) -> None:
    event = {"event_id": "evt-00000001", "teacher_id": "XS03", "course_id": "C1", "type": "enrolled"}
    _is_problem(
        client.post("/api/v1/events", json=event, headers=_auth(ws, "trainer", scope="county:修水县")), 403
    )
    refused = _is_problem(
        client.post("/api/v1/events", json=event, headers=_auth(ws, "teacher", teacher_id="XS01")), 403
    )
    assert "XS03" not in str(refused)
    assert (
        client.post("/api/v1/events", json=event, headers=_auth(ws, "teacher", teacher_id="XS03")).status_code
        == 201
    )
    assert client.post("/api/v1/events", json=event, headers=_auth(ws, "admin")).status_code == 200


def test_me_tells_the_pages_who_is_signed_in(client: TestClient, ws: Path) -> None:
    body = client.get("/api/v1/me", headers=_auth(ws, "trainer", scope="county:修水县")).json()
    assert body.pop("expires_at") is not None
    assert body == {"role": "trainer", "teacher_id": None, "scope": "county:修水县"}


# --- token lifetimes: expiry, listing, revocation ---------------------------------------------------------


def _me(client: TestClient, token: str) -> int:
    return client.get(f"{API_PREFIX}/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_token_is_refused_once_its_lifetime_is_over(
    client: TestClient, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = create_token(ws, "admin", ttl=timedelta(hours=1))
    assert _me(client, token) == 200
    later = datetime.now(UTC) + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(api.auth, "_now", lambda: later)
    assert _me(client, token) == 401


def test_me_tells_the_pages_when_the_token_expires(client: TestClient, ws: Path) -> None:
    token = create_token(ws, "admin", ttl=timedelta(days=2))
    body = client.get(f"{API_PREFIX}/me", headers={"Authorization": f"Bearer {token}"}).json()
    left = datetime.fromisoformat(body["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=2) - timedelta(minutes=1) < left <= timedelta(days=2)


def test_the_default_lifetime_is_the_settings_one(ws: Path) -> None:
    store = TokenStore(ws, ServiceSettings(token_ttl_days=3))
    store.create("admin")
    (info,) = store.list_tokens()
    lifetime = datetime.fromisoformat(info.expires_at) - datetime.fromisoformat(info.created_at)
    assert lifetime == timedelta(days=3)
    with pytest.raises(ValueError, match="positive"):
        store.create("admin", ttl=timedelta(0))


def test_a_revoked_token_is_refused_by_the_running_service_at_once(client: TestClient, ws: Path) -> None:
    token = create_token(ws, "admin")
    kept = create_token(ws, "admin")
    assert _me(client, token) == 200
    # revoked from another process's store (the CLI), while the service keeps its own connections
    first = TokenStore(ws).list_tokens()[0]
    assert TokenStore(ws).revoke(first.token_id)
    assert {_me(client, token), _me(client, kept)} == {401, 200}
    assert not TokenStore(ws).revoke(first.token_id), "revoking twice says nothing was revoked"


def test_cli_lists_tokens_by_id_and_revokes_one(ws: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["token", "create", "--workspace", str(ws), "--role", "admin", "--days", "7"])
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    (info,) = TokenStore(ws).list_tokens()
    listed = runner.invoke(cli, ["token", "list", "--workspace", str(ws)])
    assert listed.exit_code == 0 and info.token_id in listed.output and "有效" in listed.output
    assert token not in listed.output, "a listing never shows a token"
    assert runner.invoke(cli, ["token", "revoke", info.token_id, "--workspace", str(ws)]).exit_code == 0
    with pytest.raises(InvalidTokenError):
        TokenStore(ws).authenticate(token)
    assert info.token_id not in runner.invoke(cli, ["token", "list", "--workspace", str(ws)]).output
    assert "已吊销" in runner.invoke(cli, ["token", "list", "--workspace", str(ws), "--all"]).output
    assert runner.invoke(cli, ["token", "revoke", "no-such-id", "--workspace", str(ws)]).exit_code == 1


def test_tokens_made_before_lifetimes_get_an_id_and_the_default_lifetime(ws: Path) -> None:
    TokenStore(ws)  # the pepper
    (ws / SERVICE_DB).unlink()
    token = "tdr_" + "a" * 43
    digest = hmac.new((ws / PEPPER_FILE).read_bytes(), token.encode(), hashlib.sha256).hexdigest()
    with sqlite3.connect(ws / SERVICE_DB) as con:
        con.execute(
            "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, role TEXT NOT NULL, teacher_id TEXT,"
            " scope_kind TEXT, scope_value TEXT, created_at TEXT NOT NULL)"
        )
        con.execute(
            "INSERT INTO tokens VALUES (?, 'admin', NULL, NULL, NULL, '2024-01-01T00:00:00+00:00')", (digest,)
        )
    store = TokenStore(ws, ServiceSettings(token_ttl_days=1))
    assert store.authenticate(token).expires_at is not None
    (info,) = store.list_tokens()
    assert info.token_id == digest[:12]
    assert store.revoke(info.token_id)
    with pytest.raises(InvalidTokenError):
        store.authenticate(token)


# --- errors ----------------------------------------------------------------------------------------------


def test_unexpected_engine_failure_is_a_500_problem_that_leaks_nothing(ws: Path) -> None:
    class Broken(FakeEngine):
        def menu(self, teacher_id: str, constraints: object | None) -> dict[str, object] | None:
            raise RuntimeError(f"/srv/secret/bundle.lgb failed for {teacher_id}")

    app = create_app(ws, engine_factory=lambda _: Broken())
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/api/v1/teachers/XS01/menu", headers=_auth(ws, "teacher", teacher_id="XS01"))
    body = _is_problem(response, 500)
    assert (
        "secret" not in response.text and "RuntimeError" not in response.text and "XS01" not in body["detail"]
    )


def test_invalid_request_is_a_422_problem_naming_the_field(client: TestClient, ws: Path) -> None:
    headers = _auth(ws, "teacher", teacher_id="XS01")
    body = _is_problem(client.post("/api/v1/teachers/XS01/menu", json={"hours": -3}, headers=headers), 422)
    assert "hours" in body["detail"] and body["errors"][0]["loc"] == ["body", "hours"]
    _is_problem(client.post("/api/v1/teachers/XS01/menu", json={"formats": ["mooc"]}, headers=headers), 422)
    _is_problem(client.get("/api/v1/courses", params={"q": ""}, headers=headers), 422)


def test_unknown_path_is_a_404_problem(client: TestClient) -> None:
    _is_problem(client.get("/api/v1/nothing-here"), 404)


def test_api_answers_are_not_cached_and_pages_are_hardened(client: TestClient, ws: Path) -> None:
    api = client.get("/api/v1/me", headers=_auth(ws, "admin"))
    assert api.headers["cache-control"] == "no-store"
    page = client.get("/me/portrait")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
