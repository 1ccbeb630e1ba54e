"""The synthetic province reads like a real export, is deterministic, and its ground truth agrees with it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.reference import load_mandatory_topics, load_taxonomy
from data.synthetic import GenerationSummary, Truth, generate, load_truth, true_utility

N_TEACHERS = 600

CONTRACT_COLUMNS = {
    "teachers": ["teacher_id", "stage", "subject", "county", "school_id", "school_type", "title", "years_teaching"],
    "courses": [
        "course_id", "title", "description", "hours", "format", "competencies", "stages", "subjects", "level",
        "practical", "mandatory_topic", "prerequisites", "provider", "cost_yuan", "active",
    ],
    "training_records": [
        "record_id", "teacher_id", "course_id", "project_id", "project_name", "start_date", "end_date", "hours",
        "format", "status", "score", "satisfaction",
    ],
    "items": ["item_id", "competencies", "max_score"],
    "responses": ["teacher_id", "item_id", "score", "taken_at"],
    "competency_scores": ["teacher_id", "competency", "score", "taken_at", "source"],
}  # fmt: skip


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("province")
    return out, generate(out, n_teachers=N_TEACHERS, seed=7)


@pytest.fixture(scope="module")
def tables(province: tuple[Path, GenerationSummary]) -> dict[str, pd.DataFrame]:
    out, _ = province
    return {name: pd.read_csv(out / f"{name}.csv", dtype={"course_id": str}) for name in CONTRACT_COLUMNS}


@pytest.fixture(scope="module")
def truth(province: tuple[Path, GenerationSummary]) -> Truth:
    return load_truth(province[0])


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    generate(tmp_path / "a", n_teachers=300, seed=1)
    generate(tmp_path / "b", n_teachers=300, seed=1)
    generate(tmp_path / "c", n_teachers=300, seed=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["training_records.csv"] != _digest(tmp_path / "c")["training_records.csv"]


def test_every_contract_table_is_written_with_its_columns(
    province: tuple[Path, GenerationSummary], tables: dict[str, pd.DataFrame]
) -> None:
    _, summary = province
    for name, columns in CONTRACT_COLUMNS.items():
        assert set(columns) <= set(tables[name].columns), name
        assert summary.rows[name] == len(tables[name]), name
    assert len(tables["teachers"]) == N_TEACHERS
    assert tables["teachers"]["teacher_id"].is_unique


def test_files_are_utf8_with_iso_dates_and_no_personal_names(
    province: tuple[Path, GenerationSummary],
) -> None:
    out, _ = province
    records = (out / "training_records.csv").read_text(encoding="utf-8")
    dates = re.findall(r"\d{4}-\d{2}-\d{2}", records)
    assert dates and all(
        re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", d) for d in dates[:1000]
    )
    teachers = pd.read_csv(out / "teachers.csv")
    assert not {"name", "id_number", "姓名", "身份证号"} & set(teachers.columns)
    assert teachers["teacher_id"].str.fullmatch(r"T\d{7}").all()


def test_teachers_look_like_a_province(tables: dict[str, pd.DataFrame]) -> None:
    teachers = tables["teachers"]
    assert (teachers["province"] == "江西省").all()
    stage_share = teachers["stage"].value_counts(normalize=True)
    expected = {
        "kindergarten": 0.20,
        "primary": 0.41,
        "junior": 0.25,
        "senior": 0.14,
    }  # even for a small province
    assert stage_share.round(2).to_dict() == expected
    assert (teachers.loc[teachers["stage"] == "kindergarten", "subject"] == "学前教育").all()
    assert 0.3 < (teachers["school_type"] == "rural").mean() < 0.6
    roles = teachers["roles"].fillna("").str.split(";").explode()
    assert {"head_teacher", "principal"} <= set(roles)
    # titles rise with years: senior titles belong to experienced teachers
    assert (
        teachers.loc[teachers["title"] == "senior", "years_teaching"].median()
        > teachers["years_teaching"].median()
    )
    assert teachers.groupby("school_id")["county"].nunique().max() == 1


def test_catalogue_has_600_courses_half_untagged_with_several_ethics_courses(
    tables: dict[str, pd.DataFrame],
) -> None:
    courses = tables["courses"]
    assert len(courses) >= 600
    assert courses["course_id"].is_unique
    assert 0.4 < courses["competencies"].isna().mean() < 0.6
    assert (courses["mandatory_topic"] == "师德师风").sum() >= 5
    assert courses["level"].between(1, 3).all()
    assert courses["hours"].between(2, 40).all()
    assert (~courses["active"]).any()
    codes = set(load_taxonomy()["code"])
    tagged = courses["competencies"].dropna().str.split(";").explode()
    assert set(tagged) <= codes
    assert courses["title"].nunique() > 0.8 * len(courses)


def test_prerequisites_point_to_lower_level_courses(tables: dict[str, pd.DataFrame]) -> None:
    courses = tables["courses"].set_index("course_id")
    dependants = courses[courses["prerequisites"].notna()]
    assert len(dependants) > 0
    assert (
        courses.loc[dependants["prerequisites"], "level"].to_numpy() < dependants["level"].to_numpy()
    ).all()


def test_references_resolve(tables: dict[str, pd.DataFrame]) -> None:
    teacher_ids = set(tables["teachers"]["teacher_id"])
    records = tables["training_records"]
    assert set(records["teacher_id"]) <= teacher_ids
    assert set(records["course_id"].dropna()) <= set(tables["courses"]["course_id"])
    assert set(tables["responses"]["teacher_id"]) <= teacher_ids
    assert set(tables["responses"]["item_id"]) <= set(tables["items"]["item_id"])
    assert records["record_id"].is_unique


def test_records_hold_all_four_statuses_and_enrolments_only_in_the_latest_year(
    tables: dict[str, pd.DataFrame],
) -> None:
    records = tables["training_records"]
    assert set(records["status"]) == {"enrolled", "completed", "dropped", "no_show"}
    years = records["start_date"].str[:4].astype(int)
    assert years.nunique() == 5
    assert (years[records["status"] == "enrolled"] == years.max()).all()
    completed = records[records["status"] == "completed"]
    assert completed["score"].between(0, 100).all() and completed["satisfaction"].between(1, 5).all()
    assert (records.loc[records["status"] == "no_show", "hours"] == 0).all()
    no_course = records["course_id"].isna()
    assert records.loc[no_course, "project_id"].notna().all()


def test_a_quarter_of_teachers_are_never_assessed_and_some_are_assessed_twice_on_the_same_form(
    tables: dict[str, pd.DataFrame],
) -> None:
    responses = tables["responses"]
    assessed = set(responses["teacher_id"])
    share_never = 1 - len(assessed) / len(tables["teachers"])
    assert 0.18 < share_never < 0.38
    assert set(tables["competency_scores"]["teacher_id"]) <= assessed
    per_sitting = responses.groupby(["teacher_id", "taken_at"]).size()
    assert per_sitting.min() >= 60 and per_sitting.max() <= 100
    sittings = responses.groupby("teacher_id")["taken_at"].nunique()
    assert set(sittings) == {1, 2} and 0.3 < (sittings == 2).mean() < 0.7
    twice = responses[responses["teacher_id"].isin(sittings.index[sittings == 2])]
    items_by_sitting = twice.groupby(["teacher_id", "taken_at"])["item_id"].apply(frozenset)
    assert (items_by_sitting.groupby(level=0).nunique() == 1).all()  # the same form at both waves


def test_responses_are_informative(tables: dict[str, pd.DataFrame], truth: Truth) -> None:
    r = tables["responses"].merge(tables["items"], on="item_id")
    r["p"] = r["score"] / r["max_score"]
    assert (r["score"] <= r["max_score"]).all()
    assert (tables["items"]["max_score"] > 1).any()
    r["total"] = r.groupby("teacher_id")["p"].transform("mean")
    item_total = r.groupby("item_id")[["p", "total"]].corr().xs("p", level=1)["total"]
    assert item_total.median() > 0.2
    overall = truth.latent.groupby("teacher_id")["theta"].mean()
    totals = r.groupby("teacher_id")["p"].mean()
    assert np.corrcoef(totals, overall.loc[totals.index])[0, 1] > 0.5


def test_self_ratings_are_inflated_and_noisier_than_observations(
    tables: dict[str, pd.DataFrame], truth: Truth
) -> None:
    s = tables["competency_scores"].merge(truth.latent, on=["teacher_id", "competency"])
    s["error"] = s["score"] - s["score_0_100"]
    by_source = s.groupby("source")["error"].agg(["mean", "std"])
    assert set(by_source.index) == {"self", "observation", "test"}
    assert 5 < by_source.loc["self", "mean"] < 11
    assert by_source.loc["self", "std"] > 1.5 * by_source.loc["observation", "std"]


def test_truth_agrees_with_the_files(tables: dict[str, pd.DataFrame], truth: Truth) -> None:
    codes = list(load_taxonomy()["code"])
    assert set(truth.latent["teacher_id"]) == set(tables["teachers"]["teacher_id"])
    assert len(truth.latent) == N_TEACHERS * len(codes)
    assert list(truth.courses["course_id"]) == list(tables["courses"]["course_id"])
    tagged = tables["courses"].set_index("course_id")["competencies"].dropna().str.split(";")
    true_codes = truth.courses.set_index("course_id")["competencies"]
    assert all(list(true_codes[cid]) == codes_ for cid, codes_ in tagged.items())
    assert truth.courses["competencies"].map(len).between(1, 3).all()
    assert truth.meta["n_teachers"] == N_TEACHERS and truth.utility is not None


def test_true_utility_is_zero_for_completed_or_closed_courses(
    tables: dict[str, pd.DataFrame], truth: Truth
) -> None:
    teachers = tables["teachers"].head(150)
    records = tables["training_records"]
    u = true_utility(
        truth.latent, truth.courses, teachers, records[records["teacher_id"].isin(teachers["teacher_id"])]
    )
    assert u.shape == (len(teachers), len(truth.courses))
    assert (u >= 0).all() and (u > 0).mean() > 0.3
    cpos = pd.Series(np.arange(len(truth.courses)), index=truth.courses["course_id"])
    tpos = pd.Series(np.arange(len(teachers)), index=teachers["teacher_id"])
    done = records[(records["status"] == "completed") & records["teacher_id"].isin(tpos.index)].dropna(
        subset=["course_id"]
    )
    assert (u[tpos[done["teacher_id"]].to_numpy(), cpos[done["course_id"]].to_numpy()] == 0).all()
    closed = truth.courses["stages"].map(lambda s: len(s) > 0 and "kindergarten" not in s).to_numpy()
    assert (u[(teachers["stage"] == "kindergarten").to_numpy()][:, closed] == 0).all()
    assert (u[:, ~truth.courses["active"].to_numpy()] == 0).all()


def test_utility_file_is_each_teachers_best_true_utilities(
    tables: dict[str, pd.DataFrame], truth: Truth
) -> None:
    assert truth.utility is not None
    teachers = tables["teachers"].head(20)
    records = tables["training_records"]
    u = true_utility(
        truth.latent, truth.courses, teachers, records[records["teacher_id"].isin(teachers["teacher_id"])]
    )
    stored = truth.utility[truth.utility["teacher_id"].isin(teachers["teacher_id"])]
    best = stored.groupby("teacher_id")["utility"].max()
    expected = pd.Series(u.max(axis=1), index=teachers["teacher_id"])
    np.testing.assert_allclose(best.to_numpy(), expected.loc[best.index].to_numpy(), rtol=1e-5)


def test_completed_courses_were_worth_more_than_dropped_ones(
    tables: dict[str, pd.DataFrame], truth: Truth
) -> None:
    records = tables["training_records"].dropna(subset=["course_id"])
    u = true_utility(truth.latent, truth.courses, tables["teachers"], records.iloc[:0])
    tpos = pd.Series(np.arange(N_TEACHERS), index=tables["teachers"]["teacher_id"])
    cpos = pd.Series(np.arange(len(truth.courses)), index=truth.courses["course_id"])
    value = u[tpos[records["teacher_id"]].to_numpy(), cpos[records["course_id"]].to_numpy()]
    by_status = pd.Series(value).groupby(records["status"].to_numpy()).mean()
    assert by_status["completed"] > by_status["dropped"]
    chosen_mean = value.mean()
    assert chosen_mean > u[u > 0].mean()  # teachers pick useful courses more often than chance
    popularity = records.groupby("course_id").size()
    assert popularity.max() > 3 * popularity.median()


def test_projects_table_and_project_records_are_written(province: tuple[Path, GenerationSummary]) -> None:
    out, summary = province
    projects = pd.read_csv(out / "projects.csv")
    assert len(projects) == summary.rows["projects"] and projects["project_id"].is_unique
    records = pd.read_csv(out / "training_records.csv")
    assert records["project_id"].notna().any()


def test_every_mandatory_topic_has_an_online_course_open_to_all(tables: dict[str, pd.DataFrame]) -> None:
    courses = tables["courses"]
    open_online = courses[(courses["format"] == "online") & courses["stages"].isna() & courses["active"]]
    topics = set(load_mandatory_topics()["topic"])
    restricted = {"幼小衔接", "少先队工作", "预防校园欺凌"}  # these concern some stages only
    assert topics - restricted <= set(open_online["mandatory_topic"].dropna())
    assert topics <= set(courses["mandatory_topic"].dropna())


def test_taxonomy_has_the_2_0_micro_abilities_and_every_domain() -> None:
    tax = load_taxonomy()
    assert len(tax) >= 40 and tax["code"].is_unique
    micro = tax[tax["environment"].notna()]
    expected = (
        [f"A{i}" for i in range(1, 14)] + [f"B{i}" for i in range(1, 11)] + [f"C{i}" for i in range(1, 8)]
    )
    assert list(micro["code"]) == expected
    assert set(micro["environment"]) == {"多媒体教学环境", "混合学习环境", "智慧学习环境"}
    assert set(micro["dimension"]) == {"学情分析", "教学设计", "学法指导", "学业评价"}
    assert set(tax["domain"]) == {
        "师德与理念", "专业知识", "教学设计与实施", "学生评价", "班级管理与育人", "信息技术应用", "教研与专业发展", "管理与领导",
    }  # fmt: skip
    assert tax["name"].notna().all() and tax["description"].notna().all() and tax["description"].is_unique
    assert tax.loc[tax["environment"].isna(), "dimension"].isna().all()


def test_truth_meta_documents_every_truth_file_and_the_scale_of_the_latent_competencies(
    province: tuple[Path, GenerationSummary], truth: Truth
) -> None:
    files = truth.meta["files"]
    written = {p.name for p in (province[0] / "_truth").iterdir()} - {"meta.json"}
    assert written == set(files) >= {"latent.parquet", "courses.parquet", "items.parquet", "utility.parquet"}
    assert "theta" in files["latent.parquet"] and "score_0_100" in files["latent.parquet"]
    centre, scale = truth.meta["display"]["centre"], truth.meta["display"]["scale"]
    expected = np.clip(centre + scale * truth.latent["theta"], 0, 100)
    np.testing.assert_allclose(truth.latent["score_0_100"], expected, rtol=1e-5)
    assert truth.meta["utility_teachers"] == N_TEACHERS


def test_a_large_province_gets_true_utilities_for_a_random_sample_of_teachers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import data.synthetic.province

    monkeypatch.setattr(data.synthetic.province, "UTILITY_CELLS_MAX", 600 * 40)
    summary = generate(tmp_path, n_teachers=200, seed=4, n_courses=600)
    truth = load_truth(tmp_path)
    assert summary.utility_teachers == truth.meta["utility_teachers"] == 40
    sample = [f"T{i:07d}" for i in range(1, 41)]
    assert set(truth.utility["teacher_id"]) <= set(sample)
    teachers = pd.read_csv(tmp_path / "teachers.csv")
    assert (
        teachers.head(40)["stage"].nunique() >= 3
    )  # ids are numbered in random order: a spread, not one school
    records = pd.read_csv(tmp_path / "training_records.csv", dtype={"course_id": str})
    u = true_utility(truth.latent, truth.courses, teachers.head(40), records)
    best = truth.utility.groupby("teacher_id")["utility"].max()
    np.testing.assert_allclose(best.to_numpy(), u.max(axis=1)[best.index.str[1:].astype(int) - 1], rtol=1e-5)


def test_course_titles_do_not_stutter(tables: dict[str, pd.DataFrame]) -> None:
    titles = tables["courses"]["title"]
    assert not titles.str.contains("实务实务|专题专题|研修专题研修").any()


def test_a_province_of_one_unassessed_teacher_is_still_written(tmp_path: Path) -> None:
    summary = generate(tmp_path, n_teachers=1, seed=9)  # seed 9: the one teacher is never assessed
    assert summary.rows["teachers"] == 1 and summary.rows["responses"] == 0
    assert list(pd.read_csv(tmp_path / "responses.csv").columns) == CONTRACT_COLUMNS["responses"]


def test_the_truth_reader_takes_the_province_folder_or_its_truth_folder_and_names_what_is_missing(
    province: tuple[Path, GenerationSummary], tmp_path: Path
) -> None:
    out, _ = province
    by_province, by_truth = load_truth(out), load_truth(out / "_truth")
    pd.testing.assert_frame_equal(by_province.utility, by_truth.utility)
    assert by_province.meta == by_truth.meta and by_truth.items is not None
    (tmp_path / "utility.parquet").write_bytes((out / "_truth" / "utility.parquet").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"latent\.parquet, courses\.parquet"):
        load_truth(tmp_path)


# --- worlds, waves and effects ---------------------------------------------------------------------------


def _wave_pairs(truth: Truth) -> pd.DataFrame:
    """Teacher × competency rows of the teachers assessed at both waves: theta and theta_day at each."""
    assert truth.waves is not None
    wide = truth.waves.pivot_table(
        index=["teacher_id", "competency"], columns="wave", values=["theta", "theta_day"]
    ).dropna()
    wide.columns = [f"{name}{wave}" for name, wave in wide.columns]
    days = truth.waves.drop_duplicates(["teacher_id", "wave"]).pivot(
        index="teacher_id", columns="wave", values="taken_at"
    )
    out = wide.reset_index()
    return out.assign(
        day1=pd.to_datetime(out["teacher_id"].map(days[1])),
        day2=pd.to_datetime(out["teacher_id"].map(days[2])),
    )


def test_the_worlds_disagree_on_what_helps_a_teacher(tables: dict[str, pd.DataFrame], truth: Truth) -> None:
    teachers = tables["teachers"].head(60)
    records = tables["training_records"]
    records = records[records["teacher_id"].isin(teachers["teacher_id"])]
    utility = {
        world: true_utility(truth.latent, truth.courses, teachers, records, world)
        for world in ("need", "quality", "popularity", "mixed")
    }

    def mean_rank_correlation(a: str, b: str) -> float:
        rows = [
            pd.Series(ua[ua > 0]).rank().corr(pd.Series(ub[ua > 0]).rank())
            for ua, ub in zip(utility[a], utility[b], strict=True)
        ]
        return float(np.nanmean(rows))

    assert mean_rank_correlation("need", "quality") < 0.35
    assert mean_rank_correlation("need", "popularity") < 0.35
    assert mean_rank_correlation("mixed", "need") > 0.6  # the mix keeps the need


def test_a_world_is_deterministic_under_its_seed_and_changes_outcomes_not_offers_or_choices(
    tmp_path: Path,
) -> None:
    generate(tmp_path / "a", n_teachers=150, seed=3, world="need")
    generate(tmp_path / "b", n_teachers=150, seed=3, world="need")
    summary = generate(tmp_path / "c", n_teachers=150, seed=3, world="quality")
    a, c = _digest(tmp_path / "a"), _digest(tmp_path / "c")
    assert a == _digest(tmp_path / "b")
    assert summary.world == "quality" == load_truth(tmp_path / "c").meta["world"]
    for same in ("teachers.csv", "courses.csv", "items.csv", "projects.csv"):
        assert a[same] == c[same], same
    for differs in ("training_records.csv", "responses.csv", "_truth/utility.parquet"):
        assert a[differs] != c[differs], differs
    # enrolments follow what teachers believe, not what helps them: nearly the same in both worlds
    enrolled = [
        pd.read_csv(tmp_path / x / "training_records.csv", dtype={"course_id": str})[
            "course_id"
        ].value_counts()
        for x in ("a", "c")
    ]
    both = pd.concat(enrolled, axis=1).fillna(0)
    assert both.iloc[:, 0].corr(both.iloc[:, 1]) > 0.9
    with pytest.raises(ValueError, match="world"):
        generate(tmp_path / "d", n_teachers=10, world="fame")  # type: ignore[arg-type]


def test_wave_two_minus_wave_one_is_the_effects_completed_between_plus_the_trend(truth: Truth) -> None:
    pairs = _wave_pairs(truth)
    assert truth.record_effects is not None and len(pairs) > 0
    effects = truth.record_effects.assign(end_date=pd.to_datetime(truth.record_effects["end_date"])).merge(
        pairs[["teacher_id", "competency", "day2"]], on=["teacher_id", "competency"]
    )
    moved = (
        effects[effects["end_date"] <= effects["day2"]].groupby(["teacher_id", "competency"])["effect"].sum()
    )
    years = (pairs["day2"] - pairs["day1"]).dt.days / 365.25
    slope = pairs["competency"].map(truth.meta["growth"]["trend_per_year"])
    key = pd.MultiIndex.from_frame(pairs[["teacher_id", "competency"]])
    expected = moved.reindex(key).fillna(0.0).to_numpy() + (years * slope).to_numpy()
    np.testing.assert_allclose(pairs["theta2"] - pairs["theta1"], expected, atol=2e-4)
    assert (moved > 0).mean() > 0.5  # training moved most of what it touched


def test_effects_are_heterogeneous_larger_where_the_gap_was_larger(truth: Truth) -> None:
    pairs = _wave_pairs(truth)
    assert truth.record_effects is not None and truth.course_effects is not None
    e = truth.record_effects[truth.record_effects["between_waves"]].merge(
        pairs, on=["teacher_id", "competency"]
    )
    assert e["effect"].corr(e["theta1"]) < -0.2
    per_course = truth.course_effects.dropna(subset=["effect_points_between"])
    assert per_course["effect_points"].std() > 1.0 and (per_course["effect_points"] >= 0).all()
    assert truth.project_effects is not None and truth.project_effects["effect_points"].mean() > 0


def test_naive_pre_post_of_a_course_is_biased_upward_because_of_selection_trend_and_other_training(
    truth: Truth,
) -> None:
    pairs = _wave_pairs(truth)
    assert truth.record_effects is not None
    takers = truth.record_effects[
        truth.record_effects["between_waves"] & truth.record_effects["course_id"].notna()
    ]
    m = takers.merge(pairs, on=["teacher_id", "competency"])
    naive = 15.0 * (m["theta_day2"] - m["theta_day1"])
    per_course = (
        pd.DataFrame({"naive": naive, "true": m["effect_points"]})
        .groupby([m["course_id"], m["competency"]])
        .mean()
    )
    assert (per_course["naive"] - per_course["true"]).mean() > 1.0
    # teachers chose on the need their first test showed them: the day's error regresses to the mean
    state = m["theta_day1"] - m["theta1"]
    everyone = pairs["theta_day1"] - pairs["theta1"]
    assert state.mean() < everyone.mean() - 0.005
