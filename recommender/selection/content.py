"""What a project teaches: the competencies its content works on, given in its row or inferred from its text
like an untagged course's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from models.encoder import Encoder
from models.lexical import BM25
from models.tagger import CompetencyTagger, top_tags
from recommender.artifacts import Artifacts
from recommender.selection.project import Project, as_list
from recommender.train import competency_texts, course_texts

# The tagger's probabilities are calibrated (about one (course, competency) pair in K is a tag, ~0.02 with the
# built-in taxonomy): a top tag at 0.3 is fifteen times that base rate, so the project names its content.
# Below it, the project's content is general and weighs every competency by the tagger's belief.
CONFIDENT_TAG: Final = 0.3
# Administrative words that project names carry and course texts rarely do; left in, they tie a project (by
# BM25 and by meaning) to whichever competency mentions 培训 or 骨干 (青年教师带教与培训指导), not to what the
# project teaches. Who the project is for (stage, rural, role) is eligibility's business, not content.
PROJECT_WORDS: Final = (
    "培训者", "培训师", "培训", "研修", "骨干", "高级", "提升", "能力", "教师", "中小学", "乡村", "项目", "示范",
    "省外", "访学", "优秀", "卓越", "领军", "递进", "浸润式", "帮扶", "县级", "省级", "全省", "团队",
)  # fmt: skip
SHOWN_COMPETENCIES: Final = 5
CONTENT_SOURCE_ZH: Final = {
    "given": "项目表指定",
    "inferred": "依据项目名称与说明推断",
    "general": "项目内容较宽泛，按推断的能力分布综合计算",
}


@dataclass(frozen=True)
class ProjectContent:
    """The competencies a project works on: ``weights`` over the taxonomy (sum 1), ``codes`` the ones shown
    (largest weight first) with their ``shares`` of the weight, ``source`` given / inferred / general,
    ``confidence`` the top tag's probability."""

    codes: tuple[str, ...]
    shares: tuple[float, ...]
    weights: np.ndarray
    source: str
    confidence: float


def _strip_project_words(text: str) -> str:
    for word in sorted(PROJECT_WORDS, key=len, reverse=True):
        text = text.replace(word, " ")
    return text


def _content(weights: np.ndarray, codes: np.ndarray, source: str, confidence: float) -> ProjectContent:
    weights = weights / weights.sum()
    order = np.argsort(-weights, kind="stable")
    shown = order[weights[order] > 0][:SHOWN_COMPETENCIES]
    return ProjectContent(
        tuple(codes[shown].tolist()), tuple(weights[shown].tolist()), weights, source, float(confidence)
    )


def infer_contents(art: Artifacts, encoder: Encoder, projects: pd.DataFrame) -> dict[str, ProjectContent]:
    """Each project's content, inferred like an untagged course's: its text embedded, BM25 of every
    competency's words against it, and the tagger fitted on the catalogue's tagged courses.

    A project whose row names competencies (an extra ``competencies`` column) keeps them. Tags follow the
    course rule (the top one, then any above one half) when the top one is confident; otherwise the project
    is general and every competency weighs by its probability.
    """
    cat = art.catalogue
    codes = np.asarray(cat.comp_codes).astype(str)
    rows = [Project.from_row(r, art.policy.class_size) for r in projects.to_dict("records")]
    contents: dict[str, ProjectContent] = {}
    for p in rows:
        given = np.isin(codes, p.competencies).astype(np.float64)
        if given.any():
            contents[p.project_id] = _content(given, codes, "given", 1.0)
    todo = [p for p in rows if p.project_id not in contents]
    if not todo:
        return contents
    courses = art.courses.set_index("course_id").loc[cat.course_ids].reset_index()
    texts = [_strip_project_words(p.text) for p in todo]
    vectors = encoder.encode_passages(texts)
    bm25 = BM25().fit(course_texts(courses) + texts)
    lexical = bm25.score(competency_texts(art.taxonomy)).toarray().astype(np.float64)
    lexical /= lexical.max(axis=1, keepdims=True) + 1e-9
    n_courses = len(courses)
    labels = np.stack([np.isin(codes, as_list(c)) for c in courses["competencies"]]).astype(np.float64)
    tagged = labels.sum(axis=1) > 0
    if "competencies_inferred" in courses:
        tagged &= ~courses["competencies_inferred"].fillna(False).to_numpy(dtype=bool)
    if tagged.sum() >= 10 and labels[tagged].mean() < 1:
        tagger = CompetencyTagger().fit(
            cat.vectors[tagged], cat.comp_vectors, lexical[:, :n_courses].T[tagged], labels[tagged]
        )
        proba = tagger.predict_proba(vectors, lexical[:, n_courses:].T)
    else:
        # as in training: without tagged examples, competencies rank by similarity alone
        proba = np.maximum(vectors @ cat.comp_vectors.T, 1e-6).astype(np.float64)
    tags, confidence = top_tags(proba)
    for i, p in enumerate(todo):
        if confidence[i] >= CONFIDENT_TAG:
            weights = np.zeros(len(codes))
            weights[tags[i]] = proba[i, tags[i]]
            contents[p.project_id] = _content(weights, codes, "inferred", confidence[i])
        else:
            contents[p.project_id] = _content(proba[i].copy(), codes, "general", confidence[i])
    return contents
