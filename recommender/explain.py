"""Reasons (推荐理由): one Chinese sentence per recommended course, built only from the numbers in its facts row,
so a teacher never reads a claim the data does not support.

`reasons(facts)` works on a block of (teacher, course) rows; every clause has its own threshold below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd

from data.schema import FORMAT, LEVEL

# the labels of data.schema, keyed as the reasons look them up
FORMAT_ZH: Final = FORMAT.label_map()
LEVEL_ZH: Final = {int(v): LEVEL.label(v) for v in LEVEL.values}

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


# A clause column: per row the number of its text, -1 where the row has no such clause, and the texts.
# Each distinct text is written once, so the f-strings below run per distinct row, not per row.
_Clause = tuple[np.ndarray, list[str]]
# How an estimate is introduced, by whether it is a cold-start prior.
_ESTIMATE: Final = {False: "估计", True: "参照同类教师估计"}


def _kept(value: object) -> str | None:
    """A text cell as quoted: the string itself, None when null, blank or not a string."""
    return value if isinstance(value, str) and value.strip() else None


def _text(col: pd.Series) -> np.ndarray:
    """Text cells as str, None where null or blank; each distinct value is checked once."""
    try:
        codes, uniques = pd.factorize(col)
    except TypeError:  # unhashable cells: check them one by one
        return np.array([_kept(v) for v in col.astype(object)], dtype=object)
    kept = np.empty(len(uniques) + 1, dtype=object)
    kept[:] = [*(_kept(u) for u in uniques), None]
    return kept[codes]


def _num(col: pd.Series) -> np.ndarray:
    """Numeric cells as float64, NaN where null or not a number."""
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _has(text: np.ndarray) -> np.ndarray:
    """Where a text column from _text holds a string (kept strings are never empty)."""
    return text.astype(bool)


def _distinct_rows(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Codes numbering the distinct rows of ``columns`` in order of appearance, and each one's first row."""
    key, span = np.zeros(len(columns[0]), dtype=np.int64), 1
    for col in columns:
        codes, uniques = pd.factorize(col, use_na_sentinel=False)
        if span * len(uniques) >= 2**62:  # renumber before the combined key could overflow
            key, seen = pd.factorize(key)
            span = len(seen)
        key, span = key * len(uniques) + codes, span * len(uniques)
    key, _ = pd.factorize(key)
    # Codes come in order of appearance, so a row is a code's first exactly where the running maximum rises.
    return key, np.flatnonzero(np.diff(np.maximum.accumulate(key), prepend=-1) > 0)


def _clauses(mask: np.ndarray, make: Callable[..., str], *columns: np.ndarray) -> _Clause:
    """``make(*row)`` where ``mask`` holds, called once per distinct row of ``columns``."""
    rows = np.flatnonzero(mask)
    codes, first = _distinct_rows([c[rows] for c in columns])
    values = [c[rows[first]].tolist() for c in columns]
    out = np.full(len(mask), -1, dtype=np.int64)
    out[rows] = codes
    return out, [make(*row) for row in zip(*values, strict=True)]


def _either(first: _Clause, second: _Clause) -> _Clause:
    """``first`` where a row has it, else ``second``."""
    codes = np.where(first[0] >= 0, first[0], np.where(second[0] >= 0, second[0] + len(first[1]), -1))
    return codes, first[1] + second[1]


def _gap(facts: pd.DataFrame, comp: np.ndarray) -> _Clause:
    """The competency gap, against the peer mean where it is GAP_POINTS behind, else against WEAK_BELOW."""
    est, peer = _num(facts["estimate"]), _num(facts["peer_mean"])
    prior = facts["is_prior"].astype(object).fillna(False).to_numpy(dtype=bool)
    below_peers = np.isfinite(peer) & (est <= peer - GAP_POINTS)
    weak = est < WEAK_BELOW
    shown, behind = display_int(np.nan_to_num(est)), display_int(np.nan_to_num(peer - est))
    has = _has(comp) & np.isfinite(est)
    versus = _clauses(
        has & below_peers,
        lambda c, p, e, d: (
            f"针对您在「{c}」上的差距（{_ESTIMATE[p]} {e} 分，低于同学段同学科教师平均 {d} 分）"
        ),
        comp,
        prior,
        shown,
        behind,
    )
    alone = _clauses(
        has & ~below_peers & weak,
        lambda c, p, e: f"针对您在「{c}」上的差距（{_ESTIMATE[p]} {e} 分，未达 {WEAK_BELOW:g} 分）",
        comp,
        prior,
        shown,
    )
    return _either(versus, alone)


def _peers(facts: pd.DataFrame) -> _Clause:
    """How many peers completed the course (from MIN_PEERS), with their completion rate when known."""
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
    return _either(with_rate, plain)


def _satisfaction(facts: pd.DataFrame) -> _Clause:
    """The mean satisfaction score, quoted from MIN_RATINGS ratings."""
    sat, n = _num(facts["satisfaction"]), _num(facts["n_ratings"])
    # The rounded tenths divided as numpy divides them, so even a huge score prints as it always has.
    score = display_int(np.nan_to_num(sat) * 10) / 10
    return _clauses(
        np.isfinite(sat) & (n >= MIN_RATINGS),
        lambda s, k: f"学员满意度 {s:.1f} 分（满分 5 分，{k} 人评价）",
        score,
        display_int(np.nan_to_num(n)),
    )


def _habit(facts: pd.DataFrame, fmt: np.ndarray) -> _Clause:
    """The course's format when it holds TASTE_SHARE of the teacher's hours."""
    share = _num(facts["format_share"])
    return _clauses(
        _has(fmt) & (share >= TASTE_SHARE),
        lambda f, p: f"{f}形式占您已学学时的 {p}%",
        fmt,
        display_int(np.nan_to_num(share) * 100),
    )


def _level_names(level: np.ndarray) -> np.ndarray:
    """LEVEL_ZH of each level cut to an integer (as int() cuts it), None where none."""
    whole = np.trunc(level)
    names = np.full(len(level), None, dtype=object)
    for key, name in LEVEL_ZH.items():
        names[whole == key] = name
    return names


def _course(level: str | None, fmt: str | None, comp: str | None) -> str:
    """What the course is: its level and format, and the competency it builds."""
    kind = f"{level or ''}{fmt or ''}课程" if (level or fmt) else None
    return f"{kind + '，' if kind else ''}培养「{comp}」能力" if comp else (kind or FALLBACK_ZH)


def _builds(facts: pd.DataFrame, mask: np.ndarray, comp: np.ndarray, fmt: np.ndarray) -> _Clause:
    """The weaker statement when neither a topic nor a gap can be cited: what the course is."""
    return _clauses(mask, _course, _level_names(_num(facts["level"])), fmt, comp)


def _first_clauses(clauses: list[_Clause]) -> tuple[np.ndarray, list[str]]:
    """Per row the numbers of its first MAX_CLAUSES clauses (-1 past the last) among all the clauses' texts."""
    picked = np.full((len(clauses[0][0]), MAX_CLAUSES), -1, dtype=np.int64)
    count = np.zeros(len(picked), dtype=np.int64)
    offset = 0
    for codes, texts in clauses:
        rows = np.flatnonzero((codes >= 0) & (count < MAX_CLAUSES))
        picked[rows, count[rows]] = codes[rows] + offset
        count[rows] += 1
        offset += len(texts)
    return picked, [text for _, texts in clauses for text in texts]


def _join(clauses: list[_Clause]) -> np.ndarray:
    """Each row's first MAX_CLAUSES clauses joined by "；" and ended with "。", as str objects.

    Sentences are assembled from the end, each distinct (clause, rest of the sentence) pair written once.
    """
    picked, texts = _first_clauses(clauses)
    head, tail = [*texts, ""], [*("；" + t for t in texts), ""]  # index -1: no clause
    rest, endings = np.zeros(len(picked), dtype=np.int64), ["。"]
    for j in reversed(range(MAX_CLAUSES)):
        pieces = head if j == 0 else tail
        codes, first = _distinct_rows([picked[:, j], rest])
        pairs = zip(picked[first, j].tolist(), rest[first].tolist(), strict=True)
        rest, endings = codes, [pieces[c] + endings[r] for c, r in pairs]
    sentences = np.empty(len(endings), dtype=object)
    sentences[:] = endings
    return sentences[rest]


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
    comp, fmt = _text(facts["comp_name"]), _text(facts["format_zh"])
    topic = _text(facts["mandatory_missing"])
    mandatory = _clauses(_has(topic), lambda t: f"涵盖您尚未完成的必修专题「{t}」", topic)
    gap = _gap(facts, comp)
    lead = _builds(facts, (mandatory[0] < 0) & (gap[0] < 0), comp, fmt)
    similar = _text(facts["similar_course_title"])
    together = _clauses(_has(similar), lambda s: f"常与您已完成的《{s}》一起选学", similar)
    sentences = _join(
        [mandatory, gap, lead, _peers(facts), _satisfaction(facts), together, _habit(facts, fmt)]
    )
    return pd.Series(sentences, index=facts.index, dtype=object, name="reason")
