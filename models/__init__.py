"""Models (模型): the text encoder, the vector index, lexical scoring, the competency tagger, the diagnostic
IRT model, the LightGBM ranker and its compiled forest, collaborative baselines, and versioned bundles.
Entry points:

- `Encoder` — sentence embeddings of courses, competencies and queries (cached by content);
- `VectorIndex` — faiss retrieval over course vectors; `BM25` — lexical scores;
- `CompetencyTagger` — competencies of an untagged course or project;
- `MIRT` — multidimensional IRT over a Q-matrix (`Posterior`: persons scored under it); `Ranker` — LightGBM
  LambdaRank;
- `BundleWriter` / `read_manifest` — artifact bundles with a manifest;
- `estimate_effects` — what each course or project changed, with an interval (训后成效).
"""

from data.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "models.encoder": ("Encoder",),
        "models.index": ("VectorIndex", "IndexConfig"),
        "models.lexical": ("BM25",),
        "models.tagger": ("CompetencyTagger",),
        "models.irt": ("MIRT", "Posterior"),
        "models.ranker": ("Ranker",),
        "models.forest": ("Forest",),
        "models.collab": ("Popularity", "ItemKNN"),
        "models.bundle": ("BundleWriter", "read_manifest"),
        "models.effects": ("estimate_effects",),
    },
)
