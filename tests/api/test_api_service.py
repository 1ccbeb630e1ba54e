"""The service on the real engine (the trained 600-teacher province): each role reaches what it may and nothing
more, menus keep the policy, events are stored once, and a new bundle is swapped in without a failed request.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from api.app import API_PREFIX, create_app
from api.auth import create_token
from api.events import EventStore
from api.schemas import CourseHit
from api.settings import ServiceSettings
from data.workspace import Workspace, write_text_atomic
from recommender.artifacts import paired
from recommender.batch import score_local
from recommender.service import Engine, ScoredMenus

# Routes another helper owns and tests (trainer project selection).
OTHER_OWNERS = ("/projects",)


@dataclass(frozen=True)
class Places:
    """Teachers and areas of the province the tests refer to, read from its portraits."""

    roster: pd.DataFrame
    county: str  # the largest county
    city: str  # its city
    neighbour: str  # another county, of the same city when there is one
    far_city: str  # another city
    teacher: str  # a teacher of `county`
    colleague: str  # another teacher of `county`
    outsider: str  # a teacher of `neighbour`
    far_teacher: str  # a teacher of `far_city`
    small_school: str  # a school with fewer than 5 teachers
    small_county: str  # its county

    def ids(self) -> set[str]:
        return set(self.roster["teacher_id"])


@pytest.fixture(scope="module")
def ws(province: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the service writes its token and event stores into the workspace: work on a copy
    copy = tmp_path_factory.mktemp("service") / "ws"
    shutil.copytree(province / "ws", copy)
    return copy


@pytest.fixture(scope="module")
def places(ws: Path) -> Places:
    roster = pd.read_parquet(Workspace.open(ws).portraits_dir / "teachers.parquet").sort_values("teacher_id")
    sizes = roster.groupby("county").size().sort_values(ascending=False, kind="stable")
    county = str(sizes.index[0])
    city_of = roster.drop_duplicates("county").set_index("county")["city"]
    city = str(city_of[county])
    same_city = [c for c in sizes.index[1:] if city_of[c] == city]
    neighbour = str(same_city[0] if same_city else sizes.index[1])
    mine = roster[roster["county"] == county]
    schools = roster.groupby("school_id").size()
    small_school = str(schools.idxmin())
    assert schools.min() < 5, "the province fixture has a school under the privacy floor"
    far_city = str(next(c for c in city_of if c != city))
    return Places(
        roster=roster,
        county=county,
        city=city,
        neighbour=neighbour,
        far_city=far_city,
        teacher=str(mine["teacher_id"].iloc[0]),
        colleague=str(mine["teacher_id"].iloc[1]),
        outsider=str(roster.loc[roster["county"] == neighbour, "teacher_id"].iloc[0]),
        far_teacher=str(roster.loc[roster["city"] == far_city, "teacher_id"].iloc[0]),
        small_school=small_school,
        small_county=str(roster.loc[roster["school_id"] == small_school, "county"].iloc[0]),
    )


@pytest.fixture(scope="module")
def client(ws: Path) -> Iterator[TestClient]:
    app = create_app(ws, settings=ServiceSettings(reload_interval_s=3600))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def engine(client: TestClient) -> Engine:
    loaded = client.app.state.engine_holder.current()  # type: ignore[attr-defined]
    assert isinstance(loaded, Engine)
    return loaded


def _auth(ws: Path, role: str, teacher_id: str | None = None, scope: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(ws, role, teacher_id=teacher_id, scope=scope)}"}


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["detail"]), "detail is written in Chinese"
    return body


def _named(text: str, places: Places) -> set[str]:
    """The teacher ids of the province that appear in `text`."""
    return {t for t in places.ids() if t in text}


# --- every route refuses the wrong role or scope -------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """One request on a route and the callers it must refuse: 403, or 401 for `anonymous` (no token).

    Placeholders: {teacher} a teacher of the county, {county} the county, {course} a course."""

    path: str
    body: dict[str, Any] | None
    refused: tuple[str, ...]


EVERY_OUTSIDER = ("colleague", "neighbour_trainer", "far_city_trainer", "anonymous")
REFUSALS = {
    ("GET", "/teachers/{teacher_id}/portrait"): Refusal("/teachers/{teacher}/portrait", None, EVERY_OUTSIDER),
    ("GET", "/teachers/{teacher_id}/menu"): Refusal("/teachers/{teacher}/menu", None, EVERY_OUTSIDER),
    ("POST", "/teachers/{teacher_id}/menu"): Refusal(
        "/teachers/{teacher}/menu", {"hours": 30}, EVERY_OUTSIDER
    ),
    ("GET", "/teachers/{teacher_id}/events"): Refusal("/teachers/{teacher}/events", None, EVERY_OUTSIDER),
    ("GET", "/teachers/{teacher_id}/growth"): Refusal("/teachers/{teacher}/growth", None, EVERY_OUTSIDER),
    # 训后成效 holds cohorts' figures: no teacher sees it; a trainer sees its own area's (never another's)
    ("GET", "/effects"): Refusal("/effects", None, ("teacher", "anonymous")),
    ("GET", "/effects/export"): Refusal("/effects/export", None, ("teacher", "anonymous")),
    # teachers see no cohort, not even their own county's
    ("GET", "/cohorts/{by}/{value}"): Refusal("/cohorts/county/{county}", None, ("teacher", *EVERY_OUTSIDER)),
    ("GET", "/cohorts/{by}/{value}/export"): Refusal(
        "/cohorts/county/{county}/export", None, ("teacher", *EVERY_OUTSIDER)
    ),
    # feedback is the teacher's own voice: even the trainer of the county is refused
    ("POST", "/events"): Refusal(
        "/events",
        {
            "event_id": "evt-refused-0001",
            "teacher_id": "{teacher}",
            "course_id": "{course}",
            "type": "enrolled",
        },
        ("colleague", "county_trainer", "neighbour_trainer", "anonymous"),
    ),
    # open to every signed-in role (the catalogue holds no teacher's data): only a caller without a token
    ("GET", "/courses"): Refusal("/courses?q=课堂教学", None, ("anonymous",)),
    ("GET", "/courses/{course_id}"): Refusal("/courses/{course}", None, ("anonymous",)),
    ("GET", "/me"): Refusal("/me", None, ("anonymous",)),
}


def test_every_api_route_has_a_refusal_case(client: TestClient) -> None:
    spec = client.get(f"{API_PREFIX}/openapi.json").json()
    routes = {
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, operations in spec["paths"].items()
        if not any(part in path for part in OTHER_OWNERS)
        for method in operations
        if path.startswith(API_PREFIX)
    }
    assert routes == set(REFUSALS)


@pytest.mark.parametrize("route", list(REFUSALS), ids=[f"{m} {p}" for m, p in REFUSALS])
def test_route_refuses_the_wrong_role_or_scope_and_names_no_one(
    client: TestClient, ws: Path, places: Places, engine: Engine, route: tuple[str, str]
) -> None:
    case = REFUSALS[route]
    fill = {
        "teacher": places.teacher,
        "county": places.county,
        "course": str(engine.art.courses["course_id"].iloc[0]),
    }
    body = {k: v.format(**fill) if isinstance(v, str) else v for k, v in (case.body or {}).items()} or None
    callers = {
        "teacher": _auth(ws, "teacher", teacher_id=places.teacher),
        "colleague": _auth(ws, "teacher", teacher_id=places.colleague),
        "county_trainer": _auth(ws, "trainer", scope=f"county:{places.county}"),
        "neighbour_trainer": _auth(ws, "trainer", scope=f"county:{places.neighbour}"),
        "far_city_trainer": _auth(ws, "trainer", scope=f"city:{places.far_city}"),
        "anonymous": {},
    }
    for who in case.refused:
        response = client.request(
            route[0], API_PREFIX + case.path.format(**fill), headers=callers[who], json=body
        )
        refused = _problem(response, 401 if who == "anonymous" else 403)
        assert not _named(json.dumps(refused, ensure_ascii=False), places), who


def test_a_malformed_request_echoes_no_teacher_id_back(client: TestClient, ws: Path, places: Places) -> None:
    headers = _auth(ws, "teacher", teacher_id=places.teacher)
    event = {"event_id": "bad id!", "teacher_id": places.colleague, "course_id": "", "type": "liked"}
    refused = _problem(client.post(f"{API_PREFIX}/events", json=event, headers=headers), 422)
    assert not _named(json.dumps(refused, ensure_ascii=False), places)
    wishes = {"hours": -1, "exclude": [places.colleague]}
    url = f"{API_PREFIX}/teachers/{places.teacher}/menu"
    refused = _problem(client.post(url, json=wishes, headers=headers), 422)
    assert not _named(json.dumps(refused, ensure_ascii=False), places)


# --- teachers -----------------------------------------------------------------------------------------------


def test_teacher_reads_own_portrait_with_named_competencies_and_history(
    client: TestClient, ws: Path, places: Places
) -> None:
    body = client.get(
        f"{API_PREFIX}/teachers/{places.teacher}/portrait",
        headers=_auth(ws, "teacher", teacher_id=places.teacher),
    ).json()
    mine = places.roster.set_index("teacher_id").loc[places.teacher]
    assert body["teacher_id"] == places.teacher and body["county"] == places.county
    assert body["hours_owed"] == pytest.approx(mine["hours_owed"])
    comps = body["competencies"]
    assert comps and all(c["name"] and c["std_error"] > 0 for c in comps)
    assert [c["gap"] for c in comps] == sorted((c["gap"] for c in comps), reverse=True), "largest gap first"
    assert all(h["status"] in {"enrolled", "completed", "dropped", "no_show"} for h in body["history"])
    assert _named(json.dumps(body), places) == {places.teacher}


def test_trainer_outside_the_county_is_refused_exactly_as_for_an_unknown_teacher(
    client: TestClient, ws: Path, places: Places
) -> None:
    headers = _auth(ws, "trainer", scope=f"county:{places.county}")
    assert client.get(f"{API_PREFIX}/teachers/{places.teacher}/menu", headers=headers).status_code == 200
    outside = _problem(client.get(f"{API_PREFIX}/teachers/{places.outsider}/menu", headers=headers), 403)
    unknown = _problem(client.get(f"{API_PREFIX}/teachers/T-NO-SUCH/menu", headers=headers), 403)
    assert outside == unknown


def test_city_trainer_reaches_the_teachers_of_its_city_only(
    client: TestClient, ws: Path, places: Places
) -> None:
    headers = _auth(ws, "trainer", scope=f"city:{places.city}")
    assert client.get(f"{API_PREFIX}/teachers/{places.teacher}/portrait", headers=headers).status_code == 200
    _problem(client.get(f"{API_PREFIX}/teachers/{places.far_teacher}/portrait", headers=headers), 403)


def test_a_teacher_missing_from_the_portraits_gets_a_404_that_names_no_one(
    client: TestClient, ws: Path
) -> None:
    body = _problem(client.get(f"{API_PREFIX}/teachers/T-NO-SUCH/portrait", headers=_auth(ws, "admin")), 404)
    assert "T-NO-SUCH" not in json.dumps(body, ensure_ascii=False)


def test_default_menu_keeps_the_policy_and_explains_each_course(
    client: TestClient, ws: Path, places: Places, engine: Engine
) -> None:
    response = client.get(
        f"{API_PREFIX}/teachers/{places.teacher}/menu",
        headers=_auth(ws, "teacher", teacher_id=places.teacher),
    )
    menu = response.json()
    assert response.headers["x-tdr-model-version"] == menu["model_version"] == engine.version
    done = set(places.roster.set_index("teacher_id").at[places.teacher, "completed_course_ids"])
    ids = [item["course_id"] for item in menu["items"]]
    assert ids and len(ids) == len(set(ids)) and not set(ids) & done
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in item["reason"]) for item in menu["items"])
    policy = engine.art.policy
    if not menu["notes"]:  # no rule had to be relaxed
        assert (
            policy.menu_hours_target
            <= menu["hours_total"]
            <= policy.menu_hours_target + policy.menu_hours_slack
        )


def test_replan_follows_the_teachers_hours_formats_and_exclusions(
    client: TestClient, ws: Path, places: Places, engine: Engine
) -> None:
    headers = _auth(ws, "teacher", teacher_id=places.teacher)
    url = f"{API_PREFIX}/teachers/{places.teacher}/menu"
    first = client.get(url, headers=headers).json()["items"][0]["course_id"]
    wishes = {"hours": 20, "formats": ["online", "blended"], "exclude": [first]}
    menu = client.post(url, json=wishes, headers=headers).json()
    ids = [item["course_id"] for item in menu["items"]]
    assert first not in ids and menu["hours_target"] == 20
    assert menu["hours_total"] <= 20 + engine.art.policy.menu_hours_slack
    if not menu["notes"]:
        assert {item["format"] for item in menu["items"]} <= {"online", "blended"}
        assert menu["hours_total"] >= 20


def test_scored_menus_are_the_menus_the_engine_plans_live(ws: Path, tmp_path: Path, places: Places) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy, ignore=shutil.ignore_patterns("*.sqlite*", "service.pepper"))
    few = places.roster["teacher_id"].iloc[:4].tolist()
    # the portraits the bundle holds: those scoring and the service read (recommender.artifacts.paired)
    portraits = paired(Workspace.open(copy))[0].portraits_dir / "teachers.parquet"
    rows = pd.read_parquet(portraits)
    rows[rows["teacher_id"].isin(few)].to_parquet(portraits, index=False)
    score_local(Workspace.open(copy), copy / "scores", 20, 2, workers=1)
    scored, live = Engine.load(copy), Engine.load(copy, scores=tmp_path / "no-scores")
    assert scored.scored is not None and len(scored.scored) == 2
    assert live.scored is not None and len(live.scored) == 0
    assert scored.ready_menu(few[1]) is None, "nothing is at hand before its part is read"
    for teacher_id in few:
        assert scored.menu(teacher_id) == live.menu(teacher_id)
    fresh = Engine.load(copy)
    fresh.menu(few[0])  # reads the part that holds few[1] too
    assert fresh.ready_menu(few[1]) == live.menu(few[1])


def test_a_scored_run_of_another_bundle_is_not_used(tmp_path: Path, engine: Engine) -> None:
    out = tmp_path / "scores"
    (out / "menus.parquet").mkdir(parents=True)
    write_text_atomic(
        out / "_run.json", json.dumps({"bundle": "an-older-bundle", "block_size": 2, "top_k": 20})
    )
    pd.DataFrame({"teacher_id": ["T1"], "position": [1], "course_id": ["C1"]}).to_parquet(
        out / "menus.parquet" / "part-00000.parquet"
    )
    assert len(ScoredMenus(out, engine.version)) == 0 and len(ScoredMenus(out, "an-older-bundle")) == 1


# --- courses ------------------------------------------------------------------------------------------------


def test_search_finds_courses_and_returns_course_fields_only(
    client: TestClient, ws: Path, places: Places
) -> None:
    response = client.get(
        f"{API_PREFIX}/courses",
        params={"q": "师德师风", "top_k": 5},
        headers=_auth(ws, "teacher", teacher_id=places.teacher),
    )
    hits = response.json()["hits"]
    assert 0 < len(hits) <= 5 and any("师德" in h["title"] for h in hits)
    assert all(set(h) == set(CourseHit.model_fields) for h in hits)
    assert not _named(response.text, places)


def test_course_detail_and_an_unknown_course(client: TestClient, ws: Path, engine: Engine) -> None:
    headers = _auth(ws, "admin")
    course_id = str(engine.art.courses["course_id"].iloc[0])
    detail = client.get(f"{API_PREFIX}/courses/{course_id}", headers=headers).json()
    assert detail["course_id"] == course_id and detail["hours"] > 0
    _problem(client.get(f"{API_PREFIX}/courses/C-NO-SUCH", headers=headers), 404)


# --- cohorts ------------------------------------------------------------------------------------------------


def test_trainer_sees_own_county_and_not_another(client: TestClient, ws: Path, places: Places) -> None:
    headers = _auth(ws, "trainer", scope=f"county:{places.county}")
    body = client.get(f"{API_PREFIX}/cohorts/county/{places.county}", headers=headers).json()
    mine = places.roster[places.roster["county"] == places.county]
    assert body["n_teachers"] == len(mine) and body["span"]["county"] == [places.county]
    assert {t["county"] for t in body["behind_on_hours"]} <= {places.county}
    other = _problem(client.get(f"{API_PREFIX}/cohorts/county/{places.neighbour}", headers=headers), 403)
    missing = _problem(client.get(f"{API_PREFIX}/cohorts/county/无此县", headers=headers), 403)
    assert other["detail"] == missing["detail"]
    _problem(client.get(f"{API_PREFIX}/cohorts/city/{places.city}", headers=headers), 403)


def test_cohort_by_stage_covers_only_the_trainers_county(
    client: TestClient, ws: Path, places: Places
) -> None:
    mine = places.roster[places.roster["county"] == places.county]
    stage = str(mine["stage"].value_counts().index[0])
    body = client.get(
        f"{API_PREFIX}/cohorts/stage/{stage}", headers=_auth(ws, "trainer", scope=f"county:{places.county}")
    ).json()
    assert body["n_teachers"] == int((mine["stage"] == stage).sum()) and body["span"]["county"] == [
        places.county
    ]
    assert _named(json.dumps(body), places) <= set(mine["teacher_id"])


@pytest.mark.parametrize("level", ["province", "county"])
def test_heatmap_hides_groups_below_the_privacy_floor(
    client: TestClient, ws: Path, places: Places, level: str
) -> None:
    value = str(places.roster["province"].iloc[0]) if level == "province" else places.county
    body = client.get(f"{API_PREFIX}/cohorts/{level}/{value}", headers=_auth(ws, "admin")).json()
    members = places.roster[places.roster[level] == value]
    heatmap = body["heatmap"]
    assert heatmap["row_level"] == {"province": "city", "county": "school"}[level]
    sizes = members.groupby({"province": "city", "county": "school_id"}[level]).size()
    assert dict(zip(heatmap["rows"], heatmap["row_sizes"], strict=True)) == sizes[sizes >= 5].to_dict()
    assert body["hidden_rows"] == int((sizes < 5).sum())
    if level == "province":
        assert body["hidden_rows"] > 0, "the province fixture has a city under the privacy floor"


@pytest.mark.parametrize("role", ["trainer", "admin"])
def test_a_group_of_fewer_than_five_teachers_is_refused_to_everyone(
    client: TestClient, ws: Path, places: Places, role: str
) -> None:
    headers = _auth(ws, role, scope=f"county:{places.small_county}" if role == "trainer" else None)
    small = [f"school/{places.small_school}"]
    if (places.roster["county"] == places.small_county).sum() < 5:
        small.append(f"county/{places.small_county}")
    for cohort in small:
        for suffix in ("", "/export"):
            refused = _problem(client.get(f"{API_PREFIX}/cohorts/{cohort}{suffix}", headers=headers), 403)
            assert "5" in refused["detail"] and not _named(json.dumps(refused, ensure_ascii=False), places)


def test_cohort_export_is_the_counties_workbook(client: TestClient, ws: Path, places: Places) -> None:
    response = client.get(
        f"{API_PREFIX}/cohorts/county/{places.county}/export",
        headers=_auth(ws, "trainer", scope=f"county:{places.county}"),
    )
    book = load_workbook(io.BytesIO(response.content))
    overview = dict(book["概览"].iter_rows(min_row=2, values_only=True))
    assert overview["分组取值"] == places.county
    behind = [r[0] for r in book["学时落后教师"].iter_rows(min_row=2, values_only=True)]
    assert set(behind) <= set(places.roster.loc[places.roster["county"] == places.county, "teacher_id"])


# --- events -------------------------------------------------------------------------------------------------


def test_accepting_a_course_twice_stores_one_event(client: TestClient, ws: Path, places: Places) -> None:
    headers = _auth(ws, "teacher", teacher_id=places.colleague)
    menu = client.get(f"{API_PREFIX}/teachers/{places.colleague}/menu", headers=headers).json()
    event = {
        "event_id": "evt-accept-0001",
        "teacher_id": places.colleague,
        "course_id": menu["items"][0]["course_id"],
        "type": "enrolled",
    }
    first = client.post(f"{API_PREFIX}/events", json=event, headers=headers)
    again = client.post(f"{API_PREFIX}/events", json=event, headers=headers)
    assert (first.status_code, first.json()["stored"]) == (201, True)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    listed = client.get(f"{API_PREFIX}/teachers/{places.colleague}/events", headers=headers).json()
    assert [e["event_id"] for e in listed] == ["evt-accept-0001"]
    stored = EventStore(ws).to_frame()
    assert (stored["event_id"] == "evt-accept-0001").sum() == 1


# --- hot reload ---------------------------------------------------------------------------------------------


def _new_bundle(ws: Path, version: str) -> None:
    """A copy of the current bundle under another version, switched in as `tdr train` does (CURRENT last)."""
    bundles = ws / "bundles"
    current = (bundles / "CURRENT").read_text(encoding="utf-8").strip()
    shutil.copytree(bundles / current, bundles / version)
    manifest = json.loads((bundles / version / "manifest.json").read_text(encoding="utf-8"))
    (bundles / version / "manifest.json").write_text(
        json.dumps({**manifest, "version": version}), encoding="utf-8"
    )
    write_text_atomic(bundles / "CURRENT", version + "\n")


def test_a_new_bundle_is_picked_up_without_a_failed_request(ws: Path, tmp_path: Path, places: Places) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy, ignore=shutil.ignore_patterns("*.sqlite*", "service.pepper"))
    app = create_app(copy, settings=ServiceSettings(reload_interval_s=0.05))
    headers = _auth(copy, "teacher", teacher_id=places.teacher)
    seen: list[tuple[int, str]] = []
    stop = threading.Event()
    with TestClient(app, raise_server_exceptions=False) as c:
        old = c.get("/readyz").json()["model_version"]

        def ask() -> None:
            while not stop.is_set():
                for what in ("menu", "portrait"):
                    r = c.get(f"{API_PREFIX}/teachers/{places.teacher}/{what}", headers=headers)
                    seen.append((r.status_code, r.headers.get("x-tdr-model-version", "")))

        asker = threading.Thread(target=ask)
        asker.start()
        try:
            _new_bundle(copy, "29991231T000000000000Z-reloaded")
            app.state.engine_holder.current()
            app.state.engine_holder.load_now()
            for _ in range(600):
                if any(v.endswith("-reloaded") for _, v in seen[-2:]) or not asker.is_alive():
                    break
                stop.wait(0.05)
        finally:
            stop.set()
            asker.join(timeout=60)
        assert c.get("/readyz").json()["model_version"] == "29991231T000000000000Z-reloaded"
    statuses = [s for s, _ in seen]
    versions = [v for _, v in seen]
    assert statuses == [200] * len(seen)
    switch = versions.index("29991231T000000000000Z-reloaded")
    assert set(versions[:switch]) == {old} and set(versions[switch:]) == {"29991231T000000000000Z-reloaded"}


class _Stop(Exception):
    """Ends a scoring run after its first block, as a kill would."""


def _first_block_only(done: int, total: int) -> None:
    if 0 < done < total:
        raise _Stop


def _scored_in_two_blocks(
    ws: Path, tmp_path: Path, places: Places, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, int]:
    """A copy of the workspace scored in two blocks (the block size returned), parts found at once."""
    monkeypatch.setattr("recommender.service.RESCAN_S", 0.0)
    copy = tmp_path / "ws"
    shutil.copytree(ws, copy, ignore=shutil.ignore_patterns("*.sqlite*", "service.pepper"))
    block = len(places.roster) // 2 + 1
    score_local(Workspace.open(copy), copy / "scores", 20, block, workers=1)
    return copy, block


def _forbid_live_plans(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_live_plans(*_: object) -> None:
        raise AssertionError("a default menu was planned live")

    monkeypatch.setattr(engine, "_planned", no_live_plans)


def test_after_a_retrain_menus_come_from_the_previous_run_until_the_new_run_covers_them(
    ws: Path, tmp_path: Path, places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy, block = _scored_in_two_blocks(ws, tmp_path, places, monkeypatch)
    teachers = sorted(places.roster["teacher_id"])
    first, last = teachers[0], teachers[-1]  # in the first and the last block
    old = Engine.load(copy)
    before = {t: old.menu(t) for t in (first, last)}
    _new_bundle(copy, "29991231T000000000000Z-retrained")
    engine = Engine.load(copy)
    assert engine.version.endswith("-retrained")

    _forbid_live_plans(engine, monkeypatch)
    # the new bundle's run has not started: the previous run answers, and says which bundle made the menu
    for t in (first, last):
        assert engine.menu(t) == before[t] and before[t]["model_version"] == old.version
    headers = _auth(copy, "teacher", teacher_id=last)
    app = create_app(copy, engine_factory=lambda _: engine, settings=ServiceSettings(reload_interval_s=3600))
    with TestClient(app) as c:
        answer = c.get(f"{API_PREFIX}/teachers/{last}/menu", headers=headers)
    assert answer.json()["model_version"] == old.version
    assert answer.headers["x-tdr-model-version"] == engine.version
    # the new run is under way (one block of two): each teacher gets the newest menu there is
    with pytest.raises(_Stop):
        score_local(Workspace.open(copy), copy / "scores", 20, block, _first_block_only, workers=1)
    assert (copy / "scores" / "_previous").is_dir()
    assert engine.menu(first)["model_version"] == engine.version  # type: ignore[index]
    assert engine.menu(last) == before[last]
    # finished: the previous run is gone and the new one answers for everyone
    score_local(Workspace.open(copy), copy / "scores", 20, block, workers=1)
    assert not (copy / "scores" / "_previous").exists()
    assert engine.menu(last)["model_version"] == engine.version  # type: ignore[index]


def test_a_rerun_of_the_same_bundle_on_new_inputs_answers_from_the_run_it_replaces(
    ws: Path, tmp_path: Path, places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy, block = _scored_in_two_blocks(ws, tmp_path, places, monkeypatch)
    last = sorted(places.roster["teacher_id"])[-1]
    engine = Engine.load(copy)
    before = engine.menu(last)
    portraits = paired(Workspace.open(copy))[0].portraits_dir / "teachers.parquet"
    os.utime(portraits, ns=(portraits.stat().st_atime_ns, portraits.stat().st_mtime_ns + 10**9))  # new inputs
    with pytest.raises(_Stop):
        score_local(Workspace.open(copy), copy / "scores", 20, block, _first_block_only, workers=1)
    fresh = Engine.load(copy)

    _forbid_live_plans(fresh, monkeypatch)
    assert fresh.menu(last) == before
