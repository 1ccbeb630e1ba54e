"""Reasons (推荐理由): one Chinese sentence per recommended course, built only from the numbers in its facts row,
so a teacher never reads a claim the data does not support.

`reasons(facts)` works on a block of (teacher, course) rows; every clause has its own threshold below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd

FORMAT_ZH: Final = {
    "online": "线上",
    "offline": "线下集中",
    "blended": "混合式",
    "workshop": "工作坊",
    "shadowing": "跟岗研修",
    "school_based": "校本研修",
}
LEVEL_ZH: Final = {1: "入门", 2: "进阶", 3: "高级"}

# A gap is named when the estimate is this many points below the peer mean, or below WEAK_BELOW by itself.
GAP_POINTS: Final = 3.0
WEAK_BELOW: Final = 60.0
# Peer uptake and satisfaction are quoted only from this many teachers / ratings: fewer is anecdote.
MIN_PEERS: Final = 5
MIN_RATINGS: Final = 5
# A format is called the teacher's habit when it holds at least this share of their hours.
TASTE_SHARE: Final = 0.5
MAX_CLAUSES: Final = 3
FALLBACK_ZH: Final = "根据您的能力画像与学习记录综合排序推荐"

FACT_COLUMNS: Final = (
    "comp_name",
    "estimate",
    "peer_mean",
    "is_prior",
    "mandatory_missing",
    "peer_completions",
    "peer_completion_rate",
    "satisfaction",
    "n_ratings",
    "format_zh",
    "format_share",
    "level",
    "similar_course_title",
)


def display_int(x: np.ndarray | float) -> np.ndarray:
    """Round half up, as readers expect (42.5 → 43); Python's round() would give 42."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def _text(col: pd.Series) -> np.ndarray:
    """Text cells as str, None where null or blank."""
    values = col.astype(object).where(col.notna(), None).to_numpy(dtype=object)
    return np.array([v if isinstance(v, str) and v.strip() else None for v in values], dtype=object)


def _num(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _clauses(mask: np.ndarray, make: Callable[..., str], *columns: np.ndarray) -> np.ndarray:
    """``make(*row)`` where ``mask`` holds, None elsewhere."""
    out = np.full(len(mask), None, dtype=object)
    rows = np.flatnonzero(mask)
    out[rows] = [make(*(c[i] for c in columns)) for i in rows]
    return out


def _gap(facts: pd.DataFrame) -> np.ndarray:
    comp = _text(facts["comp_name"])
    est, peer = _num(facts["estimate"]), _num(facts["peer_mean"])
    prior = facts["is_prior"].astype(object).fillna(False).to_numpy(dtype=bool)
    below_peers = np.isfinite(peer) & (est <= peer - GAP_POINTS)
    weak = est < WEAK_BELOW
    word = np.where(prior, "参照同类教师估计", "估计")
    shown, behind = display_int(np.nan_to_num(est)), display_int(np.nan_to_num(peer - est))
    has = pd.notna(comp) & np.isfinite(est)
    versus = _clauses(
        has & below_peers,
        lambda c, w, e, d: f"针对您在「{c}」上的差距（{w} {e} 分，低于同学段同学科教师平均 {d} 分）",
        comp,
        word,
        shown,
        behind,
    )
    alone = _clauses(
        has & ~below_peers & weak,
        lambda c, w, e: f"针对您在「{c}」上的差距（{w} {e} 分，未达 {WEAK_BELOW:g} 分）",
        comp,
        word,
        shown,
    )
    return np.where(pd.notna(versus), versus, alone)


def _peers(facts: pd.DataFrame) -> np.ndarray:
    n = _num(facts["peer_completions"])
    rate = _num(facts["peer_completion_rate"])
    pct = display_int(np.nan_to_num(rate) * 100)
    ok = n >= MIN_PEERS
    with_rate = _clauses(
        ok & np.isfinite(rate),
        lambda k, p: f"同学段同学科 {k} 位教师已完成，结业率 {p}%",
        display_int(np.nan_to_num(n)),
        pct,
    )
    plain = _clauses(
        ok & ~np.isfinite(rate), lambda k: f"同学段同学科 {k} 位教师已完成", display_int(np.nan_to_num(n))
    )
    return np.where(pd.notna(with_rate), with_rate, plain)


def _satisfaction(facts: pd.DataFrame) -> np.ndarray:
    sat, n = _num(facts["satisfaction"]), _num(facts["n_ratings"])
    tenths = display_int(np.nan_to_num(sat) * 10)
    return _clauses(
        np.isfinite(sat) & (n >= MIN_RATINGS),
        lambda s, k: f"学员满意度 {s / 10:.1f} 分（满分 5 分，{k} 人评价）",
        tenths,
        display_int(np.nan_to_num(n)),
    )


def _habit(facts: pd.DataFrame) -> np.ndarray:
    fmt, share = _text(facts["format_zh"]), _num(facts["format_share"])
    return _clauses(
        pd.notna(fmt) & (share >= TASTE_SHARE),
        lambda f, p: f"{f}形式占您已学学时的 {p}%",
        fmt,
        display_int(np.nan_to_num(share) * 100),
    )


def _builds(facts: pd.DataFrame) -> np.ndarray:
    """The weaker statement when neither a topic nor a gap can be cited: what the course is."""
    comp, fmt = _text(facts["comp_name"]), _text(facts["format_zh"])
    level = _num(facts["level"])
    level_zh = np.array([LEVEL_ZH.get(int(v)) if np.isfinite(v) else None for v in level], dtype=object)
    kind = np.array(
        [f"{lv or ''}{f or ''}课程" if (lv or f) else None for lv, f in zip(level_zh, fmt, strict=True)],
        dtype=object,
    )
    return np.array(
        [
            f"{k + '，' if k else ''}培养「{c}」能力" if c else (k or FALLBACK_ZH)
            for k, c in zip(kind, comp, strict=True)
        ],
        dtype=object,
    )


def reasons(facts: pd.DataFrame) -> pd.Series:
    """One sentence per facts row (columns FACT_COLUMNS), index kept.

    Order: the mandatory topic owed, the competency gap (only when the estimate is GAP_POINTS below the peer
    mean or under WEAK_BELOW; a cold-start prior is called 参照同类教师估计), else what the course builds; then
    peer completions (≥ MIN_PEERS), satisfaction (≥ MIN_RATINGS ratings), a course completed with it, the
    teacher's usual format — at most MAX_CLAUSES clauses.
    """
    missing = [c for c in FACT_COLUMNS if c not in facts]
    if missing:
        raise KeyError(f"reasons() needs fact columns {missing}")
    topic = _text(facts["mandatory_missing"])
    mandatory = _clauses(pd.notna(topic), lambda t: f"涵盖您尚未完成的必修专题「{t}」", topic)
    gap = _gap(facts)
    lead = _builds(facts)
    lead[pd.notna(mandatory) | pd.notna(gap)] = None
    similar = _text(facts["similar_course_title"])
    together = _clauses(pd.notna(similar), lambda s: f"常与您已完成的《{s}》一起选学", similar)
    parts = np.stack(
        [mandatory, gap, lead, _peers(facts), _satisfaction(facts), together, _habit(facts)], axis=1
    )
    sentences = ["；".join([p for p in row if p is not None][:MAX_CLAUSES]) + "。" for row in parts]
    return pd.Series(sentences, index=facts.index, dtype=object, name="reason")
