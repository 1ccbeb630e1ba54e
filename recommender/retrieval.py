"""Candidate retrieval (召回): for every teacher, a few hundred eligible courses worth ranking.

Found by meaning (a query vector composed from the portrait, searched in the faiss course index) and by words
(BM25 of the teacher's gap competencies), behind hard filters that never leave a teacher short.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import scipy.sparse as sp

from data.schema import STAGE
from models.index import VectorIndex

STAGES = STAGE.values
# how much of the query vector is the teacher's stage and subject context, beside the gap competencies
CONTEXT_WEIGHT = 0.35
# weight of the lexical signal in the hybrid score (dense cosine and BM25 are both scaled to about [0, 1])
LEXICAL_WEIGHT = 0.5
# how many of a teacher's largest gaps shape the query
QUERY_GAPS = 5


@dataclass(frozen=True)
class Catalogue:
    """Course side of retrieval, computed once per bundle (all arrays indexed by course position)."""

    course_ids: np.ndarray  # (C,) str
    vectors: np.ndarray  # (C, d) passage embeddings, L2-normalised
    comp_codes: np.ndarray  # (K,) taxonomy codes
    comp_vectors: np.ndarray  # (K, d) query embeddings of the competency descriptions
    comp_lexical: np.ndarray  # (K, C) BM25 of each competency's text against each course, scaled to [0, 1]
    course_comp: np.ndarray  # (C, K) competency weights per course (tags or inferred), rows sum to 1 or 0
    stage_ok: np.ndarray  # (C, 4) bool, open to each stage of STAGES
    subject_vocab: tuple[str, ...]
    subject_ok: sp.csr_matrix  # (C, S) bool, open to each subject of subject_vocab
    all_subjects: np.ndarray  # (C,) bool, open to every subject
    active: np.ndarray  # (C,) bool
    prereq: sp.csr_matrix  # (C, C) 1 where column course is a prerequisite of row course
    context_vectors: dict[str, np.ndarray]  # "stage:<stage>" / "subject:<subject>" -> (d,) query embedding

    @property
    def n_courses(self) -> int:
        return len(self.course_ids)

    def subject_index(self, subjects: np.ndarray) -> np.ndarray:
        """Position of each subject in the vocabulary; -1 for a subject no course names."""
        lookup = {s: i for i, s in enumerate(self.subject_vocab)}
        return np.array([lookup.get(str(s), -1) for s in subjects], dtype=np.int64)


@dataclass(frozen=True)
class TeacherBlock:
    """Teacher side of retrieval for a block of teachers (rows aligned)."""

    teacher_ids: np.ndarray  # (n,) str
    stage_idx: np.ndarray  # (n,) int, position in STAGES, -1 unknown
    subjects: np.ndarray  # (n,) str
    gaps: np.ndarray  # (n, K) gap to the target level on the 0-100 scale, >= 0
    completed: sp.csr_matrix  # (n, C) bool, courses already completed

    def __len__(self) -> int:
        return len(self.teacher_ids)


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs in long form: row (teacher position in the block), course position, scores."""

    row: np.ndarray
    course: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    hybrid: np.ndarray

    def span(self, lo: int, hi: int, first_row: int) -> Candidates:
        """Pairs lo..hi-1, their rows counted from `first_row` (a slice of the block's teachers)."""
        return Candidates(
            self.row[lo:hi] - first_row,
            self.course[lo:hi],
            self.dense[lo:hi],
            self.lexical[lo:hi],
            self.hybrid[lo:hi],
        )

    def take(self, at: np.ndarray) -> Candidates:
        """The pairs at `at` (indices or a bool mask), in that order."""
        return Candidates(self.row[at], self.course[at], self.dense[at], self.lexical[at], self.hybrid[at])


def gap_weights(gaps: np.ndarray, top: int = QUERY_GAPS) -> np.ndarray:
    """Weights over competencies that emphasise a teacher's largest gaps (rows sum to 1, uniform when none)."""
    g = np.clip(np.asarray(gaps, dtype=np.float64), 0.0, None)
    n, k = g.shape
    if k > top:
        kth = np.partition(g, k - top, axis=1)[:, k - top][:, None]
        g = np.where(g >= kth, g, 0.0)
    g = g**2
    total = g.sum(axis=1, keepdims=True)
    return np.where(total > 0, g / np.where(total > 0, total, 1.0), 1.0 / k)


def query_vectors(block: TeacherBlock, cat: Catalogue) -> np.ndarray:
    """Compose each teacher's query from competency vectors (gap-weighted) and stage / subject context."""
    q = gap_weights(block.gaps) @ cat.comp_vectors
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    dim = cat.comp_vectors.shape[1]
    zero = np.zeros(dim, dtype=np.float32)
    stage_ctx = np.stack(
        [cat.context_vectors.get(f"stage:{STAGES[s]}", zero) if s >= 0 else zero for s in block.stage_idx]
    )
    subj_ctx = np.stack([cat.context_vectors.get(f"subject:{s}", zero) for s in block.subjects])
    q = (1 - CONTEXT_WEIGHT) * q + CONTEXT_WEIGHT * 0.5 * (stage_ctx + subj_ctx)
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    return q.astype(np.float32)


def lexical_scores(block: TeacherBlock, cat: Catalogue) -> np.ndarray:
    """BM25 of the teacher's gap competencies against every course: (n, C), in [0, 1]."""
    return (gap_weights(block.gaps) @ cat.comp_lexical).astype(np.float32)


def eligibility_matrix(block: TeacherBlock, cat: Catalogue) -> np.ndarray:
    """Hard filters for every (teacher, course) of a block: stage, subject, active, not completed,
    prerequisites met. Returns (n, C) bool."""
    n = len(block)
    stage = block.stage_idx
    ok = np.zeros((n, cat.n_courses), dtype=bool)
    known_stage = stage >= 0
    ok[known_stage] = cat.stage_ok[:, stage[known_stage]].T
    subj = cat.subject_index(block.subjects)
    subj_ok = np.zeros_like(ok)
    known_subj = subj >= 0
    if known_subj.any():
        subj_ok[known_subj] = cat.subject_ok[:, subj[known_subj]].T.toarray().astype(bool)
    ok &= cat.all_subjects[None, :] | subj_ok
    ok &= cat.active[None, :]
    completed = block.completed.astype(np.float32)
    ok &= ~completed.toarray().astype(bool)
    n_prereq = np.asarray(cat.prereq.sum(axis=1)).ravel()
    if n_prereq.any():
        met = (completed @ cat.prereq.T.astype(np.float32)).toarray()
        ok &= met >= n_prereq[None, :]
    return ok


def _dense_candidates(
    queries: np.ndarray, index: VectorIndex, eligible: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """faiss search that deepens, for the teachers filtering left short, until k remain or the catalogue ends."""
    n, c = eligible.shape
    want = np.minimum(k, eligible.sum(axis=1))
    found: list[tuple[np.ndarray, np.ndarray]] = []
    todo = np.arange(n)
    depth = min(c, max(2 * k, 32))
    while len(todo):
        scores, pos = index.search_positions(queries[todo], depth)
        valid = pos >= 0
        rows = np.repeat(todo, pos.shape[1]).reshape(pos.shape)
        keep = valid & eligible[rows, np.where(valid, pos, 0)]
        counts = keep.sum(axis=1)
        enough = (counts >= want[todo]) | (depth >= c)
        found.append((rows[enough][keep[enough]], pos[enough][keep[enough]]))
        todo = todo[~enough]
        depth = min(c, depth * 4)
    row = np.concatenate([f[0] for f in found]) if found else np.empty(0, np.int64)
    course = np.concatenate([f[1] for f in found]) if found else np.empty(0, np.int64)
    return row.astype(np.int64), course.astype(np.int64)


def top_per_row(score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the k best finite scores in each row (unordered), as long-form (row, column). faiss's heaps
    (one pass over the matrix in float32) select them several times faster than numpy's argpartition, which
    dominated scoring over a 20 000-course catalogue."""
    n, c = score.shape
    k = min(k, c)
    if n == 0 or k == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    heap = faiss.ResultHeap(n, k, keep_max=True)
    values = np.ascontiguousarray(score, dtype=np.float32)
    heap.add_result_subset(np.arange(n, dtype=np.int64), values, np.arange(c, dtype=np.int64))
    keep = (heap.I >= 0) & np.isfinite(heap.D)
    return np.nonzero(keep)[0].astype(np.int64), heap.I[keep]


# cells of one teachers × courses score matrix (float64) in pair_dots: 128 MB
DOT_CELLS = 1 << 24


def pair_dots(queries: np.ndarray, vectors: np.ndarray, row: np.ndarray, course: np.ndarray) -> np.ndarray:
    """queries[row] · vectors[course] for pairs sorted by row, as float32.

    Whole teachers × courses products, a few hundred teachers at a time, beat gathering two vectors per pair
    (memory traffic); they are taken in float64 and rounded, so a pair's score does not depend on which other
    teachers share its block."""
    n, c = len(queries), len(vectors)
    step = max(1, DOT_CELLS // max(c, 1))
    out = np.empty(len(row), dtype=np.float32)
    at = np.searchsorted(row, np.arange(0, n + step, step))
    v64 = np.asarray(vectors, dtype=np.float64).T
    for k, lo in enumerate(range(0, n, step)):
        a, b = at[k], at[k + 1]
        if a < b:
            scores = np.asarray(queries[lo : lo + step], dtype=np.float64) @ v64
            out[a:b] = scores[row[a:b] - lo, course[a:b]]
    return out


def retrieve(
    block: TeacherBlock,
    cat: Catalogue,
    index: VectorIndex,
    k: int,
    include: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
) -> Candidates:
    """Up to k eligible candidates per teacher by hybrid dense + lexical score (fewer only when the eligible
    catalogue has fewer), plus every eligible course of `include` ((n, C) bool, e.g. mandatory topics owed).
    `eligible`: the block's eligibility_matrix where the caller has it already."""
    eligible = eligibility_matrix(block, cat) if eligible is None else eligible
    queries = query_vectors(block, cat)
    lex = lexical_scores(block, cat)
    d_row, d_course = _dense_candidates(queries, index, eligible, k)
    l_row, l_course = top_per_row(np.where(eligible, lex, -np.inf), max(k // 2, 1))
    must = np.zeros_like(eligible) if include is None else include & eligible
    picked = must.copy()
    picked[d_row, d_course] = True
    picked[l_row, l_course] = True
    row, course = np.nonzero(picked)  # each pair once, by teacher then course
    dense = pair_dots(queries, cat.vectors, row, course)
    lexical = lex[row, course]
    hybrid = dense + LEXICAL_WEIGHT * lexical
    # keep the k best per teacher by the hybrid score, and every course that must be included
    order = np.lexsort((-hybrid, row))
    row, course, dense, lexical, hybrid = (
        row[order],
        course[order],
        dense[order],
        lexical[order],
        hybrid[order],
    )
    start = np.searchsorted(row, row, side="left")
    keep = ((np.arange(len(row)) - start) < k) | must[row, course]
    return Candidates(row[keep], course[keep], dense[keep], lexical[keep], hybrid[keep])
