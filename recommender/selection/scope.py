"""What a caller may see of a selection: the projects of their area, the selection restricted to their own
teachers with small classes' figures withheld, and where one teacher stands in a project — as the sentences the
page shows.

A scope is ``(kind, value)`` — ``("county", "修水县")``, ``("city", …)``, ``("province", …)`` — or None for an
administrator, who sees everything. A class portrait shows only when every member of the class lies inside the
scope (the cohort rule of `api.auth.can_see_cohort`) and the class is not under the privacy floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pandas as pd

from recommender.selection.project import Project
from recommender.selection.select import Selection, SelectionContext, class_label

Scope = tuple[str, str] | None


class OutsideScope(PermissionError):
    """The project lies wholly outside the caller's area."""


def area_counties(teachers: pd.DataFrame, scope: Scope) -> set[str] | None:
    """The counties of the teachers inside ``scope`` (None: no scope, every county)."""
    if scope is None:
        return None
    kind, value = scope
    return set(teachers.loc[teachers[kind].astype(str) == value, "county"].dropna().astype(str))


def project_counties(teachers: pd.DataFrame, project: Project) -> set[str]:
    """The counties a project draws from: its scope, or every county of the province."""
    return set(project.scope_counties) or set(teachers["county"].dropna().astype(str))


def projects_in_scope(ctx: SelectionContext, scope: Scope) -> list[Project]:
    """The projects a caller with ``scope`` selects for: province-wide ones, and those whose counties meet the
    caller's area."""
    area = area_counties(ctx.teachers, scope)
    return [p for p in ctx.project_list() if area is None or area & project_counties(ctx.teachers, p)]


def check_in_scope(ctx: SelectionContext, project: Project, scope: Scope) -> None:
    """Raise `OutsideScope` when none of the project's counties lies in the caller's area."""
    area = area_counties(ctx.teachers, scope)
    if area is not None and not area & project_counties(ctx.teachers, project):
        raise OutsideScope(project.project_id)


def visible_selection(
    selection: Selection, teachers: pd.DataFrame, scope: Scope, min_cohort_size: int
) -> Selection:
    """The selection as a caller with ``scope`` may see it (`Selection.within`); classes smaller than
    ``min_cohort_size`` show their size only."""
    if scope is not None:
        kind, value = scope
        selection = selection.within(kind, value, teachers)
    small = selection.classes.loc[selection.classes["n_teachers"] < min_cohort_size, "class_no"]
    return selection.hiding_classes(small)


@dataclass(frozen=True)
class Standing:
    """Where one teacher stands in a project: selected (rank and class), eligible but not selected, or
    excluded (the failed rules), with the sentence that says why."""

    project_id: str
    teacher_id: str
    status: str  # selected / eligible / excluded
    status_label: str
    rank: int | None
    class_label: str | None
    reason: str


STANDING_ZH: Final = {"selected": "入选", "eligible": "符合条件，未入选", "excluded": "不符合条件"}


def standing(selection: Selection, teacher_id: str) -> Standing | None:
    """The teacher's standing in ``selection`` (None: not among the teachers it considered)."""

    def make(status: str, rank: int | None, class_label: str | None, reason: str) -> Standing:
        project_id = selection.project.project_id
        return Standing(project_id, teacher_id, status, STANDING_ZH[status], rank, class_label, reason)

    hit = selection.roster[selection.roster["teacher_id"] == teacher_id]
    if len(hit):
        row = hit.iloc[0]
        return make("selected", int(row["rank"]), class_label(int(row["class_no"])), str(row["reason"]))
    ranked = selection.ranked[selection.ranked["teacher_id"] == teacher_id]
    if len(ranked):
        row = ranked.iloc[0]
        reason = f"需求得分 {row['need']:.2f}、综合得分 {row['score']:.2f}，排名第 {int(row['rank'])} 位，名额已满。"
        return make("eligible", int(row["rank"]), None, reason)
    excluded = selection.excluded[selection.excluded["teacher_id"] == teacher_id]
    if not len(excluded):
        return None
    return make("excluded", None, None, str(excluded.iloc[0]["reason"]))
