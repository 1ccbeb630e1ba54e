"""Course search for people (课程搜索): hybrid dense + lexical + competency match over the catalogue — the
code behind `tdr search` and the service's course search.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.encoder import Encoder
from recommender.artifacts import Artifacts

LEXICAL_WEIGHT = 0.5
COMPETENCY_WEIGHT = 0.5
# how sharply a query is matched to competencies (cosine differences are small; a temperature spreads them)
COMPETENCY_TEMPERATURE = 0.02


def _scaled(x: np.ndarray) -> np.ndarray:
    top = x.max(initial=0.0)
    return x / top if top > 0 else x


def search_scores(art: Artifacts, query_vec: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """Hybrid score of every course for one query: dense cosine + scaled BM25 + match to the competency the
    query names (which reaches courses tagged by inference too)."""
    cat = art.catalogue
    dense = cat.vectors @ query_vec
    sims = cat.comp_vectors @ query_vec
    w = np.exp((sims - sims.max()) / COMPETENCY_TEMPERATURE)
    comp = cat.course_comp @ (w / w.sum())
    return dense + LEXICAL_WEIGHT * _scaled(lexical) + COMPETENCY_WEIGHT * _scaled(comp)


def search(
    art: Artifacts, encoder: Encoder, query: str, top_k: int = 10, active_only: bool = True
) -> pd.DataFrame:
    """Best courses for a free-text query: course_id, title, score (best first)."""
    q = encoder.encode_queries([query])[0]
    lexical = art.bm25.score([query]).toarray()[0]
    score = search_scores(art, q, lexical)
    if active_only:
        score = np.where(art.catalogue.active, score, -np.inf)
    k = min(top_k, int(np.isfinite(score).sum()))
    best = np.argsort(-score, kind="stable")[:k]
    courses = art.courses.set_index("course_id").loc[art.catalogue.course_ids[best]]
    return pd.DataFrame(
        {
            "course_id": art.catalogue.course_ids[best],
            "title": courses["title"].to_numpy(),
            "score": score[best],
        }
    )
