"""The trained artifacts scoring needs, saved into and loaded from one versioned bundle (models/bundle.py).

A bundle also holds the portrait files it was made with (hard links into WS/portraits.d, nothing copied): a reader
that pairs portraits with the models reads both through the bundle (`paired`), so the bundle's one switch moves
both, and a train or an incremental refresh finishing meanwhile cannot pair new portraits with old models.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data.policy import Policy
from data.reference import load_policy
from data.workspace import Workspace, fsync_tree
from features.pairs import CourseAttrs, CourseStats
from models.bundle import BundleWriter, current_bundle_dir, read_manifest
from models.index import VectorIndex
from models.lexical import BM25
from models.ranker import Ranker
from recommender.feedback import in_force
from recommender.ranking import Blend, Signals
from recommender.retrieval import Catalogue


@dataclass(frozen=True)
class Artifacts:
    """Everything `score_batch` and the service need, loaded once per process (or per Ray actor)."""

    version: str
    catalogue: Catalogue
    index: VectorIndex
    attrs: CourseAttrs
    signals: Signals
    ranker: Ranker
    bm25: BM25
    courses: pd.DataFrame  # the catalogue's courses in its order, with inferred competencies filled in
    taxonomy: pd.DataFrame
    policy: Policy
    asof: pd.Timestamp
    info: dict[str, Any]
    # the learned score's blend with the need prior (None: a bundle from before the blend, learned score alone)
    blend: Blend | None = None
    # teacher_id, course_id: the dismissals in force (recommender.feedback.in_force): courses never proposed to
    # that teacher again while their content is unchanged
    dismissed: pd.DataFrame | None = None


def _save_arrays(path: Path, obj: Any) -> None:
    """Save a frozen dataclass of numpy arrays, sparse matrices and small JSON values."""
    path.mkdir(parents=True, exist_ok=True)
    dense: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if sp.issparse(v):
            sp.save_npz(path / f"{f.name}.npz", sp.csr_matrix(v))
        elif isinstance(v, np.ndarray):
            dense[f.name] = v
        elif isinstance(v, dict):
            dense.update({f"{f.name}::{k}": np.asarray(x) for k, x in v.items()})
            meta[f.name] = "dict"
        else:
            meta[f.name] = list(v) if isinstance(v, tuple) else v
    np.savez(path / "arrays.npz", **dense)  # type: ignore[arg-type]
    (path / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def _load_arrays(path: Path, cls: Any) -> Any:
    arrays = np.load(path / "arrays.npz", allow_pickle=False)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for f in fields(cls):
        if (path / f"{f.name}.npz").exists():
            values[f.name] = sp.load_npz(path / f"{f.name}.npz").tocsr()
        elif meta.get(f.name) == "dict":
            prefix = f"{f.name}::"
            values[f.name] = {k[len(prefix) :]: arrays[k] for k in arrays.files if k.startswith(prefix)}
        elif f.name in arrays.files:
            values[f.name] = arrays[f.name]
        else:
            v = meta[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)


def save(
    writer: BundleWriter,
    catalogue: Catalogue,
    index: VectorIndex,
    attrs: CourseAttrs,
    signals: Signals,
    ranker: Ranker,
    bm25: BM25,
    courses: pd.DataFrame,
    taxonomy: pd.DataFrame,
    policy_name: str,
    asof: pd.Timestamp,
    blend: Blend,
    dismissed: pd.DataFrame,
) -> None:
    _save_arrays(writer.path("catalogue"), catalogue)
    _save_arrays(writer.path("attrs"), attrs)
    _save_arrays(writer.path("stats"), signals.stats)
    sp.save_npz(writer.path("item_sim.npz"), signals.item_sim)
    sp.save_npz(writer.path("transition.npz"), signals.transition)
    index.save(writer.path("index"))
    ranker.save(writer.path("ranker"))
    writer.path("bm25.pkl").write_bytes(pickle.dumps(bm25))
    courses.to_parquet(writer.path("courses.parquet"), index=False)
    taxonomy.to_parquet(writer.path("taxonomy.parquet"), index=False)
    dismissed.to_parquet(writer.path("dismissed.parquet"), index=False)
    writer.info.update({"policy": policy_name, "asof": asof.isoformat(), "blend": blend.as_dict()})


# the bundle's folder of portrait files
PORTRAITS = "portraits"


def link_portraits(writer: BundleWriter, folder: Path) -> None:
    """Put the portrait files of `folder` (a finished `data.workspace.portraits_update` set) into the bundle being
    written, as hard links, flushed to disk first: the bundle may be in force before the set is switched in."""
    fsync_tree(folder)
    target = writer.path(PORTRAITS)
    target.mkdir()
    for path in folder.iterdir():
        if path.is_file():
            os.link(path, target / path.name)


def paired(ws: Workspace, bundle_dir: Path | None = None) -> tuple[Workspace, Path]:
    """The bundle `bundle_dir` (default: the current one) and `ws` reading the portraits it was made with (a
    bundle made before bundles held portraits: the current set)."""
    bundle_dir = bundle_dir or current_bundle_dir(ws.bundles_dir)
    folder = bundle_dir / PORTRAITS
    return (replace(ws, portraits_from=folder) if folder.is_dir() else ws), bundle_dir


def load(bundle_dir: Path) -> Artifacts:
    manifest = read_manifest(bundle_dir)
    catalogue = _load_arrays(bundle_dir / "catalogue", Catalogue)
    courses = pd.read_parquet(bundle_dir / "courses.parquet")
    if not np.array_equal(courses["course_id"].to_numpy(dtype=str), catalogue.course_ids):
        # scoring reads a course's attributes by its catalogue position
        raise ValueError(f"{bundle_dir / 'courses.parquet'}: courses are not in the catalogue's order")
    signals = Signals(
        stats=_load_arrays(bundle_dir / "stats", CourseStats),
        item_sim=sp.load_npz(bundle_dir / "item_sim.npz").tocsr(),
        transition=sp.load_npz(bundle_dir / "transition.npz").tocsr(),
    )
    return Artifacts(
        version=manifest.version,
        catalogue=catalogue,
        index=VectorIndex.load(bundle_dir / "index"),
        attrs=_load_arrays(bundle_dir / "attrs", CourseAttrs),
        signals=signals,
        ranker=Ranker.load(bundle_dir / "ranker"),
        bm25=pickle.loads((bundle_dir / "bm25.pkl").read_bytes()),
        courses=courses,
        taxonomy=pd.read_parquet(bundle_dir / "taxonomy.parquet"),
        policy=load_policy(manifest.info["policy"]),
        asof=pd.Timestamp(manifest.info["asof"]),
        info={**manifest.info, "metrics": manifest.metrics},
        blend=Blend.from_dict(manifest.info["blend"]) if "blend" in manifest.info else None,
        dismissed=(
            in_force(pd.read_parquet(bundle_dir / "dismissed.parquet"), courses)
            if (bundle_dir / "dismissed.parquet").exists()
            else None
        ),
    )


def load_current(bundles_dir: Path) -> Artifacts:
    return load(current_bundle_dir(bundles_dir))
