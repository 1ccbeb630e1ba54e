"""Lexical course matching (关键词匹配): jieba tokens scored with BM25, the exact-term signal beside the dense one.

Strong where embeddings blur: policy terms such as 国家安全 or 师德师风 that a course either names or does not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache

import jieba
import numpy as np
from scipy import sparse

# jieba logs its dictionary loading to stderr by default; that is noise in CLI and job logs
jieba.setLogLevel(logging.WARNING)

# Function words that every course text has; content words, however common, are left to idf.
_STOPWORDS = (
    "的 地 得 了 着 过 和 与 及 以及 或 或者 并 并且 而 而且 在 是 为 以 之 其 对 于 从 到 由 把 被 将 "
    "等 等等 这 那 这些 那些 一个 一些 如何 怎样 怎么 什么 哪些 我 你 他 她 它 我们 你们 他们 有 也 都 就 "
    "又 还 及其 通过 基于 关于 of the and a an to in for on with"
)
STOPWORDS = frozenset(_STOPWORDS.split())

# Teacher-training terms that jieba's general dictionary cuts wrongly (师德师风 → 师德师/风, 新入职 → 新入/职) or
# only into parts: kept whole, a policy term matches as one rare token, and search mode still adds its parts.
_DOMAIN_TERMS = (
    "师德师风 师德 师风 立德树人 课程思政 四史 依法执教 有偿补课 十项准则 国家安全 总体国家安全观 核心素养 "
    "新课标 大单元 大概念 学习任务群 教学评一致性 跨学科 项目式 探究式 分层教学 作业设计 学情 学情分析 "
    "听评课 校本研修 校本教研 集体备课 磨课 课例研究 家校共育 家校社 幼小衔接 少先队 校园欺凌 表现性评价 "
    "过程性评价 综合素质评价 档案袋评价 评价量规 学业质量 新入职 跟岗 送教下乡 名师工作室 学科带头人 "
    "信息素养 数字素养 能力提升工程"
)
DOMAIN_TERMS = tuple(_DOMAIN_TERMS.split())


@cache
def _segmenter() -> jieba.Tokenizer:
    # a private jieba instance: the domain terms never change how other code in the process segments text
    segmenter = jieba.Tokenizer()
    for term in DOMAIN_TERMS:
        segmenter.add_word(term)
    return segmenter


def tokenize(text: str) -> list[str]:
    """jieba search-mode tokens (words plus their in-dictionary parts), lower-cased, without punctuation,
    whitespace or stopwords."""
    tokens = (t.strip().lower() for t in _segmenter().lcut_for_search(str(text)))
    return [t for t in tokens if t and t not in STOPWORDS and any(ch.isalnum() for ch in t)]


class BM25:
    """Okapi BM25 over jieba tokens; ``fit`` on course texts, ``score`` queries against all of them at once.

    Holds only arrays and a vocabulary, so it pickles into a bundle.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b

    def fit(self, docs: Sequence[str]) -> BM25:
        self.vocabulary_: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for row, doc in enumerate(docs):
            for token in tokenize(doc):
                cols.append(self.vocabulary_.setdefault(token, len(self.vocabulary_)))
                rows.append(row)
        n_docs, n_terms = len(docs), len(self.vocabulary_)
        tf = sparse.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(n_docs, n_terms), dtype=np.float32
        )
        tf.sum_duplicates()
        doc_len = np.asarray(tf.sum(axis=1)).ravel()
        avg_len = doc_len.mean() if n_docs and doc_len.mean() > 0 else 1.0
        df = np.bincount(tf.indices, minlength=n_terms)
        # Lucene's idf: never negative, so a term in most documents still counts a little
        self.idf_ = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = self.k1 * (1.0 - self.b + self.b * doc_len / avg_len)
        tf_rows = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
        weights = tf.data * (self.k1 + 1.0) / (tf.data + norm[tf_rows]) * self.idf_[tf.indices]
        doc_term = sparse.csr_matrix((weights.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape)
        self.term_doc_: sparse.csr_matrix = doc_term.T.tocsr()
        self.n_docs_ = n_docs
        return self

    def query_matrix(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """``(n_queries, n_terms)``: 1 where a known term occurs in the query (each term counts once)."""
        rows: list[int] = []
        cols: list[int] = []
        for row, query in enumerate(queries):
            known = {self.vocabulary_[t] for t in tokenize(query) if t in self.vocabulary_}
            cols.extend(known)
            rows.extend([row] * len(known))
        shape = (len(queries), len(self.vocabulary_))
        return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)

    def score(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """BM25 scores ``(n_queries, n_docs)``, sparse: a document sharing no term with a query scores 0."""
        return (self.query_matrix(queries) @ self.term_doc_).tocsr()
