"""The recommender as the service sees it: one teacher's portrait, menu and recommendations, course search and
cohort portraits, answered from the workspace's current bundle and portraits (loaded once per process).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.workspace import Workspace
from features.cohort import MIN_SIZE, cohort_portrait
from models.encoder import Encoder
from recommender.artifacts import Artifacts, load_current
from recommender.batch import PortraitBlock, menu_teachers, rank_block
from recommender.config import settings
from recommender.menu import MenuRequest, TeacherMenuContext, plan_menu
from recommender.search import search

# a cohort named by one of these keys shows its sub-groups one level down in the heatmap
HEATMAP_ROWS = {"province": "city", "city": "county", "county": "school_id"}
COHORT_KEYS = {"school": "school_id"}
BEHIND_LISTED = 50
HISTORY_COLUMNS = ["record_id", "course_id", "project_name", "start_date", "end_date", "hours", "format"]


def _listed(value: object) -> list[Any]:
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    return []


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _row(values: pd.Series) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in values.items()}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_row(row) for _, row in frame.iterrows()]


@dataclass
class Engine:
    """Answers for one workspace; thread-safe for reads (the encoder loads on the first search)."""

    workspace: Workspace
    art: Artifacts
    rows: pd.DataFrame  # portrait rows indexed by teacher_id
    competencies: pd.DataFrame  # long, sorted by teacher_id
    records: pd.DataFrame  # training records sorted by teacher_id
    _encoder: Encoder | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, workspace: Path | Workspace) -> Engine:
        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        art = load_current(ws.bundles_dir)
        rows = pd.read_parquet(ws.portraits_dir / "teachers.parquet")
        comp = pd.read_parquet(ws.portraits_dir / "competencies.parquet")
        records = ws.read_table("training_records") if ws.has_table("training_records") else pd.DataFrame()
        if len(records):
            records = records.sort_values(["teacher_id", "start_date"], kind="stable").reset_index(drop=True)
        return cls(
            ws,
            art,
            rows.set_index("teacher_id", drop=False),
            comp.sort_values(["teacher_id", "competency"], kind="stable").reset_index(drop=True),
            records,
        )

    @property
    def version(self) -> str:
        return self.art.version

    # ------------------------------------------------------------------------------------------ teacher

    def _slice(self, frame: pd.DataFrame, teacher_id: str) -> pd.DataFrame:
        if frame.empty:
            return frame
        ids = frame["teacher_id"].to_numpy()
        lo, hi = np.searchsorted(ids, teacher_id, "left"), np.searchsorted(ids, teacher_id, "right")
        return frame.iloc[lo:hi]

    def block(self, teacher_id: str) -> PortraitBlock | None:
        if teacher_id not in self.rows.index:
            return None
        return PortraitBlock(
            self.rows.loc[[teacher_id]].reset_index(drop=True),
            self._slice(self.competencies, teacher_id),
            self._slice(self.records, teacher_id),
        )

    def portrait(self, teacher_id: str) -> dict[str, Any] | None:
        if teacher_id not in self.rows.index:
            return None
        row = _row(self.rows.loc[[teacher_id]].iloc[0])
        tax = self.art.taxonomy.set_index("code")
        comp = self._slice(self.competencies, teacher_id)
        comp = comp.assign(
            name=comp["competency"].map(tax["name"]), domain=comp["competency"].map(tax["domain"])
        )
        history = self._slice(self.records, teacher_id)
        titles = self.art.courses.set_index("course_id")["title"]
        if len(history):
            named = history["course_id"].map(titles)
            history = history.assign(title=named.fillna(history.get("project_name")))
        return {
            **row,
            "hours_done": row.get("hours_done_cycle"),
            "roles": _listed(self.rows.at[teacher_id, "roles"]),
            "competencies": _records(comp.sort_values("gap", ascending=False, kind="stable")),
            "history": _records(history),
        }

    def recommendations(self, teacher_id: str, top_k: int = 20) -> pd.DataFrame | None:
        block = self.block(teacher_id)
        return None if block is None else rank_block(block, self.art, top_k).recs

    def menu(self, teacher_id: str, constraints: Any = None) -> dict[str, Any] | None:
        """The teacher's menu; `constraints` (hours, formats, exclude) re-plan it under their own wishes."""
        block = self.block(teacher_id)
        if block is None:
            return None
        ranked = rank_block(block, self.art, settings().top_k)
        t = menu_teachers(block.rows).iloc[0]
        teacher = TeacherMenuContext(
            teacher_id,
            str(t["stage"]),
            tuple(_listed(t["missing_mandatory"])),
            frozenset(_listed(t["completed"])),
        )
        request = None
        if constraints is not None:
            request = MenuRequest(
                hours_target=constraints.hours,
                formats=tuple(constraints.formats) if constraints.formats else None,
                exclude=frozenset(constraints.exclude),
            )
        plan = plan_menu(ranked.pool.drop(columns="teacher_id"), teacher, self.art.policy, request)
        pool = ranked.pool.drop_duplicates("course_id").set_index("course_id")
        courses = self.art.courses.set_index("course_id")
        items = [
            {
                "course_id": cid,
                "title": courses.at[cid, "title"],
                "hours": float(hours),
                "format": courses.at[cid, "format"],
                "competencies": _listed(courses.at[cid, "competencies_used"]),
                "mandatory_topic": _plain(courses.at[cid, "mandatory_topic"]),
                "practical": _plain(courses.at[cid, "practical"]),
                "score": _plain(pool.at[cid, "score"]),
                "reason": pool.at[cid, "reason"],
            }
            for cid, hours in zip(plan.items, plan.hours, strict=True)
        ]
        target = (
            request.hours_target if request and request.hours_target else self.art.policy.menu_hours_target
        )
        return {
            "teacher_id": teacher_id,
            "items": items,
            "hours_target": target,
            "notes": [plan.message] if plan.message else [],
            "model_version": self.version,
            "status": plan.status,
        }

    # ------------------------------------------------------------------------------------------ courses

    def _encoder_loaded(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                s = settings()
                self._encoder = Encoder(s.encoder_model, cache_dir=s.model_cache)
            return self._encoder

    def search(self, q: str, top_k: int = 10) -> list[dict[str, Any]]:
        hits = search(self.art, self._encoder_loaded(), q, top_k)
        courses = self.art.courses.set_index("course_id")
        extra = courses.loc[hits["course_id"], ["hours", "format", "competencies_used", "level"]]
        hits = hits.assign(
            hours=extra["hours"].to_numpy(),
            format=extra["format"].to_numpy(),
            competencies=extra["competencies_used"].map(_listed).to_numpy(),
            level=extra["level"].to_numpy(),
        )
        return _records(hits)

    def course(self, course_id: str) -> dict[str, Any] | None:
        courses = self.art.courses
        hit = courses[courses["course_id"] == course_id]
        if hit.empty:
            return None
        row = _row(hit.iloc[0])
        row["competencies"] = _listed(hit.iloc[0]["competencies_used"])
        for key in ("stages", "subjects", "prerequisites"):
            row[key] = _listed(hit.iloc[0][key])
        return row

    # ------------------------------------------------------------------------------------------ cohorts

    def cohort_rows(self, by: str, value: str, scope: tuple[str, str] | None) -> pd.DataFrame:
        """Portrait rows of the teachers with `by == value`, inside `scope` (kind, value) when given."""
        key = COHORT_KEYS.get(by, by)
        if key not in self.rows.columns:
            raise ValueError(f"cannot group by {by!r}")
        rows = self.rows[self.rows[key].astype(str) == value]
        if scope is not None:
            kind, area = scope
            rows = rows[rows[COHORT_KEYS.get(kind, kind)].astype(str) == area]
        return rows.reset_index(drop=True)

    def cohort(self, by: str, value: str, scope: tuple[str, str] | None) -> dict[str, Any] | None:
        rows = self.cohort_rows(by, value, scope)
        if rows.empty:
            return None
        return cohort_view(rows, self.competencies, self.art.taxonomy, by, value, scope)


def cohort_view(
    rows: pd.DataFrame,
    competencies: pd.DataFrame,
    taxonomy: pd.DataFrame,
    by: str,
    value: str,
    scope: tuple[str, str] | None,
) -> dict[str, Any]:
    """The `Cohort` record of the service: overall figures, a heatmap one level down, common gaps, hours.
    A cohort under the privacy floor shows its size only."""
    n = len(rows)
    span = {k: sorted(rows[k].dropna().astype(str).unique().tolist()) for k in ("province", "city", "county")}
    view: dict[str, Any] = {
        "by": by,
        "value": value,
        "scope": f"{scope[0]}:{scope[1]}" if scope else None,
        "n_teachers": n,
        "span": span,
    }
    if n < MIN_SIZE:
        return view
    comp = competencies[competencies["teacher_id"].isin(rows["teacher_id"])]
    whole = cohort_portrait(rows.assign(_cohort=value), comp, "_cohort", taxonomy=taxonomy)
    domains = taxonomy.drop_duplicates("code").set_index("code")["domain"]
    figures = whole.competencies.assign(domain=lambda f: f["competency"].map(domains))
    group = whole.groups.iloc[0]
    names = taxonomy.drop_duplicates("code").set_index("code")["name"]
    row_level = HEATMAP_ROWS.get(COHORT_KEYS.get(by, by), "county")
    sub = cohort_portrait(rows, comp, row_level)
    shown = sub.groups[~sub.groups["suppressed"]]
    columns = sorted(figures["competency"].unique().tolist())
    grid = sub.competencies.pivot_table(index=row_level, columns="competency", values="mean", dropna=False)
    grid = grid.reindex(index=shown[row_level], columns=columns)
    behind = rows[(rows["hours_owed"].fillna(0) > 0)].sort_values("hours_owed", ascending=False)
    view.update(
        {
            "competencies": _records(figures),
            "heatmap": {
                "row_level": row_level,
                "rows": shown[row_level].astype(str).tolist(),
                "row_sizes": shown["n_teachers"].astype(int).tolist(),
                "columns": columns,
                "values": [[_plain(v) for v in r] for r in grid.to_numpy().tolist()],
            },
            "hidden_rows": int(sub.groups["suppressed"].sum()),
            "common_gaps": _records(
                whole.common_gaps.assign(name=lambda f: f["competency"].map(names))[
                    ["competency", "name", "share"]
                ]
            ),
            "hours": {
                "required_mean": _plain(rows["hours_required"].mean()) if "hours_required" in rows else None,
                "done_mean": _plain(group.get("mean_hours_done_cycle")),
                "owed_mean": _plain(rows["hours_owed"].mean()),
                "share_behind": _plain(group.get("share_owing_hours")),
            },
            "behind_on_hours": _records(
                behind.head(BEHIND_LISTED)[
                    [
                        "teacher_id",
                        "school_id",
                        "county",
                        "hours_required",
                        "hours_done_cycle",
                        "hours_owed",
                        "missing_mandatory",
                    ]
                ].rename(columns={"hours_done_cycle": "hours_done"})
            )
            if "hours_required" in rows
            else [],
            "completion_rate": _plain(group.get("completion_rate")),
            "no_show_rate": _plain(group.get("no_show_rate")),
        }
    )
    return view
