"""Competency tagging: learnt from the tagged courses of a synthetic catalogue, judged on held-out courses.

Course and competency texts are embedded here by a small TF-IDF + SVD model instead of the transformer (fast,
deterministic) and feed the tagger the same signals; bench/encode_index.py measures it with the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from data.reference import load_taxonomy
from data.synthetic import generate
from models.lexical import BM25, tokenize
from models.tagger import MAX_TAGS, MIN_PROBABILITY, CompetencyTagger, top_tags
from recommender.train import competency_texts, course_texts


@dataclass(frozen=True)
class Split:
    vectors: np.ndarray  # (n, d) unit rows, courses
    comp_vectors: np.ndarray  # (K, d) unit rows, competencies
    lexical: np.ndarray  # (n, K) in [0, 1]
    truth: np.ndarray  # (n, K) multi-hot
    primary: np.ndarray  # (n,) position of each course's main competency
    train: np.ndarray  # (n,) bool: tagged courses the tagger learns from; the rest are held out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Split:
    folder: Path = tmp_path_factory.mktemp("province")
    generate(folder, n_teachers=40, seed=5, n_courses=500)
    courses = pd.read_csv(folder / "courses.csv")
    truth = (
        pd.read_parquet(folder / "_truth" / "courses.parquet")
        .set_index("course_id")
        .loc[courses["course_id"]]
    )
    taxonomy = load_taxonomy()
    codes = {code: i for i, code in enumerate(taxonomy["code"])}
    # the texts training encodes: one recipe (recommender.train)
    texts = course_texts(courses)
    comp_texts = competency_texts(taxonomy)

    tfidf = TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False, sublinear_tf=True)
    svd = TruncatedSVD(96, random_state=0).fit(tfidf.fit_transform(texts + comp_texts))
    vectors = _unit(svd.transform(tfidf.transform(texts)))
    comp_vectors = _unit(svd.transform(tfidf.transform(comp_texts)))
    lexical = BM25().fit(texts).score(comp_texts).toarray()
    lexical = (lexical / (lexical.max(axis=1, keepdims=True) + 1e-9)).T

    labels = np.zeros((len(courses), len(codes)))
    for row, comps in enumerate(truth["competencies"]):
        labels[row, [codes[c] for c in comps]] = 1.0
    primary = np.array([codes[comps[0]] for comps in truth["competencies"]])
    train = np.random.default_rng(0).random(len(courses)) < 0.6
    return Split(vectors, comp_vectors, lexical, labels, primary, train)


@pytest.fixture(scope="module")
def held_out(catalogue: Split) -> np.ndarray:
    """Tag probabilities of the held-out courses, from a tagger fitted on the others."""
    s, train = catalogue, catalogue.train
    tagger = CompetencyTagger().fit(s.vectors[train], s.comp_vectors, s.lexical[train], s.truth[train])
    return tagger.predict_proba(s.vectors[~train], s.lexical[~train])


def _tag_precision_recall(tags: list[list[int]], truth: np.ndarray) -> tuple[float, float]:
    hits = sum(truth[row, t].sum() for row, t in enumerate(tags))
    return hits / sum(map(len, tags)), hits / truth.sum()


def test_the_top_tag_of_a_held_out_course_is_one_of_its_competencies(
    catalogue: Split, held_out: np.ndarray
) -> None:
    truth = catalogue.truth[~catalogue.train]
    top = held_out.argmax(axis=1)
    assert truth[np.arange(len(top)), top].mean() >= 0.9
    assert (top == catalogue.primary[~catalogue.train]).mean() >= 0.85


def test_tags_are_learnt_from_tagged_courses_even_where_descriptions_say_nothing(catalogue: Split) -> None:
    # a deployment's taxonomy with uninformative descriptions: only the tagged courses can teach the tagger
    s, train = catalogue, catalogue.train
    blank = _unit(np.random.default_rng(1).standard_normal(s.comp_vectors.shape))
    no_words = np.zeros_like(s.lexical)
    tagger = CompetencyTagger().fit(s.vectors[train], blank, no_words[train], s.truth[train])
    top = tagger.predict_proba(s.vectors[~train], no_words[~train]).argmax(axis=1)
    truth = s.truth[~train]
    assert truth[np.arange(len(top)), top].mean() >= 0.8


def test_the_tags_given_are_mostly_right_and_find_most_competencies(
    catalogue: Split, held_out: np.ndarray
) -> None:
    tags, _ = top_tags(held_out)
    precision, recall = _tag_precision_recall(tags, catalogue.truth[~catalogue.train])
    assert precision >= 0.85
    assert recall >= 0.55


def test_probabilities_read_as_frequencies(catalogue: Split, held_out: np.ndarray) -> None:
    # what top_tags' fixed threshold and the confidence shown to clerks rely on
    truth = catalogue.truth[~catalogue.train]
    for likely in (held_out >= 0.5, held_out < 0.5):
        assert abs(truth[likely].mean() - held_out[likely].mean()) <= 0.1


def test_top_tags_keeps_the_top_one_always_and_others_only_when_likely() -> None:
    proba = np.array(
        [
            [0.10, 0.30, 0.20, 0.05],  # nothing likely: the top one alone
            [0.90, 0.70, 0.60, 0.55],  # four likely: three at most
            [0.20, 0.95, 0.10, MIN_PROBABILITY],  # a second exactly at the threshold
        ]
    )
    tags, confidence = top_tags(proba)
    assert tags == [[1], [0, 1, 2], [1, 3]]
    assert max(map(len, tags)) <= MAX_TAGS
    assert np.allclose(confidence, [0.30, 0.90, 0.95])


def test_fitting_refuses_labels_that_do_not_match_the_courses(catalogue: Split) -> None:
    s = catalogue
    with pytest.raises(ValueError, match="shapes"):
        CompetencyTagger().fit(s.vectors[:10], s.comp_vectors, s.lexical[:10], s.truth[:9])
    with pytest.raises(ValueError, match="tagged and untagged"):
        CompetencyTagger().fit(s.vectors[:10], s.comp_vectors, s.lexical[:10], np.zeros_like(s.truth[:10]))
