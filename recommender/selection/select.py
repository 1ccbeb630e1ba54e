"""The selection: a project's roster, classes, cost and notes (`select_trainees`), from what a workspace holds
(`SelectionContext`), each selected teacher with the reason a clerk reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import pandas as pd

from data.policy import Policy
from data.workspace import Workspace
from features.cohort import CohortPortrait, cohort_portrait
from features.history import positions
from models.encoder import Encoder
from recommender.artifacts import Artifacts, load, paired
from recommender.config import Settings
from recommender.selection.classes import form_classes, random_spread, spread
from recommender.selection.content import ProjectContent, infer_contents
from recommender.selection.eligibility import REPEAT_YEARS, RULES, eligibility
from recommender.selection.project import Project, SelectionError, project_table
from recommender.selection.ranking import fill_quota, need_scores

REASON_COMPETENCIES: Final = 2
# the portrait columns selection reads
COMPETENCY_COLUMNS: Final = ("teacher_id", "competency", "estimate", "is_prior", "gap")


@dataclass(frozen=True)
class Cost:
    """经费 per the policy: 集中培训 ``offline_yuan_per_day`` per trainee-day, 网络研修 per trainee 学时."""

    days: float
    online_hours: float
    offline_yuan_per_trainee: float
    online_yuan_per_trainee: float
    trainees: int

    @property
    def per_trainee_yuan(self) -> float:
        return self.offline_yuan_per_trainee + self.online_yuan_per_trainee

    @property
    def total_yuan(self) -> float:
        return self.per_trainee_yuan * self.trainees


@dataclass(frozen=True)
class Selection:
    """A project's roster and classes.

    - ``roster``: the selected, best first: rank, teacher_id, county, school_id, school_type, stage, subject,
      title, years_teaching, need, rural_bonus, score, prior_share, class_no, reason.
    - ``ranked``: every eligible teacher with need, rural_bonus, score, rank and ``selected``.
    - ``excluded``: teacher_id, county, school_id, the failed rules (booleans) and ``reason``.
    - ``classes``: class_no, class_label, n_teachers, n_counties, counties, share_rural, mean_need,
      common_gaps, cost_yuan, visible (False where a restricted view may not show the class's figures).
    - ``class_portrait``: the cohort portrait by class_no.
    - ``allocations``: county, allocated, eligible, selected, unfilled (empty without allocations).
    """

    project: Project
    content: ProjectContent
    content_names: tuple[str, ...]
    asof: pd.Timestamp
    policy_name: str
    rural_priority_weight: float
    mix_counties: bool
    model_version: str
    n_considered: int
    roster: pd.DataFrame
    ranked: pd.DataFrame
    excluded: pd.DataFrame
    classes: pd.DataFrame
    class_portrait: CohortPortrait
    allocations: pd.DataFrame
    cost: Cost
    spread: float
    random_spread: float
    notes: tuple[str, ...] = field(default=())
    # competency code -> Chinese name, for the class portraits
    competency_names: Mapping[str, str] = field(default_factory=dict)
    # the notes (among ``notes``) on the project's seats: province-wide figures a restricted view leaves out
    seat_notes: tuple[str, ...] = field(default=())

    @property
    def n_eligible(self) -> int:
        return len(self.ranked)

    def exclusion_counts(self) -> pd.DataFrame:
        """rule, label, n_teachers failing it (a teacher may fail several), in the order of ``RULES``."""
        return pd.DataFrame(
            {
                "rule": list(RULES),
                "label": list(RULES.values()),
                "n_teachers": [int(self.excluded[r].sum()) for r in RULES],
            }
        )

    def hiding_classes(self, numbers: Iterable[int]) -> Selection:
        """The same selection with the figures of these classes withheld: their size stays, their portrait
        and aggregates (counties, rural share, need, common gaps) go."""
        hidden_numbers = set(numbers)
        if not hidden_numbers:
            return self
        classes = self.classes.copy()
        hidden = classes["class_no"].isin(hidden_numbers)
        classes.loc[hidden, "visible"] = False
        classes.loc[hidden, ["n_counties", "share_rural", "mean_need"]] = np.nan
        classes.loc[hidden, ["counties", "common_gaps"]] = ""

        def shown(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[~frame["class_no"].isin(hidden_numbers)].reset_index(drop=True)

        p = self.class_portrait
        portrait = replace(
            p, groups=shown(p.groups), competencies=shown(p.competencies), common_gaps=shown(p.common_gaps)
        )
        return replace(self, classes=classes, class_portrait=portrait)

    def within(self, column: str, value: str, teachers: pd.DataFrame) -> Selection:
        """The selection as a trainer of ``column == value`` (county, city, province) may see it: the roster,
        ranking, exclusions and allocations of their own teachers, ranked among themselves (1..n), the cost of
        their own trainees and only the notes on their own seats — a province-wide rank, count or total would
        tell them about teachers outside their area; class figures only for classes wholly inside the area (a
        class with outside members shows its size and how many are theirs)."""
        area = teachers[teachers[column].astype(str) == value]
        inside = pd.Index(area["teacher_id"].astype(str))

        def mine(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["teacher_id"].isin(inside)].reset_index(drop=True)

        ranked = mine(self.ranked).assign(rank=lambda r: np.arange(1, len(r) + 1))
        roster = mine(self.roster)
        roster["rank"] = roster["teacher_id"].map(ranked.set_index("teacher_id")["rank"]).astype(int)
        mine_per_class = roster.groupby("class_no").size()
        classes = self.classes[self.classes["class_no"].isin(mine_per_class.index)].copy()
        classes["n_mine"] = classes["class_no"].map(mine_per_class).astype(int)
        counties = set(area["county"].dropna().astype(str))
        allocations = self.allocations[self.allocations["county"].isin(counties)].reset_index(drop=True)
        kept = tuple(note for note in self.notes if note not in self.seat_notes)
        shortfall = tuple(_shortfall_notes(allocations))
        restricted = replace(
            self,
            roster=roster,
            ranked=ranked,
            excluded=mine(self.excluded),
            classes=classes.reset_index(drop=True),
            allocations=allocations,
            n_considered=len(inside),
            cost=replace(self.cost, trainees=len(roster)),
            notes=kept + shortfall,
            seat_notes=shortfall,
        )
        mixed = classes.loc[classes["n_mine"] < classes["n_teachers"], "class_no"]
        outside = set(self.classes["class_no"]) - set(classes["class_no"])
        return restricted.hiding_classes({*mixed, *outside})


@dataclass(frozen=True)
class SelectionContext:
    """What selection reads from a workspace, loaded once per bundle version (the service keeps one)."""

    version: str
    art: Artifacts
    teachers: pd.DataFrame
    competencies: pd.DataFrame
    records: pd.DataFrame
    projects: pd.DataFrame
    contents: Mapping[str, ProjectContent]
    target_level: float

    @classmethod
    def build(
        cls,
        art: Artifacts,
        teachers: pd.DataFrame,
        competencies: pd.DataFrame,
        records: pd.DataFrame,
        projects: pd.DataFrame,
        encoder: Encoder,
        target_level: float,
    ) -> SelectionContext:
        """From tables in memory (the service's engine holds them): portrait rows, long competencies with at
        least ``COMPETENCY_COLUMNS``, training records and the projects table; project contents are inferred
        here with ``encoder``."""
        return cls(
            version=art.version,
            art=art,
            teachers=teachers,
            competencies=competencies[list(COMPETENCY_COLUMNS)],
            records=records,
            projects=projects,
            contents=infer_contents(art, encoder, projects),
            target_level=target_level,
        )

    @classmethod
    def load(cls, ws: Workspace, config: Settings, encoder: Encoder | None = None) -> SelectionContext:
        """From the workspace's current bundle and portraits (`tdr select`)."""
        records = ws.read_table("training_records") if ws.has_table("training_records") else pd.DataFrame()
        ws, bundle = paired(ws)
        return cls.build(
            load(bundle),
            pd.read_parquet(ws.portraits_dir / "teachers.parquet"),
            pd.read_parquet(ws.portraits_dir / "competencies.parquet", columns=list(COMPETENCY_COLUMNS)),
            records,
            project_table(ws),
            encoder
            or Encoder(config.encoder_model, cache_dir=config.model_cache, backend=config.encoder_backend),
            config.target_level,
        )

    def project(self, project_id: str) -> Project:
        match = self.projects[self.projects["project_id"].astype(str) == str(project_id)]
        if match.empty:
            known = "、".join(self.projects["project_id"].astype(str).head(5))
            raise SelectionError(f"没有编号为 {project_id} 的培训项目（已有项目如 {known} 等）。")
        return Project.from_row(match.iloc[0].to_dict(), self.art.policy.class_size)

    def project_list(self) -> list[Project]:
        return [Project.from_row(r, self.art.policy.class_size) for r in self.projects.to_dict("records")]


def class_label(class_no: int) -> str:
    """第 3 班: how people name a class."""
    return f"第 {class_no} 班"


def taxonomy_names(art: Artifacts) -> dict[str, str]:
    """Competency code -> its Chinese name in the bundle's taxonomy."""
    return dict(zip(art.taxonomy["code"].astype(str), art.taxonomy["name"].astype(str), strict=False))


def _gap_matrix(ids: pd.Index, competencies: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """(teachers, competencies) gaps of these teachers; a missing estimate counts as the column's mean gap."""
    t = positions(ids, competencies["teacher_id"])
    k = positions(pd.Index(codes), competencies["competency"])
    keep = (t >= 0) & (k >= 0)
    m = np.full((len(ids), len(codes)), np.nan)
    m[t[keep], k[keep]] = pd.to_numeric(competencies["gap"], errors="coerce").to_numpy(dtype=float)[keep]
    if m.size == 0:
        return m
    means = np.nan_to_num(np.nanmean(np.where(np.isnan(m).all(axis=0), 0.0, m), axis=0))
    return np.where(np.isnan(m), means[None, :], m)


def _reasons(
    roster: pd.DataFrame,
    gaps: np.ndarray,
    content: ProjectContent,
    codes: np.ndarray,
    names: Mapping[str, str],
    percentile: np.ndarray,
    rural_weight: float,
    allocations: Mapping[str, int] | None,
) -> pd.Series:
    """Why each selected teacher is on the roster: need and its percentile, the project competencies where
    their gap weighs most, the rural priority, an estimate resting on priors, the county's seat."""
    if roster.empty:
        return pd.Series([], index=roster.index, dtype=object)
    shown = np.flatnonzero(np.isin(codes, content.codes))
    contribution = gaps[:, shown] * content.weights[shown][None, :]
    order = np.argsort(-contribution, axis=1, kind="stable")[:, :REASON_COMPETENCIES]
    reason = (
        "需求得分 "
        + roster["need"].map("{:.2f}".format)
        + "（高于 "
        + pd.Series(percentile, index=roster.index).map("{:.0f}".format)
        + "% 的符合条件教师）"
    )
    for j in range(order.shape[1]):
        col = shown[order[:, j]]
        part = (
            "「"
            + pd.Series(codes[col], index=roster.index).map(names)
            + "」差距 "
            + pd.Series(gaps[np.arange(len(roster)), col], index=roster.index).round().astype(int).astype(str)
            + " 分"
        )
        reason = reason + np.where(j == 0, "：", "、") + part
    rural = roster["rural_bonus"] > 0
    reason = reason.where(~rural, reason + f"；乡村学校教师优先（+{rural_weight:.2f}）")
    prior = roster["prior_share"] > 0.5
    reason = reason.where(~prior, reason + "；尚未测评，能力按同学段同学科教师估计")
    if allocations:
        seat = roster.groupby("county", sort=False).cumcount() + 1
        quota = roster["county"].map(dict(allocations)).astype(int).astype(str)
        reason = reason + "；" + roster["county"] + "名额第 " + seat.astype(str) + "/" + quota + " 位"
    return reason


def _county_summary(counties: pd.Series) -> str:
    """'修水县、武宁县、于都县等 12 个县区': the largest three counties of a class, by head count."""
    ranked = counties.value_counts().index.astype(str)
    more = f"等 {len(ranked)} 个县区" if len(ranked) > 3 else ""
    return "、".join(ranked[:3]) + more


def _class_table(
    roster: pd.DataFrame, portrait: CohortPortrait, names: Mapping[str, str], cost: Cost
) -> pd.DataFrame:
    by = roster.groupby("class_no")
    table = pd.DataFrame(
        {
            "n_teachers": by.size(),
            "n_counties": by["county"].nunique(),
            "counties": by["county"].agg(_county_summary),
            "share_rural": by["school_type"].agg(lambda s: float((s == "rural").mean())),
            "mean_need": by["need"].mean(),
        }
    ).reset_index()
    gaps = portrait.common_gaps.assign(name=lambda f: f["competency"].map(names).fillna(f["competency"]))
    text = (
        gaps.sort_values(["class_no", "rank"]).groupby("class_no")["name"].agg(lambda s: "、".join(s.head(3)))
    )
    table["class_label"] = table["class_no"].map(class_label)
    table["common_gaps"] = table["class_no"].map(text.astype(object)).astype(object).fillna("")
    table["cost_yuan"] = table["n_teachers"] * cost.per_trainee_yuan
    table["visible"] = True
    first = ["class_no", "class_label", "n_teachers", "n_counties", "counties", "share_rural", "mean_need"]
    return table[[*first, "common_gaps", "cost_yuan", "visible"]]


def _allocations_in_scope(project: Project, allocated: Mapping[str, int]) -> None:
    """Refuse per-county seats given to counties outside the project's scope."""
    if project.scope_counties and allocated:
        outside = sorted(set(allocated) - set(project.scope_counties))
        if outside:
            raise SelectionError(
                f"名额分配中的 {'、'.join(outside)} 不在项目范围（{project.scope_text}）内。"
            )


def _rank(
    pool: pd.DataFrame,
    ctx: SelectionContext,
    content: ProjectContent,
    codes: np.ndarray,
    weight: float,
    seats: int | None,
    allocated: Mapping[str, int],
) -> tuple[pd.DataFrame, np.ndarray]:
    """The eligible ``pool`` ranked best first (need, rural_bonus, prior_share, score, rank, selected), and
    each one's need percentile among the eligible.

    Ties go to the teacher with fewer training hours in the last three years (每位教师都有参加培训的机会),
    then to the smaller id."""
    ids = pd.Index(pool["teacher_id"].astype(str))
    need, prior_share = need_scores(ids, ctx.competencies, content, codes, ctx.target_level)
    rural = (
        (pool["school_type"] == "rural").fillna(False).to_numpy(dtype=bool) if "school_type" in pool else 0
    )
    recent = pd.to_numeric(pool.get("hours_3y", pd.Series(0.0, index=pool.index)), errors="coerce").fillna(
        0.0
    )
    ranked = pool[["teacher_id"]].assign(
        county=pool["county"].astype(str) if "county" in pool else "",
        need=need,
        rural_bonus=np.where(rural, weight, 0.0),
        prior_share=prior_share,
    )
    ranked["score"] = ranked["need"] + ranked["rural_bonus"]
    order = np.lexsort((ranked["teacher_id"].to_numpy(), recent.to_numpy(), -ranked["score"].to_numpy()))
    ranked = ranked.iloc[order].reset_index(drop=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    ranked["selected"] = fill_quota(ranked, seats, allocated or None)
    # share of the eligible whose need is strictly lower, floored: the neediest of 619 is "above 99 %"
    below = (ranked["need"].rank(method="min").to_numpy() - 1) / max(len(ranked), 1)
    return ranked, np.floor(100.0 * below)


def _number_classes(label: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Class numbers (1..k) for the class labels (0..k-1), numbered from the neediest class, so 第 1 班 is the
    one the project matters most to."""
    n_classes = int(label.max(initial=-1)) + 1
    class_need = np.bincount(label, need, minlength=n_classes) / np.maximum(
        np.bincount(label, minlength=n_classes), 1
    )
    renumber = np.empty(len(class_need), dtype=np.int64)
    renumber[np.argsort(-class_need, kind="stable")] = np.arange(1, len(class_need) + 1)
    return renumber[label] if len(label) else np.empty(0, np.int64)


def project_cost(project: Project, policy: Policy, trainees: int) -> Cost:
    """经费 of ``trainees`` on ``project`` at the policy's rates."""
    return Cost(
        days=project.days,
        online_hours=project.online_hours,
        offline_yuan_per_trainee=project.days * policy.offline_yuan_per_day,
        online_yuan_per_trainee=project.online_hours * policy.online_yuan_per_hour,
        trainees=trainees,
    )


def _shortfall_notes(allocations: pd.DataFrame) -> list[str]:
    """The note naming the counties whose allocated seats stay open (none when all are filled)."""
    short = allocations[allocations["unfilled"] > 0]
    if not len(short):
        return []
    return [
        "以下县区符合条件的教师少于分配名额，名额未满："
        + "、".join(short["county"] + "（缺 " + short["unfilled"].astype(str) + " 人）")
    ]


def _allocation_table(
    allocated: Mapping[str, int], ranked: pd.DataFrame, roster: pd.DataFrame, seats: int | None
) -> tuple[pd.DataFrame, list[str]]:
    """county, allocated, eligible, selected, unfilled per allocated county, and the notes on seats left open."""
    notes: list[str] = []
    table = pd.DataFrame(columns=["county", "allocated", "eligible", "selected", "unfilled"])
    if allocated:
        table = pd.DataFrame({"county": list(allocated), "allocated": list(allocated.values())})
        table["eligible"] = table["county"].map(ranked["county"].value_counts()).fillna(0)
        table["selected"] = table["county"].map(roster["county"].value_counts()).fillna(0)
        table = table.astype({"eligible": int, "selected": int})
        table["unfilled"] = table["allocated"] - table["selected"]
        notes.extend(_shortfall_notes(table))
        if seats is not None and sum(allocated.values()) < seats:
            notes.append(
                f"各县名额合计 {sum(allocated.values())} 人，少于项目名额 {seats} 人，其余名额未分配。"
            )
    elif seats is not None and len(roster) < seats:
        notes.append(f"符合条件的教师（{len(ranked)} 人）少于项目名额（{seats} 人），名额未满。")
    return table, notes


def select_trainees(
    ctx: SelectionContext,
    project_id: str,
    mix_counties: bool = False,
    allocations: Mapping[str, int] | None = None,
    quota: int | None = None,
    asof: pd.Timestamp | None = None,
    rural_priority_weight: float | None = None,
    repeat_years: int = REPEAT_YEARS,
    seed: int = 0,
) -> Selection:
    """Select trainees for ``project_id`` and split them into classes.

    Score = need (0–1, see ``need_scores``) + ``rural_priority_weight`` (the policy's, unless given) for a
    teacher at a rural school — the policy's 重点向乡村学校倾斜 as one explicit number (ties: see ``_rank``).
    ``allocations`` (county -> seats) replace the project's own county_quotas column; ``quota`` overrides
    the project's quota; ``asof`` (default: the bundle's data date) dates the three-year bar.

    The steps: eligibility → ranking and seats (``_rank``) → the roster with its reasons (``_reasons``) →
    classes (``form_classes``, numbered by ``_number_classes``) → cost, class portraits and allocations.
    """
    art, policy = ctx.art, ctx.art.policy
    project = ctx.project(project_id)
    asof = pd.Timestamp(asof) if asof is not None else art.asof
    weight = policy.rural_priority_weight if rural_priority_weight is None else float(rural_priority_weight)
    allocated = dict(allocations) if allocations is not None else dict(project.county_quotas)
    seats = quota if quota is not None else project.quota
    _allocations_in_scope(project, allocated)
    codes = np.asarray(art.catalogue.comp_codes).astype(str)
    names = taxonomy_names(art)
    content = ctx.contents[project.project_id]
    notes: list[str] = []
    if content.source == "general":
        notes.append(
            "项目名称与说明未指明具体能力点，需求按推断的能力分布综合计算；"
            "在项目表中填写 competencies（能力点）或 description（培训内容）可使选人更精准。"
        )

    teachers = ctx.teachers.reset_index(drop=True)
    rules = eligibility(teachers, project, ctx.records, policy, asof, repeat_years)
    ok = rules["eligible"].to_numpy()
    ranked, percentile = _rank(
        teachers[ok].reset_index(drop=True), ctx, content, codes, weight, seats, allocated
    )
    if seats is None and not allocated:
        notes.append("项目未规定名额：全部符合条件的教师均列入名单。")

    chosen = ranked[ranked["selected"]].reset_index(drop=True)
    detail = ["school_id", "school_type", "stage", "subject", "title", "years_teaching"]
    info = teachers.set_index("teacher_id")[[c for c in detail if c in teachers]]
    roster = chosen.join(info, on="teacher_id")
    chosen_ids = pd.Index(roster["teacher_id"].astype(str))
    gaps = _gap_matrix(chosen_ids, ctx.competencies, codes)
    roster["reason"] = _reasons(
        roster,
        gaps,
        content,
        codes,
        names,
        percentile[ranked["selected"].to_numpy()],
        weight,
        allocated or None,
    )
    groups = pd.factorize(roster["county"])[0] if mix_counties and len(roster) else None
    label = form_classes(gaps, project.class_size, groups, seed)
    roster["class_no"] = _number_classes(label, roster["need"].to_numpy())
    figures = ["need", "rural_bonus", "score", "prior_share", "class_no", "reason"]
    roster = roster[["rank", "teacher_id", "county", *info.columns, *figures]]

    cost = project_cost(project, policy, len(roster))
    member_comp = ctx.competencies[ctx.competencies["teacher_id"].isin(chosen_ids)]
    # the full portrait rows, so each class's portrait has its members' common gaps and hours
    members = teachers.set_index("teacher_id").loc[chosen_ids].reset_index()
    members["class_no"] = roster["class_no"].to_numpy()
    portrait = cohort_portrait(members, member_comp, "class_no", taxonomy=art.taxonomy)
    excluded = rules[~ok].reset_index(drop=True)
    excluded = excluded.join(teachers.set_index("teacher_id")[["county", "school_id"]], on="teacher_id")
    allocation_table, seat_notes = _allocation_table(allocated, ranked, roster, seats)
    notes.extend(seat_notes)
    return Selection(
        project=project,
        content=content,
        content_names=tuple(names.get(c, c) for c in content.codes),
        asof=asof,
        policy_name=policy.name,
        rural_priority_weight=weight,
        mix_counties=mix_counties,
        model_version=ctx.version,
        n_considered=len(teachers),
        roster=roster.reset_index(drop=True),
        ranked=ranked,
        excluded=excluded,
        classes=_class_table(roster, portrait, names, cost),
        class_portrait=portrait,
        allocations=allocation_table,
        cost=cost,
        spread=spread(gaps, label),
        random_spread=random_spread(gaps, label, seed) if len(label) else float("nan"),
        notes=tuple(notes),
        competency_names=names,
        seat_notes=tuple(seat_notes),
    )
