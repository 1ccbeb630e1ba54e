"""Lexical matching: jieba tokens and BM25 find courses that name a query's exact terms."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.lexical import BM25, tokenize

COURSES = [
    "校园安全管理与应急演练",
    "国家课程方案解读：义务教育新课标",
    "总体国家安全观与国家安全教育教学设计",
    "师德师风建设：新时代教师职业行为十项准则",
    "用数据分析学情，开展精准教学",
    "",
]


@pytest.fixture(scope="module")
def bm25() -> BM25:
    return BM25().fit(COURSES)


def test_an_exact_policy_term_ranks_the_course_that_names_it_first(bm25: BM25) -> None:
    scores = bm25.score(["国家安全", "师德师风", "学情分析"]).toarray()
    assert list(scores.argmax(axis=1)) == [2, 3, 4]


def test_a_course_sharing_no_term_with_the_query_scores_zero(bm25: BM25) -> None:
    scores = bm25.score(["师德师风"]).toarray()[0]
    assert scores[3] > 0
    assert (np.delete(scores, 3) == 0).all()


def test_empty_and_unknown_queries_score_zero_everywhere(bm25: BM25) -> None:
    scores = bm25.score(["", "   ", "！？。", "量子纠缠"])
    assert scores.shape == (4, len(COURSES))
    assert scores.nnz == 0


def test_punctuation_whitespace_and_stopwords_are_not_tokens() -> None:
    tokens = tokenize("落实立德树人的根本任务， 加强 AI 赋能！")
    assert "的" not in tokens
    assert not {"，", "！", " "} & set(tokens)
    assert {"根本任务", "ai", "赋能"} <= set(tokens)


def test_teacher_training_terms_stay_whole_and_keep_their_parts() -> None:
    assert {"师德师风", "师德", "师风", "建设"} <= set(tokenize("师德师风建设"))
    assert {"新入职", "跟岗", "研修"} <= set(tokenize("新入职教师跟岗研修"))
    assert {"大单元", "单元", "核心素养", "素养"} <= set(tokenize("核心素养导向的大单元教学"))


def test_a_query_naming_part_of_a_compound_term_finds_the_course(bm25: BM25) -> None:
    scores = bm25.score(["师德", "安全观"]).toarray()
    assert list(scores.argmax(axis=1)) == [3, 2]


def test_a_rare_term_outweighs_a_common_one() -> None:
    docs = ["课堂教学评价", "课堂教学设计", "课堂教学反思", "课堂管理"]
    scores = BM25().fit(docs).score(["课堂 反思"]).toarray()[0]
    assert scores.argmax() == 2
    assert scores[2] > 2 * scores[0] > 0


def test_a_longer_course_text_scores_lower_for_the_same_term() -> None:
    docs = ["作业设计", "作业设计与课堂观察、教研组活动和家校沟通的综合实践", "教研活动"]
    scores = BM25().fit(docs).score(["作业设计"]).toarray()[0]
    assert scores[0] > scores[1] > scores[2] == 0


def test_a_pickled_model_scores_the_same(bm25: BM25) -> None:
    restored = pickle.loads(pickle.dumps(bm25))
    queries = ["国家安全教育", "精准教学"]
    assert (restored.score(queries) != bm25.score(queries)).nnz == 0


def test_jieba_loads_its_dictionary_without_writing_to_stderr() -> None:
    code = "from models.lexical import tokenize; print(tokenize('师德师风建设'))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stderr == ""
    assert "师德" in done.stdout
