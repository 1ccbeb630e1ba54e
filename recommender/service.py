"""The recommender as the service sees it: one teacher's portrait, menu and recommendations, course search and
cohort portraits, answered from the workspace's current bundle and portraits (loaded once per engine).

Default menus come from the `tdr score` output of the same bundle when there is one (WS/scores). After a
retrain, until that run covers a teacher, the menu comes from the previous finished run (WS/scores/_previous
while the new run is under way, WS/scores itself before it starts; marked with that run's bundle version), so
a hot swap does not turn every request into a live plan; only a teacher no run has scored is planned on first
request, and kept. A re-plan with the teacher's own constraints is always solved live.

Feedback counts at once: when the service's event log (WS/events.sqlite) gains a teacher's enrolled, completed,
dismissed or rated event dated from the bundle's date on, that teacher's kept answers are dropped and the next
ones are made with the events (recommender.feedback), not read from a scored run.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from data.events import log_stamp, teacher_log, teachers_with_feedback
from data.workspace import Workspace
from features.cohort import MIN_SIZE, behind_on_hours, cohort_portrait
from models.encoder import Encoder
from recommender.artifacts import Artifacts, load, paired
from recommender.batch import PREVIOUS_RUN, RUN_STAMP
from recommender.config import Settings, settings
from recommender.effects import (
    Growth,
    effects_report,
    history_of,
    province_effects,
    read_growth,
    teacher_growth,
)
from recommender.feedback import dismissals, in_force, rows_asof, with_events
from recommender.menu import MenuRequest, TeacherMenuContext, plan_menu
from recommender.scoring import PortraitBlock, Ranked, menu_teachers, rank_block
from recommender.search import search
from recommender.selection import Project, Selection, SelectionContext, project_table, select_trainees
from recommender.selection.scope import check_in_scope, projects_in_scope, visible_selection

# `tdr demo` scores into WS/scores; `tdr score --workspace WS --out WS/scores` does the same for any workspace.
SCORES_DIR = "scores"
# Sizes of the in-memory caches: entries are small records, so thousands cost a few MB.
MENU_CACHE = 20_000
RANKED_CACHE = 256
PORTRAIT_CACHE = 4_096
COHORT_CACHE = 256
SELECTION_CACHE = 32
SCORE_PARTS_CACHE = 16
# How often a lookup that finds no scored menu may list WS/scores again (a `tdr score` run may be under way).
RESCAN_S = 30.0
# a cohort named by one of these keys shows its sub-groups one level down in the heatmap
HEATMAP_ROWS = {"province": "city", "city": "county", "county": "school_id"}
COHORT_KEYS = {"school": "school_id"}
API_KEYS = {column: key for key, column in COHORT_KEYS.items()}
BEHIND_LISTED = 50
BEHIND_COLUMNS = [
    "teacher_id",
    "school_id",
    "county",
    "hours_required",
    "hours_done_cycle",
    "hours_owed",
    "missing_mandatory",
]
COURSE_FIELDS = ["title", "format", "competencies_used", "mandatory_topic", "practical"]

K = TypeVar("K")
V = TypeVar("V")


class MenuWishes(Protocol):
    """A teacher's own constraints for a re-plan (the API's `MenuConstraints`)."""

    @property
    def hours(self) -> float | None: ...

    @property
    def formats(self) -> Sequence[str] | None: ...

    @property
    def exclude(self) -> Sequence[str]: ...


class Lru(Generic[K, V]):
    """A small thread-safe LRU map; `get_or_make` computes outside the lock, so a slow miss blocks no one
    (two threads missing the same key both compute it, and the answers are equal)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        found = self.get(key)
        return found if found is not None else self.put(key, make())

    def pop(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)


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


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _teacher_ids(frame: pd.DataFrame) -> np.ndarray:
    if "teacher_id" not in frame:
        return np.empty(0, dtype=object)
    return frame["teacher_id"].astype(str).to_numpy(dtype=object)


def _rows_of(frame: pd.DataFrame, ids: np.ndarray, teacher_id: str) -> pd.DataFrame:
    """The rows of one teacher in a frame sorted by teacher_id (`ids` is that column as an array)."""
    lo, hi = np.searchsorted(ids, teacher_id, "left"), np.searchsorted(ids, teacher_id, "right")
    return frame.iloc[lo:hi]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def stamped_bundle(out: Path) -> str | None:
    """The bundle version a scoring run in `out` was made with (its OUT/_run.json), if any."""
    try:
        stamp = json.loads((out / RUN_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    bundle = stamp.get("bundle") if isinstance(stamp, dict) else None
    return bundle if isinstance(bundle, str) else None


class ScoredMenus:
    """The menus a `tdr score` run wrote for one bundle (OUT/menus.parquet/part-*.parquet, stamped in
    OUT/_run.json), found by teacher_id through each part's min/max statistics.

    Parts are read on demand and a few are kept. A part is trusted only while the stamp still names this
    bundle after it was read: a later run for another bundle rewrites the stamp before its first part.
    """

    def __init__(self, out: Path, version: str) -> None:
        self.out = Path(out)
        self.version = version
        self._bounds: dict[Path, tuple[str, str]] = {}
        self._parts: Lru[Path, tuple[np.ndarray, pd.DataFrame]] = Lru(SCORE_PARTS_CACHE)
        self._lock = threading.Lock()
        # one part read at a time: the requests that miss together (just after a swap) wait for one read
        # instead of each reading and sorting the same part, which stalled the service for seconds
        self._reading = threading.Lock()
        self._scanned_at = -np.inf
        self.scan()

    def stamped(self) -> bool:
        return stamped_bundle(self.out) == self.version

    def scan(self) -> None:
        """Index the parts written so far (each part file appears whole: it is written atomically)."""
        with self._lock:
            self._scanned_at = time.monotonic()
            if not self.stamped():
                self._bounds = {}
                return
            for path in sorted((self.out / "menus.parquet").glob("part-*.parquet")):
                if path in self._bounds:
                    continue
                try:
                    meta = pq.ParquetFile(path).metadata
                    col = meta.schema.to_arrow_schema().get_field_index("teacher_id")
                    stats = [meta.row_group(i).column(col).statistics for i in range(meta.num_row_groups)]
                except (OSError, ValueError):
                    continue
                if stats and all(s is not None and s.has_min_max for s in stats):
                    self._bounds[path] = (min(s.min for s in stats), max(s.max for s in stats))

    def __len__(self) -> int:
        return len(self._bounds)

    def _read(self, path: Path) -> tuple[np.ndarray, pd.DataFrame] | None:
        """A part sorted by teacher, with its teacher ids as an array to bisect."""
        try:
            part = pd.read_parquet(path)
        except (OSError, ValueError):
            return None
        if not self.stamped():
            return None
        part = part.sort_values(["teacher_id", "position"], kind="stable").reset_index(drop=True)
        return _teacher_ids(part), part

    def _part(self, path: Path) -> tuple[np.ndarray, pd.DataFrame] | None:
        part = self._parts.get(path)
        if part is not None:
            return part
        with self._reading:
            part = self._parts.get(path) or self._read(path)
        return None if part is None else self._parts.put(path, part)

    def rows_in_memory(self, teacher_id: str) -> pd.DataFrame | None:
        """The teacher's menu rows if a part holding them is in memory (no file is read), else None."""
        with self._lock:
            paths = [p for p, (lo, hi) in self._bounds.items() if lo <= teacher_id <= hi]
        for path in paths:
            part = self._parts.get(path)
            found = None if part is None else _rows_of(part[1], part[0], teacher_id)
            if found is not None and len(found):
                return found
        return None

    def rows(self, teacher_id: str) -> pd.DataFrame | None:
        """The teacher's menu rows (position, course_id, hours, reason, status, message), or None when no
        scored part covers the teacher."""
        for attempt in range(2):
            with self._lock:
                paths = [p for p, (lo, hi) in self._bounds.items() if lo <= teacher_id <= hi]
                due = time.monotonic() - self._scanned_at > RESCAN_S
            for path in paths:
                part = self._part(path)
                if part is None:
                    continue
                found = _rows_of(part[1], part[0], teacher_id)
                if len(found):
                    return found
            if attempt or not due:
                return None
            self.scan()
        return None


class PreviousMenus:
    """The menus of the finished run a newer bundle's run replaces: OUT/_previous while that run is under way
    (`tdr score` moves the finished run there), else OUT itself while its stamp names another bundle.

    Where they lie is decided again as soon as they vanish from where they were (the move is a few renames),
    so the answers follow the files without a wait."""

    def __init__(self, out: Path, current: str) -> None:
        self.out = Path(out)
        self.current = current
        self._store: ScoredMenus | None = None
        self._lock = threading.Lock()
        self.locate()

    def locate(self) -> None:
        found: ScoredMenus | None = None
        # OUT/_previous whatever its bundle (a re-run of the same bundle on new inputs sets one aside too);
        # OUT itself only for another bundle (for this one it is the engine's own run)
        for folder in (self.out / PREVIOUS_RUN, self.out):
            version = stamped_bundle(folder)
            if version is not None and (folder != self.out or version != self.current):
                found = ScoredMenus(folder, version)
                break
        with self._lock:
            self._store = found

    def rows(self, teacher_id: str) -> tuple[str, pd.DataFrame] | None:
        """(the run's bundle version, the teacher's menu rows), or None when no previous run covers them."""
        for attempt in range(2):
            with self._lock:
                store = self._store
            if store is not None:
                found = store.rows_in_memory(teacher_id)
                found = found if found is not None else store.rows(teacher_id)
                if found is not None:
                    return store.version, found
                if store.stamped():
                    return None
            if attempt == 0:
                self.locate()
        return None


_encoders: dict[tuple[str, Path, str], Encoder] = {}
_encoders_lock = threading.Lock()


def shared_encoder(model: str, cache_dir: Path, backend: str) -> Encoder:
    """One encoder per process, its model loaded: it does not depend on the bundle, so a reloaded engine keeps
    it, and the lock makes concurrent first searches wait for one load instead of each loading the model."""
    with _encoders_lock:
        key = (model, cache_dir, backend)
        if key not in _encoders:
            # one short query at a time: intra-op threads would only contend with the request threads
            encoder = Encoder(model, cache_dir=cache_dir, num_threads=1, backend=backend)
            encoder.load()  # loaded here, under the lock
            _encoders[key] = encoder
        return _encoders[key]


@dataclass
class Engine:
    """Answers for one workspace and bundle; safe to share between the server's threads."""

    workspace: Workspace
    art: Artifacts
    rows: pd.DataFrame  # portrait rows indexed by teacher_id
    competencies: pd.DataFrame  # long, sorted by teacher_id
    records: pd.DataFrame  # training records sorted by teacher_id
    scored: ScoredMenus | None = None
    previous: PreviousMenus | None = None
    config: Settings = field(default_factory=settings)
    _courses: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _names: dict[str, tuple[str | None, str | None]] = field(default_factory=dict, repr=False)
    # teacher ids of `competencies` and `records` as plain arrays: a teacher's rows are found by bisection
    _comp_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object), repr=False)
    _record_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object), repr=False)
    _course_details: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    _menus: Lru[str, dict[str, Any]] = field(default_factory=lambda: Lru(MENU_CACHE), repr=False)
    _ranked: Lru[str, tuple[Ranked, TeacherMenuContext]] = field(
        default_factory=lambda: Lru(RANKED_CACHE), repr=False
    )
    _portraits: Lru[str, dict[str, Any]] = field(default_factory=lambda: Lru(PORTRAIT_CACHE), repr=False)
    _cohorts: Lru[tuple[str, str, tuple[str, str] | None], dict[str, Any]] = field(
        default_factory=lambda: Lru(COHORT_CACHE), repr=False
    )
    _selections: Lru[tuple[str, bool], Selection] = field(
        default_factory=lambda: Lru(SELECTION_CACHE), repr=False
    )
    _selection_ctx: SelectionContext | None = field(default=None, repr=False)
    _selection_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # feedback the bundle does not hold yet: per teacher, the count of their enrolled / completed / dismissed /
    # rated events dated from the bundle's date on, and the event log's stamp when it was counted
    _fed: dict[str, int] = field(default_factory=dict, repr=False)
    _log_stamp: tuple[int, ...] = field(default=(), repr=False)
    _fed_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # 训后成效: WS/effects/ without the history (read per teacher), course and project titles, the
    # province-wide effects (made once; two threads racing both make the same), and a report per scope
    _once: dict[str, Any] = field(default_factory=dict, repr=False)
    _effects: Lru[tuple[str, str] | None, dict[str, Any]] = field(
        default_factory=lambda: Lru(COHORT_CACHE), repr=False
    )

    def __post_init__(self) -> None:
        self._comp_ids = _teacher_ids(self.competencies)
        self._record_ids = _teacher_ids(self.records)
        tax = self.art.taxonomy.drop_duplicates("code")
        self._names = {
            str(c): (_text(n), _text(d))
            for c, n, d in zip(tax["code"], tax["name"], tax["domain"], strict=True)
        }
        courses = self.art.courses.drop_duplicates("course_id").set_index("course_id", drop=False)
        self._course_details = courses
        self._courses = {
            str(cid): {
                "title": str(title),
                "format": _plain(fmt),
                "competencies": [str(c) for c in _listed(comps)],
                "mandatory_topic": _plain(topic),
                "practical": _plain(practical),
            }
            for cid, title, fmt, comps, topic, practical in zip(
                courses["course_id"], *(courses[c] for c in COURSE_FIELDS), strict=True
            )
        }

    @classmethod
    def load(
        cls, workspace: Path | Workspace, scores: Path | None = None, config: Settings | None = None
    ) -> Engine:
        """The engine of the workspace's current bundle; default menus from `scores` (WS/scores by default)
        when a `tdr score` run there was made with this bundle; ``config`` as the edge (CLI, app) built it —
        the environment's when not given, for tests and notebooks."""
        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        # the bundle and the portraits it holds: a train finishing meanwhile cannot pair them across builds
        ws, bundle = paired(ws)
        art = load(bundle)
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
            ScoredMenus(scores or ws.root / SCORES_DIR, art.version),
            PreviousMenus(scores or ws.root / SCORES_DIR, art.version),
            config or settings(),
        )

    @property
    def version(self) -> str:
        return self.art.version

    # ------------------------------------------------------------------------------------------ teacher

    def _competencies_of(self, teacher_id: str) -> pd.DataFrame:
        return _rows_of(self.competencies, self._comp_ids, teacher_id)

    def _records_of(self, teacher_id: str) -> pd.DataFrame:
        return _rows_of(self.records, self._record_ids, teacher_id)

    def _sync_feedback(self) -> None:
        """Re-count the event log when it was written since the last look, and forget what was made for a
        teacher whose feedback changed (their next menu is planned with it)."""
        stamp = log_stamp(self.workspace.root)
        if stamp == self._log_stamp:
            return
        with self._fed_lock:
            if stamp == self._log_stamp:
                return
            fed = teachers_with_feedback(self.workspace.root, self.art.asof)
            changed = {t for t in fed.keys() | self._fed.keys() if fed.get(t) != self._fed.get(t)}
            self._fed, self._log_stamp = fed, stamp
        for t in changed:
            for cache in (self._menus, self._ranked, self._portraits):
                cache.pop(t)

    def _with_feedback(self, teacher_id: str) -> PortraitBlock:
        """The teacher's block with the events the bundle does not hold: enrolled / completed courses as records
        (history, hours and topics owed recomputed as of the latest event), standing dismissals."""
        row = self.rows.loc[[teacher_id]].reset_index(drop=True)
        events = teacher_log(self.workspace.root, teacher_id)
        courses = self.art.courses.assign(competencies=self.art.courses["competencies_used"])
        records = with_events(self._records_of(teacher_id), events, courses)
        cut = max(self.art.asof, pd.Timestamp(events["ts"].max()).normalize() + pd.Timedelta(days=1))
        fresh = rows_asof(row, records, courses, self.art.taxonomy, self.art.policy, cut)
        row = row.assign(**{c: fresh[c].to_numpy() for c in fresh.columns if c in row.columns})
        dismissed = in_force(dismissals(events, courses), courses)
        return PortraitBlock(row, self._competencies_of(teacher_id), records, dismissed)

    def block(self, teacher_id: str) -> PortraitBlock | None:
        if teacher_id not in self.rows.index:
            return None
        self._sync_feedback()
        if teacher_id in self._fed:
            return self._with_feedback(teacher_id)
        return PortraitBlock(
            self.rows.loc[[teacher_id]].reset_index(drop=True),
            self._competencies_of(teacher_id),
            self._records_of(teacher_id),
        )

    def portrait(self, teacher_id: str) -> dict[str, Any] | None:
        """The teacher's portrait row with named competencies (largest gap first) and training history."""
        if teacher_id not in self.rows.index:
            return None
        self._sync_feedback()
        return self._portraits.get_or_make(teacher_id, lambda: self._portrait(teacher_id))

    def _portrait(self, teacher_id: str) -> dict[str, Any]:
        block = self.block(teacher_id)
        assert block is not None
        row = {str(k): _plain(v) for k, v in block.rows.iloc[0].items()}
        comp = self._competencies_of(teacher_id)
        named = pd.DataFrame(
            [self._names.get(str(c), (None, None)) for c in comp["competency"]],
            columns=["name", "domain"],
            index=comp.index,
            dtype=object,
        )
        comp = pd.concat([comp, named], axis=1).sort_values("gap", ascending=False, kind="stable")
        history = block.records
        if len(history):
            titles = history["course_id"].map(lambda c: self._courses.get(c, {}).get("title"))
            history = history.assign(title=titles.fillna(history.get("project_name")))
        return {
            **row,
            "hours_done": row.get("hours_done_cycle"),
            "roles": _listed(self.rows.at[teacher_id, "roles"]),
            "competencies": _records(comp),
            "history": _records(history),
        }

    def _ranked_for(self, teacher_id: str) -> tuple[Ranked, TeacherMenuContext] | None:
        """The teacher's ranked pool and menu context, kept for a few hundred teachers (re-plans repeat)."""
        found = self._ranked.get(teacher_id)
        if found is not None:
            return found
        block = self.block(teacher_id)
        if block is None:
            return None
        t = menu_teachers(block.rows).iloc[0]
        teacher = TeacherMenuContext(
            teacher_id,
            str(t["stage"]),
            tuple(str(x) for x in _listed(t["missing_mandatory"])),
            frozenset(str(x) for x in _listed(t["completed"])),
        )
        return self._ranked.put(teacher_id, (rank_block(block, self.art, self.config.top_k), teacher))

    def recommendations(self, teacher_id: str, top_k: int = 20) -> pd.DataFrame | None:
        block = self.block(teacher_id)
        return None if block is None else rank_block(block, self.art, top_k).recs

    def _menu_record(
        self,
        teacher_id: str,
        rows: pd.DataFrame,
        hours_target: float,
        status: str,
        message: str | None,
    ) -> dict[str, Any]:
        """The `Menu` record from chosen rows (course_id, hours, reason), the same for both sources."""
        items = [
            {
                "course_id": cid,
                **self._courses[cid],
                "hours": float(hours),
                "reason": reason if isinstance(reason, str) else "",
            }
            for cid, hours, reason in zip(rows["course_id"], rows["hours"], rows["reason"], strict=True)
            if isinstance(cid, str) and cid in self._courses
        ]
        return {
            "teacher_id": teacher_id,
            "items": items,
            "hours_target": float(hours_target),
            "notes": [message] if message else [],
            "model_version": self.version,
            "status": "empty" if not items else status,
        }

    def menu(self, teacher_id: str, constraints: MenuWishes | None = None) -> dict[str, Any] | None:
        """The teacher's menu; `constraints` (hours, formats, exclude) re-plan it under their own wishes."""
        if teacher_id not in self.rows.index:
            return None
        self._sync_feedback()
        if constraints is None:
            return self._menus.get(teacher_id) or self._default_menu(teacher_id)
        request = MenuRequest(
            hours_target=constraints.hours,
            formats=tuple(constraints.formats) if constraints.formats else None,
            exclude=frozenset(constraints.exclude),
        )
        return self._planned(teacher_id, request)

    def ready_menu(self, teacher_id: str) -> dict[str, Any] | None:
        """The default menu when it is at hand without computing or reading a file: made before, or in a scored
        part already in memory; else None."""
        self._sync_feedback()
        found = self._menus.get(teacher_id)
        if found is not None or self.scored is None or teacher_id not in self.rows.index:
            return found
        if teacher_id in self._fed:  # the scored menu predates the teacher's feedback
            return None
        rows = self.scored.rows_in_memory(teacher_id)
        return None if rows is None else self._menus.put(teacher_id, self._scored_menu(teacher_id, rows))

    def _default_menu(self, teacher_id: str) -> dict[str, Any]:
        """This bundle's scored menu, else the previous run's (not kept: this bundle's run may cover the
        teacher any moment), else one planned live (kept)."""
        # a scoring run may finish while this engine serves: the store looks for new parts now and then
        # a teacher with feedback since the bundle is planned with it, never read from a scored run
        fresh = teacher_id not in self._fed
        rows = self.scored.rows(teacher_id) if fresh and self.scored is not None else None
        if rows is not None:
            return self._menus.put(teacher_id, self._scored_menu(teacher_id, rows))
        earlier = self.previous.rows(teacher_id) if fresh and self.previous is not None else None
        if earlier is not None:
            return self._scored_menu(teacher_id, earlier[1], earlier[0])
        planned = self._planned(teacher_id, None)
        assert planned is not None
        return self._menus.put(teacher_id, planned)

    def _scored_menu(self, teacher_id: str, rows: pd.DataFrame, version: str | None = None) -> dict[str, Any]:
        status, message = rows["status"].iloc[0], rows["message"].iloc[0]
        record = self._menu_record(
            teacher_id,
            rows,
            self.art.policy.menu_hours_target,
            str(status),
            str(message) if isinstance(message, str) and message else None,
        )
        return record if version is None else {**record, "model_version": version}

    def _planned(self, teacher_id: str, request: MenuRequest | None) -> dict[str, Any] | None:
        found = self._ranked_for(teacher_id)
        if found is None:
            return None
        ranked, teacher = found
        pool = ranked.pool.drop(columns="teacher_id")
        plan = plan_menu(pool, teacher, self.art.policy, request)
        reasons = pool.drop_duplicates("course_id").set_index("course_id")["reason"]
        chosen = pd.DataFrame(
            {
                "course_id": list(plan.items),
                "hours": list(plan.hours),
                "reason": reasons.reindex(list(plan.items)).to_numpy(),
            }
        )
        target = (
            request.hours_target if request and request.hours_target else self.art.policy.menu_hours_target
        )
        return self._menu_record(teacher_id, chosen, target, plan.status, plan.message)

    # ------------------------------------------------------------------------------------------ courses

    def _encoder(self) -> Encoder:
        return shared_encoder(self.config.encoder_model, self.config.model_cache, self.config.encoder_backend)

    def warm(self) -> None:
        """Load the query model and the word segmenter and run a search, so the first one asked for does not
        wait for them."""
        self._encoder().load()
        self.search("教师专业发展", 1)

    def search(self, q: str, top_k: int = 10) -> list[dict[str, Any]]:
        hits = search(self.art, self._encoder(), q, top_k)
        extra = self._course_details.loc[hits["course_id"], ["hours", "format", "competencies_used", "level"]]
        hits = hits.assign(
            hours=extra["hours"].to_numpy(),
            format=extra["format"].to_numpy(),
            competencies=extra["competencies_used"].map(_listed).to_numpy(),
            level=extra["level"].to_numpy(),
        )
        return _records(hits)

    def course(self, course_id: str) -> dict[str, Any] | None:
        if course_id not in self._courses:
            return None
        hit = self._course_details.loc[course_id]
        row = {str(k): _plain(v) for k, v in hit.items()}
        row["competencies"] = _listed(hit["competencies_used"])
        for key in ("stages", "subjects", "prerequisites"):
            row[key] = _listed(hit.get(key))
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
        def make() -> dict[str, Any]:
            rows = self.cohort_rows(by, value, scope)
            return cohort_view(rows, self.competencies, self.art.taxonomy, by, value, scope)

        view = self._cohorts.get_or_make((by, value, scope), make)
        return view if view["n_teachers"] else None

    # ------------------------------------------------------------------------------------------ projects

    def selection_context(self) -> SelectionContext:
        """Selection over this engine's bundle, portraits and records, built on the first project request (the
        projects' contents are inferred with the query model) and kept with the engine, so a new bundle brings
        a new one."""
        with self._selection_lock:
            if self._selection_ctx is None:
                self._selection_ctx = SelectionContext.build(
                    self.art,
                    self.rows.reset_index(drop=True),
                    self.competencies,
                    self.records,
                    project_table(self.workspace),
                    self._encoder(),
                    self.config.target_level,
                )
            return self._selection_ctx

    def projects(self, scope: tuple[str, str] | None) -> list[Project]:
        return projects_in_scope(self.selection_context(), scope)

    def selection(
        self, project_id: str, mix_counties: bool, scope: tuple[str, str] | None, min_cohort_size: int
    ) -> Selection | None:
        ctx = self.selection_context()
        if not (ctx.projects["project_id"].astype(str) == project_id).any():
            return None
        check_in_scope(ctx, ctx.project(project_id), scope)
        full = self._selections.get_or_make(
            (project_id, mix_counties), lambda: select_trainees(ctx, project_id, mix_counties=mix_counties)
        )
        return visible_selection(full, ctx.teachers, scope, min_cohort_size)

    # ------------------------------------------------------------------------------------------ 训后成效

    def _memo(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._once:
            self._once[key] = make()
        return self._once[key]

    def _growth_tables(self) -> Growth | None:
        return self._memo("growth", lambda: read_growth(self.workspace, history=False))

    def _titles(self) -> dict[str, str]:
        def make() -> dict[str, str]:
            titles = {cid: str(c["title"]) for cid, c in self._courses.items()}
            if len(self.records) and "project_id" in self.records.columns:
                p = self.records.dropna(subset=["project_id"]).drop_duplicates("project_id")
                titles.update(zip(p["project_id"].astype(str), p["project_name"].astype(str), strict=True))
            return titles

        return self._memo("titles", make)

    def _province(self, growth: Growth) -> pd.DataFrame:
        return self._memo("effects", lambda: province_effects(self.workspace, growth))

    def effects(self, scope: tuple[str, str] | None) -> dict[str, Any] | None:
        """训后成效 of the teachers in `scope` (all when None), estimated among them; None before growth is
        measured (`tdr effects` or `tdr demo` write WS/effects/)."""
        growth = self._growth_tables()
        if growth is None:
            return None

        def make() -> dict[str, Any]:
            ids = None
            if scope is not None:
                kind, area = scope
                ids = self.rows.loc[self.rows[kind].astype(str) == area, "teacher_id"].astype(str).to_numpy()
            names = {c: n or c for c, (n, _) in self._names.items()}
            text = f"{scope[0]}:{scope[1]}" if scope else None
            return effects_report(
                growth, self.records, self._titles(), names, ids, text, self._province(growth)
            )

        return self._effects.get_or_make(scope, make)

    def growth(self, teacher_id: str) -> dict[str, Any] | None:
        """我的成长 of one teacher (courses' effects are the province's)."""
        if teacher_id not in self.rows.index:
            return None
        growth = self._growth_tables()
        if growth is None:
            effects = pd.DataFrame(
                columns=["course_id", "competency", "effect", "ci_low", "ci_high", "known"]
            )
        else:
            effects = self._province(growth)
        history = history_of(self.workspace, teacher_id)
        return teacher_growth(history, self._records_of(teacher_id), effects, self._titles(), self._names)


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
    codes = taxonomy.drop_duplicates("code").set_index("code")
    figures = whole.competencies.assign(domain=lambda f: f["competency"].map(codes["domain"]))
    group = whole.groups.iloc[0]
    row_level = HEATMAP_ROWS.get(COHORT_KEYS.get(by, by), "county")
    sub = cohort_portrait(rows, comp, row_level)
    shown = sub.groups[~sub.groups["suppressed"]]
    columns = sorted(figures["competency"].unique().tolist())
    grid = sub.competencies.pivot_table(index=row_level, columns="competency", values="mean", dropna=False)
    grid = grid.reindex(index=shown[row_level], columns=columns)
    behind = rows.set_index("teacher_id", drop=False).loc[behind_on_hours(rows)[:BEHIND_LISTED]]
    view.update(
        {
            "competencies": _records(figures),
            "heatmap": {
                "row_level": API_KEYS.get(row_level, row_level),
                "rows": shown[row_level].astype(str).tolist(),
                "row_sizes": shown["n_teachers"].astype(int).tolist(),
                "columns": columns,
                "values": [[_plain(v) for v in r] for r in grid.to_numpy().tolist()],
            },
            "hidden_rows": int(sub.groups["suppressed"].sum()),
            "common_gaps": _records(
                whole.common_gaps.assign(name=lambda f: f["competency"].map(codes["name"]))[
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
                behind[[c for c in BEHIND_COLUMNS if c in behind]].rename(
                    columns={"hours_done_cycle": "hours_done"}
                )
            ),
            "completion_rate": _plain(group.get("completion_rate")),
            "no_show_rate": _plain(group.get("no_show_rate")),
        }
    )
    return view
