"""End to end on the shared seeded province: the CLI contract's outputs, and that every path gives one answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from data.schema import STAGE
from data.workspace import Workspace
from recommender.artifacts import load_current
from recommender.menu import Menu, TeacherMenuContext, check_menu
from recommender.scoring import PortraitBlock, menu_teachers, rank_block, score_batch
from recommender.service import Engine
from tdr.cli import app

runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def scored(province: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scores")
    _cli("score", "--workspace", str(province / "ws"), "--out", str(out), "--block-size", "250")
    return out


@pytest.fixture(scope="module")
def portraits(province_ws: Workspace) -> pd.DataFrame:
    return pd.read_parquet(province_ws.portraits_dir / "teachers.parquet")


def test_score_writes_the_contract_columns_for_every_teacher(scored: Path, portraits: pd.DataFrame) -> None:
    recs = pd.read_parquet(scored / "recommendations.parquet")
    menus = pd.read_parquet(scored / "menus.parquet")
    assert list(recs.columns[:5]) == ["teacher_id", "rank", "course_id", "score", "reason"]
    assert {"teacher_id", "course_id", "hours", "reason"} <= set(menus.columns)
    assert set(recs["teacher_id"]) == set(portraits["teacher_id"])
    assert set(menus["teacher_id"]) == set(portraits["teacher_id"])
    assert recs.groupby("teacher_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    assert recs["reason"].str.len().gt(0).all()


def test_no_recommendation_is_completed_already_or_closed_to_the_teacher(
    scored: Path, portraits: pd.DataFrame, province_ws: Workspace
) -> None:
    recs = pd.read_parquet(scored / "recommendations.parquet")
    done = portraits[["teacher_id", "completed_course_ids"]].explode("completed_course_ids").dropna()
    repeated = recs.merge(
        done, left_on=["teacher_id", "course_id"], right_on=["teacher_id", "completed_course_ids"]
    )
    assert repeated.empty
    courses = load_current(province_ws.bundles_dir).courses[["course_id", "stages", "subjects"]]
    pairs = recs.merge(portraits[["teacher_id", "stage", "subject"]], on="teacher_id").merge(
        courses, on="course_id"
    )
    stage_ok = [len(s) == 0 or st in set(s) for s, st in zip(pairs["stages"], pairs["stage"], strict=True)]
    subject_ok = [
        len(s) == 0 or sj in set(s) for s, sj in zip(pairs["subjects"], pairs["subject"], strict=True)
    ]
    assert all(stage_ok) and all(subject_ok)


def test_every_menu_obeys_the_policy(province_ws: Workspace, portraits: pd.DataFrame) -> None:
    art = load_current(province_ws.bundles_dir)
    comp = pd.read_parquet(province_ws.portraits_dir / "competencies.parquet")
    records = province_ws.read_table("training_records")
    rows = portraits.sort_values("teacher_id").head(120).reset_index(drop=True)
    ids = set(rows["teacher_id"])
    block = PortraitBlock(rows, comp[comp["teacher_id"].isin(ids)], records[records["teacher_id"].isin(ids)])
    _, menus = score_batch(block, art)
    pool = rank_block(block, art).pool
    teachers = menu_teachers(rows).set_index("teacher_id")
    for tid, menu in menus.groupby("teacher_id"):
        t = teachers.loc[tid]
        chosen = menu[menu["course_id"].notna()]
        cands = pool[pool["teacher_id"] == tid].drop(columns="teacher_id")
        plan = Menu(
            str(tid),
            tuple(chosen["course_id"]),
            tuple(chosen["hours"].astype(float)),
            float(chosen["hours"].sum()),
            float(
                cands.set_index("course_id")
                .loc[list(chosen["course_id"]), "hours"][
                    cands.set_index("course_id")
                    .loc[list(chosen["course_id"]), "practical"]
                    .to_numpy(dtype=bool)
                ]
                .sum()
            ),
            float(cands.set_index("course_id").loc[list(chosen["course_id"]), "cost_yuan"].sum()),
            menu["status"].iloc[0],
        )
        context = TeacherMenuContext(
            str(tid), str(t["stage"]), tuple(t["missing_mandatory"]), frozenset(t["completed"])
        )
        assert plan.status in {"ok", "relaxed", "empty"}
        if plan.status == "ok":
            assert check_menu(plan, cands, context, art.policy) == []


def test_service_menu_equals_the_batch_menu(province_ws: Workspace, scored: Path) -> None:
    engine = Engine.load(province_ws)
    menus = pd.read_parquet(scored / "menus.parquet")
    for tid in menus["teacher_id"].drop_duplicates().head(5):
        served = engine.menu(tid)
        assert served is not None
        batch = menus[(menus["teacher_id"] == tid) & menus["course_id"].notna()]
        assert [i["course_id"] for i in served["items"]] == batch["course_id"].tolist()


def test_recommend_prints_the_teacher_and_menu_and_refuses_unknown_ids(
    province: Path, portraits: pd.DataFrame
) -> None:
    tid = str(portraits["teacher_id"].iloc[0])
    out = _cli("recommend", tid, "--workspace", str(province / "ws"), "--json")
    payload = json.loads(out)
    assert payload["portrait"]["teacher_id"] == tid
    assert payload["menu"]["items"]
    text = _cli("recommend", tid, "--workspace", str(province / "ws"))
    row = portraits.iloc[0]
    # one vocabulary in front of users: the stage and the formats in Chinese, never the contract codes
    assert f" · {STAGE.label(row['stage'])} · " in text and f" · {row['stage']} · " not in text
    assert not {"online", "offline", "blended", "workshop", "shadowing", "school_based"} & set(text.split())
    missing = runner.invoke(app, ["recommend", "NOPE-0", "--workspace", str(province / "ws")])
    assert missing.exit_code == 1
    assert "未找到教师" in missing.output


def test_portraits_export_is_long_with_intervals(province: Path, tmp_path: Path) -> None:
    out = tmp_path / "portraits.csv"
    _cli("portraits", "--workspace", str(province / "ws"), "--out", str(out))
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["teacher_id", "competency", "estimate", "std_error", "source"]
    assert frame["estimate"].between(0, 100).all()
    assert (frame["std_error"] > 0).all()
    assert set(frame["source"]) <= {"items", "scores", "fused", "prior"}


def test_cohort_export_hides_small_groups(province: Path, tmp_path: Path) -> None:
    out = tmp_path / "cohort.csv"
    _cli("cohort", "--workspace", str(province / "ws"), "--by", "school", "--out", str(out))
    frame = pd.read_csv(out)
    assert not frame.empty
    if "n_teachers" in frame:
        assert (frame["n_teachers"].dropna() >= 5).all()


def test_search_finds_courses_by_meaning(province: Path) -> None:
    out = _cli("search", "师德师风 职业道德", "--workspace", str(province / "ws"), "--json", "--top-k", "5")
    hits = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(hits) == 5
    assert np.all(np.diff([h["score"] for h in hits]) <= 1e-9)
    assert any("师德" in h["title"] for h in hits)


def test_token_create_prints_the_token_alone(province: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tables").symlink_to(province / "ws" / "tables")
    out = _cli("token", "create", "--workspace", str(ws), "--role", "admin")
    assert len(out.strip().splitlines()) == 1
    assert len(out.strip()) >= 20
