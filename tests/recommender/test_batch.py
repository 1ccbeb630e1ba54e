"""Batch scoring: block partitions read back the portraits exactly, the local engine (in this process or in
worker processes) and the Ray engine write the same files, a killed run resumes to the same files, and every
teacher gets a menu or a stated reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data.workspace import Workspace
from recommender.artifacts import load_current
from recommender.batch import blocks_of, score_local
from recommender.scoring import MENU_COLUMNS, REC_COLUMNS, PortraitBlock, score_batch

TOP_K = 20
BLOCK_SIZE = 100  # the province's 600 teachers in 6 blocks


class Killed(Exception):
    """Stands for the kill of a batch job between two blocks."""


def parts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}


def outputs(out: Path) -> dict[str, dict[str, bytes]]:
    return {name: parts(out / name) for name in ("recommendations.parquet", "menus.parquet")}


@pytest.fixture(scope="module")
def reference(province_ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted local run, scored in this process."""
    out = tmp_path_factory.mktemp("reference")
    score_local(province_ws, out, TOP_K, BLOCK_SIZE, workers=1)
    return out


def test_blocks_read_back_the_portraits_and_records_exactly(province_ws: Workspace) -> None:
    rows = pd.read_parquet(province_ws.portraits_dir / "teachers.parquet").sort_values("teacher_id")
    comp = pd.read_parquet(province_ws.portraits_dir / "competencies.parquet")
    records = province_ws.read_table("training_records")
    seen = 0
    for i, block in blocks_of(province_ws, BLOCK_SIZE):
        expected = rows.iloc[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE].reset_index(drop=True)
        pd.testing.assert_frame_equal(block.rows, expected)
        ids = set(expected["teacher_id"])
        pd.testing.assert_frame_equal(
            block.competencies.reset_index(drop=True),
            comp[comp["teacher_id"].isin(ids)].reset_index(drop=True),
        )
        # grouped by teacher, each teacher's records in the order of the table
        mine = records[records["teacher_id"].isin(ids)].sort_values("teacher_id", kind="stable")
        pd.testing.assert_frame_equal(
            block.records.reset_index(drop=True), mine[block.records.columns].reset_index(drop=True)
        )
        seen += len(block.rows)
    assert seen == len(rows)


def test_outputs_have_the_contract_columns_and_one_ranked_list_per_teacher(
    reference: Path, province_ws: Workspace
) -> None:
    recs = pd.read_parquet(reference / "recommendations.parquet")
    menus = pd.read_parquet(reference / "menus.parquet")
    assert list(recs.columns) == REC_COLUMNS and list(menus.columns) == MENU_COLUMNS
    assert recs["rank"].dtype == "int64" and recs["score"].dtype == "float64"
    assert menus["hours"].dtype == "float64" and menus["position"].dtype == "int64"
    assert recs["reason"].notna().all() and recs["course_id"].notna().all()
    # ranks run 1..n without gaps, at most top-k, and a course appears once per teacher
    ranks = recs.groupby("teacher_id")["rank"]
    assert (ranks.min() == 1).all() and (ranks.max() == ranks.count()).all() and (ranks.max() <= TOP_K).all()
    assert not recs.duplicated(["teacher_id", "course_id"]).any()
    teachers = pd.read_parquet(province_ws.portraits_dir / "teachers.parquet", columns=["teacher_id"])
    assert set(menus["teacher_id"]) == set(teachers["teacher_id"])
    # a menu row names a course, or (position 0) states why there is none
    chosen = menus[menus["course_id"].notna()]
    assert (chosen["position"] >= 1).all() and (chosen["hours"] > 0).all()
    assert menus.loc[menus["course_id"].isna(), "reason"].str.len().gt(0).all()


def test_a_killed_run_resumes_and_ends_with_the_files_of_an_uninterrupted_run(
    reference: Path, province_ws: Workspace, tmp_path: Path
) -> None:
    def kill_after_first_block(done: int, total: int) -> None:
        if done > 0:
            raise Killed

    with pytest.raises(Killed):
        score_local(province_ws, tmp_path, TOP_K, BLOCK_SIZE, kill_after_first_block, workers=2)
    written = outputs(tmp_path)
    assert 0 < len(written["recommendations.parquet"]) < 6
    scored: list[int] = []
    score_local(province_ws, tmp_path, TOP_K, BLOCK_SIZE, lambda done, total: scored.append(done), workers=2)
    # the re-run starts from the finished blocks and leaves their files as they were
    assert scored[0] >= BLOCK_SIZE and scored[-1] == 600
    resumed = outputs(tmp_path)
    assert all(resumed[k][name] == data for k in written for name, data in written[k].items())
    assert resumed == outputs(reference)


def test_the_ray_engine_writes_the_local_engines_files_row_for_row(
    reference: Path, province_ws: Workspace, tmp_path: Path
) -> None:
    from recommender.ray_engine import score_ray

    progress: list[tuple[int, int]] = []
    score_ray(province_ws, tmp_path, TOP_K, BLOCK_SIZE, None, 2, lambda d, n: progress.append((d, n)))
    assert progress[-1] == (600, 600)
    for name in ("recommendations.parquet", "menus.parquet"):
        assert sorted(parts(tmp_path / name)) == sorted(parts(reference / name))
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / name), pd.read_parquet(reference / name))


def test_a_teachers_results_do_not_depend_on_the_block_they_are_scored_in(province_ws: Workspace) -> None:
    # what lets the service (one teacher) and every engine (any block size) give the same answer
    art = load_current(province_ws.bundles_dir)
    _, block = next(blocks_of(province_ws, 24))
    whole = score_batch(block, art, TOP_K)
    for size in (1, 7):
        pieces = []
        for start in range(0, len(block.rows), size):
            rows = block.rows.iloc[start : start + size].reset_index(drop=True)
            ids = set(rows["teacher_id"])
            piece = PortraitBlock(
                rows,
                block.competencies[block.competencies["teacher_id"].isin(ids)],
                block.records[block.records["teacher_id"].isin(ids)],
            )
            pieces.append(score_batch(piece, art, TOP_K))
        for k in (0, 1):
            pd.testing.assert_frame_equal(pd.concat([p[k] for p in pieces], ignore_index=True), whole[k])


def test_a_teacher_with_an_unknown_subject_gets_general_courses_and_one_with_none_a_stated_reason(
    province_ws: Workspace,
) -> None:
    art = load_current(province_ws.bundles_dir)
    _, block = next(blocks_of(province_ws, 3))
    rows = block.rows.copy()
    rows.loc[0, "subject"] = "天文学"  # no course names it
    rows.loc[1, "stage"] = "vocational"  # no course is open to it: nothing is eligible
    recs, menus = score_batch(PortraitBlock(rows, block.competencies, block.records), art, TOP_K)
    astronomer, nobody = rows.loc[0, "teacher_id"], rows.loc[1, "teacher_id"]
    general = art.courses.set_index("course_id")["subjects"].map(len) == 0
    offered = menus.loc[menus["teacher_id"] == astronomer, "course_id"]
    assert len(offered) and general[offered].all()
    assert general[recs.loc[recs["teacher_id"] == astronomer, "course_id"]].all()
    stated = menus[menus["teacher_id"] == nobody]
    assert len(stated) == 1 and stated["course_id"].isna().all() and (stated["status"] == "empty").all()
    assert stated["reason"].iloc[0].startswith("无法生成选学菜单")
    assert not (recs["teacher_id"] == nobody).any()
