"""Reference data: policies validate, the Jiangxi 2022 table is the seed's, topics and taxonomy are complete."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from data.policy import POLICY_DIR, PolicyError, available_policies, load_policy
from data.reference import (
    load_counties,
    load_jiangxi_projects,
    load_mandatory_topics,
    load_taxonomy,
)
from data.schema import FORMAT, ROLE, STAGE, TITLE

SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"
EXPECTED_PROJECT_COUNT = 78  # rows of 附件1 in 赣教师字〔2022〕14号, counted by hand
SEED_003_TOPICS = [
    "思想政治",
    "四史",
    "师德师风",
    "心理健康",
    "信息技术",
    "国家安全",
    "法治教育",
    "生态教育",
    "国家通用语言文字",
    "幼小衔接",
    "少先队工作",
    "预防校园欺凌",
]


def _seed_004() -> str:
    files = sorted(SEEDS.glob("004_*.txt"))
    if not files:
        pytest.skip("../shared/seeds/004_*.txt is not present")
    return files[0].read_text(encoding="utf-8")


def _seed_project_rows() -> list[list[str]]:
    """The project table of seed 004 read straight from the text: one tab-separated line per project."""
    lines = [line for line in _seed_004().splitlines() if "\t" in line and not line.startswith("项目名称")]
    # The PDF extraction wraps cells with stray blanks; the CSV keeps the text without them.
    return [[re.sub(r"\s+", "", cell) for cell in line.split("\t")] for line in lines]


def _write_policy(tmp_path: Path, **changes: object) -> Path:
    document = yaml.safe_load((POLICY_DIR / "default.yaml").read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None and key.startswith("drop_"):
            del document[key.removeprefix("drop_")]
        else:
            document[key] = value
    path = tmp_path / "province.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


# --- policies -------------------------------------------------------------------------------------------


def test_the_three_builtin_policies_are_available() -> None:
    assert available_policies() == ["default", "henan_2021", "jiangxi_2022"]


@pytest.mark.parametrize("name", ["default", "henan_2021", "jiangxi_2022"])
def test_builtin_policy_loads_and_names_its_source(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert policy.title_zh and policy.source


def test_default_policy_is_the_design_default() -> None:
    policy = load_policy("default")
    assert policy.menu_hours_target == 50
    assert policy.menu_hours_max == 60
    assert [(t.topic, t.recency_months) for t in policy.mandatory_topics] == [("师德师风", 12)]
    assert policy.practical_share_min == 0.5
    assert policy.exclude_completed and policy.require_open_to_teacher
    assert set(policy.allowed_formats) == set(FORMAT.values)
    assert policy.budget_yuan is None
    assert policy.max_courses_per_competency == 3
    assert (policy.cycle_hours, policy.cycle_years, policy.it_hours, policy.it_years) == (360, 5, 50, 3)
    assert policy.bar_years == 3
    assert set(policy.bar_statuses) == {"no_show", "dropped", "unfinished"}
    assert (policy.offline_yuan_per_day, policy.online_yuan_per_hour) == (400, 3)
    assert policy.class_size == 50


def test_henan_policy_carries_the_rules_of_seed_003() -> None:
    policy = load_policy("henan_2021")
    assert [t.topic for t in policy.mandatory_topics] == SEED_003_TOPICS
    assert all(t.formats == ("online",) for t in policy.mandatory_topics)  # 异步在线培训
    assert policy.practical_share_min == 0.5
    assert (policy.offline_yuan_per_day, policy.online_yuan_per_hour) == (400, 3)
    assert policy.bar_years == 3
    backbone = next(d for d in policy.durations if d.project == "省级骨干教师培育")
    assert (backbone.days, backbone.online_hours) == (15, 60)


def test_henan_stage_specific_topics_only_bind_their_stages() -> None:
    policy = load_policy("henan_2021")
    kindergarten = {t.topic for t in policy.mandatory_topics_for("kindergarten")}
    senior = {t.topic for t in policy.mandatory_topics_for("senior")}
    assert "幼小衔接" in kindergarten and "少先队工作" not in kindergarten
    assert "幼小衔接" not in senior and "预防校园欺凌" in senior


def test_jiangxi_policy_quotes_its_document_number() -> None:
    policy = load_policy("jiangxi_2022")
    assert "赣教师字〔2022〕14号" in policy.source
    assert "师德师风" in {t.topic for t in policy.mandatory_topics}


def test_every_policy_topic_is_a_known_mandatory_topic() -> None:
    known = set(load_mandatory_topics()["topic"])
    for name in available_policies():
        assert {t.topic for t in load_policy(name).mandatory_topics} <= known, name


def test_cost_follows_the_policy_rates() -> None:
    # seed 003: 15 days at 400 元/人/天 + 60 学时 at 3 元/学时
    assert load_policy("henan_2021").cost_per_trainee_yuan(days=15, online_hours=60) == 6180


def test_policy_file_loads_by_path(tmp_path: Path) -> None:
    path = _write_policy(tmp_path, name="province", class_size=40)
    assert load_policy(path).class_size == 40
    assert load_policy(str(path)).name == "province"


def test_misspelt_key_names_the_file_the_key_and_the_likely_fix(tmp_path: Path) -> None:
    path = _write_policy(tmp_path, menu_hours_targt=50)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    message = str(err.value)
    assert str(path) in message and "menu_hours_targt" in message and "menu_hours_target" in message


def test_out_of_range_value_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = _write_policy(tmp_path, practical_share_min=1.5)
    with pytest.raises(PolicyError, match="practical_share_min") as err:
        load_policy(path)
    assert str(path) in str(err.value)


def test_wrong_type_is_rejected_even_when_yaml_reads_it(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="exclude_completed"):
        load_policy(_write_policy(tmp_path, exclude_completed="yes"))
    with pytest.raises(PolicyError, match="class_size"):
        load_policy(_write_policy(tmp_path, class_size=True))


def test_bad_mandatory_topic_names_the_item_and_field(tmp_path: Path) -> None:
    topics = [
        {"topic": "师德师风", "recency_months": 12},
        {"topic": "幼小衔接", "recency_months": 12, "stages": ["nursery"]},
    ]
    with pytest.raises(PolicyError, match=re.escape("mandatory_topics[2].stages")):
        load_policy(_write_policy(tmp_path, mandatory_topics=topics))


def test_missing_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="bar_years"):
        load_policy(_write_policy(tmp_path, drop_bar_years=None))


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="broken.yaml"):
        load_policy(path)


def test_unknown_policy_name_lists_the_builtin_ones() -> None:
    with pytest.raises(PolicyError, match="jiangxi_2022"):
        load_policy("shanxi_2024")


# --- mandatory topics -----------------------------------------------------------------------------------


def test_mandatory_topics_are_the_list_of_seed_003() -> None:
    topics = load_mandatory_topics()
    assert list(topics.columns) == ["topic", "description", "source"]
    assert topics["topic"].tolist() == SEED_003_TOPICS
    assert topics["description"].notna().all() and topics["source"].notna().all()


# --- Jiangxi 2022 projects ------------------------------------------------------------------------------


def test_jiangxi_table_has_every_project_of_the_seed() -> None:
    projects = load_jiangxi_projects()
    assert len(projects) == EXPECTED_PROJECT_COUNT
    assert projects["project_id"].tolist() == [
        f"JX2022-{i:03d}" for i in range(1, EXPECTED_PROJECT_COUNT + 1)
    ]


def test_jiangxi_table_count_matches_an_independent_read_of_the_seed() -> None:
    assert len(_seed_project_rows()) == len(load_jiangxi_projects()) == EXPECTED_PROJECT_COUNT


def test_jiangxi_rows_keep_the_seed_text_in_order() -> None:
    seed = _seed_project_rows()
    projects = load_jiangxi_projects()
    for row, (name, target, fmt, duration, quota, scope, provider) in zip(
        projects.itertuples(), seed, strict=True
    ):
        assert (row.name, row.target_text, row.format_text, row.duration_text) == (
            name,
            target,
            fmt,
            duration,
        )
        assert (row.quota, row.scope_text) == (int(quota), scope)
        assert (row.provider if isinstance(row.provider, str) else "") == provider


@pytest.mark.parametrize(
    ("project_id", "name", "quota", "days", "online_hours", "fmt"),
    [
        ("JX2022-001", "乡村中小学优秀教师高级研修", 360, 7, 50, "blended"),
        ("JX2022-011", "乡村小学思政理论课骨干教师研修", 1000, 5, 0, "offline"),
        ("JX2022-012", "乡村中小学紧缺薄弱学科骨干教师培训", 1000, 8, 50, "blended"),
        ("JX2022-015", "乡村幼儿园骨干教师培训", 300, 8, 0, "offline"),
        ("JX2022-022", "中小学整校结对帮扶(1)", 280, 25, 50, "blended"),
        ("JX2022-050", "教师培训评价监测管理团队研修", 60, 6, 0, "offline"),
        ("JX2022-064", "中小学(幼儿园)管理团队信息技术校本应用能力提升培训", 2334, 2, 50, "blended"),
        ("JX2022-069", "中小学幼儿园骨干教师信息技术应用能力提升培训(1)", 12000, 0, 50, "online"),
        ("JX2022-076", "市县提升工程2.0管理者高级研修", 100, 4, 0, "offline"),
    ],
)
def test_jiangxi_rows_hold_the_seed_figures(
    project_id: str, name: str, quota: int, days: float, online_hours: float, fmt: str
) -> None:
    row = load_jiangxi_projects().set_index("project_id").loc[project_id]
    assert (row["name"], row["quota"], row["days"], row["online_hours"], row["format"]) == (
        name,
        quota,
        days,
        online_hours,
        fmt,
    )


def test_jiangxi_targets_are_parsed_into_contract_values() -> None:
    projects = load_jiangxi_projects().set_index("project_id")
    first = projects.loc["JX2022-001"]
    assert first["target_stages"] == ["primary", "junior", "senior"]
    assert first["target_subjects"] == ["语文", "数学", "英语"]
    assert first["target_school_types"] == ["rural"]
    assert projects.loc["JX2022-003", "excluded_subjects"] == ["语文", "数学", "英语"]  # 除语数英外
    assert projects.loc["JX2022-006", "target_roles"] == ["head_teacher"]
    principal = projects.loc["JX2022-057"]  # 任职 5 年(含)具有副高级职称以上
    assert (principal["min_title"], principal["min_years"], principal["target_roles"]) == (
        "senior",
        5,
        ["principal"],
    )


def test_jiangxi_table_obeys_the_projects_contract() -> None:
    projects = load_jiangxi_projects()
    for column in ("target_stages", "target_roles", "target_subjects", "scope_counties"):
        assert projects[column].map(lambda cell: isinstance(cell, list)).all(), column
    assert projects["target_stages"].map(lambda cell: set(cell) <= set(STAGE.values)).all()
    assert projects["target_roles"].map(lambda cell: set(cell) <= set(ROLE.values)).all()
    assert projects["format"].isin(FORMAT.values).all()
    assert projects["min_title"].dropna().isin(TITLE.values).all()
    assert (projects["class_size"] == 50).all()
    assert projects["quota"].gt(0).all()
    online_only = projects["format"] == "online"
    assert projects.loc[online_only, "days"].eq(0).all()
    assert projects.loc[~online_only, "days"].gt(0).all()
    assert projects.loc[projects["format"] == "offline", "online_hours"].eq(0).all()


def test_every_scope_county_is_a_known_jiangxi_county() -> None:
    known = set(load_counties()["county"])
    scopes = load_jiangxi_projects()["scope_counties"].explode().dropna()
    assert set(scopes) <= known


def test_scope_labels_expand_to_the_annex_2_county_lists() -> None:
    counties = load_counties()
    projects = load_jiangxi_projects()
    by_category = counties.groupby("category")["county"].apply(list)
    for label, category in (("项目县", "project"), ("振兴帮扶县", "revitalisation_support")):
        rows = projects[projects["scope_label"] == label]
        assert len(rows) > 0
        assert rows["scope_counties"].map(lambda cell, c=category: cell == by_category[c]).all()
    assert projects.loc[projects["scope_label"] == "全省", "scope_counties"].map(len).eq(0).all()


def test_project_loader_returns_independent_copies() -> None:
    first = load_jiangxi_projects()
    first.loc[0, "name"] = "changed"
    first.loc[0, "target_stages"].append("changed")
    again = load_jiangxi_projects()
    assert again.loc[0, "name"] == "乡村中小学优秀教师高级研修"
    assert "changed" not in again.loc[0, "target_stages"]


# --- counties -------------------------------------------------------------------------------------------


def test_counties_hold_the_three_lists_of_annex_2() -> None:
    counties = load_counties()
    annex = counties[counties["listed_in"] == "附件2"]
    assert annex["category"].value_counts().to_dict() == {
        "project": 37,
        "revitalisation_support": 15,
        "demonstration": 4,
    }
    assert counties["county"].is_unique
    assert counties["city"].str.endswith("市").all()


def test_counties_match_an_independent_read_of_annex_2() -> None:
    annex = _seed_004().split("2022 年“国培计划”项目县名单")[1]
    names = [
        name.strip()
        for line in annex.splitlines()
        if line.strip() and not re.match(r"[一二三]、", line.strip())
        for name in line.split("：")[-1].split("、")
    ]
    counties = load_counties()
    assert sorted(names) == sorted(counties.loc[counties["listed_in"] == "附件2", "county"])


# --- taxonomy -------------------------------------------------------------------------------------------


def test_taxonomy_covers_the_design_domains_with_at_least_40_codes() -> None:
    taxonomy = load_taxonomy()
    assert list(taxonomy.columns[:6]) == ["code", "name", "domain", "description", "environment", "dimension"]
    assert len(taxonomy) >= 40 and taxonomy["code"].is_unique
    assert taxonomy[["code", "name", "domain", "description"]].notna().all().all()
    assert {
        "师德与理念",
        "专业知识",
        "教学设计与实施",
        "学生评价",
        "班级管理与育人",
        "信息技术应用",
        "教研与专业发展",
        "管理与领导",
    } <= set(taxonomy["domain"])


def test_taxonomy_has_the_30_micro_abilities_over_3_environments_by_4_dimensions() -> None:
    taxonomy = load_taxonomy()
    micro = taxonomy[taxonomy["environment"].notna() & taxonomy["dimension"].notna()]
    assert len(micro) == 30
    assert micro["environment"].nunique() == 3 and micro["dimension"].nunique() == 4
    assert len(micro.groupby(["environment", "dimension"])) == 12
    # a code either carries both coordinates or neither
    assert (taxonomy["environment"].isna() == taxonomy["dimension"].isna()).all()


def test_taxonomy_loader_returns_a_copy() -> None:
    taxonomy = load_taxonomy()
    taxonomy.loc[0, "name"] = "changed"
    assert load_taxonomy().loc[0, "name"] != "changed"


def test_reference_tables_are_plain_dataframes() -> None:
    for frame in (load_taxonomy(), load_mandatory_topics(), load_jiangxi_projects(), load_counties()):
        assert isinstance(frame, pd.DataFrame) and len(frame) > 0
