"""Models (模型): the text encoder, the vector index, lexical scoring, the competency tagger, the diagnostic
IRT model, the LightGBM ranker and its compiled forest, collaborative baselines, and versioned bundles.
Entry points:

- `Encoder` — sentence embeddings of courses, competencies and queries (cached by content);
- `VectorIndex` — faiss retrieval over course vectors; `BM25` — lexical scores;
- `CompetencyTagger` — competencies of an untagged course or project;
- `MIRT` — multidimensional IRT over a Q-matrix; `Ranker` — LightGBM LambdaRank;
- `BundleWriter` / `read_manifest` — artifact bundles with a manifest.
"""

from data.lazy import lazy_exports

_EXPORTS = {
    "Encoder": "models.encoder",
    "VectorIndex": "models.index",
    "IndexConfig": "models.index",
    "BM25": "models.lexical",
    "CompetencyTagger": "models.tagger",
    "MIRT": "models.irt",
    "Ranker": "models.ranker",
    "Forest": "models.forest",
    "Popularity": "models.collab",
    "ItemKNN": "models.collab",
    "BundleWriter": "models.bundle",
    "read_manifest": "models.bundle",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
