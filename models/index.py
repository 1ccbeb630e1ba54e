"""Course vector index (课程向量索引): the courses nearest a query vector by inner product (cosine on unit vectors).

Exact search for small catalogues, an HNSW graph above a size threshold; saved as a folder beside the bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

INDEX_FORMAT = 1
IndexKind = Literal["auto", "flat", "hnsw"]
# Searches deeper than this share of the catalogue skip the graph: with efSearch >= 2k it then costs more than
# exhaustive search (measured on e5 course vectors at 20,000 and 60,000 courses), and exhaustive search is
# exact and never comes back short.
GRAPH_MAX_SHARE = 0.01
# faiss 1.15's bundled stubs leave out SearchParametersHNSW, which the extension defines; one alias keeps the
# gap in one place (mypy flags the ignore once the stubs have it)
_HnswSearchParameters: Callable[..., faiss.SearchParameters]
_HnswSearchParameters = faiss.SearchParametersHNSW  # type: ignore[attr-defined]


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target`` in one rename
    (a previous version is moved aside first and removed after), on failure it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the published folder should read like any other
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class IndexConfig:
    """How the index is built. ``kind="auto"``: exact up to ``exact_max`` vectors, HNSW above.

    HNSW rather than IVF: sentence embeddings of course texts are strongly anisotropic (mean vector norm
    ≈ 0.95 for e5 on the synthetic catalogue) and fill a continuum that k-means cells cut badly; there IVF
    needed most of its lists probed for recall@100 ≥ 0.98, while HNSW reached 0.997 at efSearch 128.
    """

    kind: IndexKind = "auto"
    exact_max: int = 20_000
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 256  # raised to 2k for searches deeper than 128


class VectorIndex:
    """Unit vectors of courses, searchable by inner product; results come back as course ids."""

    def __init__(self, index: faiss.Index, ids: np.ndarray, kind: str, config: IndexConfig) -> None:
        if index.ntotal != len(ids):
            raise ValueError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self.index = index
        self.ids = ids
        self.kind = kind
        self.config = config
        # an HNSW graph keeps its vectors in a flat index: exhaustive searches go there and are exact
        self._exact = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index

    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: Sequence[str] | np.ndarray, config: IndexConfig | None = None
    ) -> VectorIndex:
        """Index ``vectors`` (``(n, d)``, unit rows) under ``ids`` (one per row, unique)."""
        config = config or IndexConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        id_arr = np.asarray(ids)
        if id_arr.dtype == object:
            id_arr = id_arr.astype(str)
        if vectors.ndim != 2 or len(vectors) != len(id_arr):
            raise ValueError(f"need one id per vector row: vectors {vectors.shape}, ids {id_arr.shape}")
        if len(np.unique(id_arr)) != len(id_arr):
            raise ValueError("ids must be unique")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        kind = config.kind
        if kind == "auto":
            kind = "flat" if len(vectors) <= config.exact_max else "hnsw"
        dim = vectors.shape[1]
        index: faiss.Index
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            graph = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = config.ef_construction
            index = graph
        index.add(vectors)
        return cls(index, id_arr, kind, config)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "flat" or k >= GRAPH_MAX_SHARE * len(self):
            return self._exact.search(queries, k)
        params = _HnswSearchParameters(efSearch=max(self.config.ef_search, 2 * k))
        return self.index.search(queries, k, params=params)

    def search_positions(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(n, k')`` and row positions ``(n, k')``, best first, ``k' = min(k, len(self))``.

        ``allowed``: ``(len(self),)`` or ``(n, len(self))`` bool, the rows each query may return. The
        search then deepens, for the queries filtering left short, until ``k`` allowed rows are found or
        every row has been seen: a query comes back short only when fewer than ``k`` rows are allowed to it
        (positions -1 and scores -inf fill the rest).
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {queries.shape[1]}, the index {self.dim}")
        n, size = len(queries), len(self)
        k = min(int(k), size)
        if k <= 0 or n == 0:
            return np.empty((n, 0), np.float32), np.empty((n, 0), np.int64)
        if allowed is None:
            return self._search(queries, k)
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape not in ((size,), (n, size)):
            raise ValueError(f"allowed has shape {allowed.shape}; expected ({size},) or ({n}, {size})")
        allowed = np.broadcast_to(allowed, (n, size))
        want = np.minimum(k, allowed.sum(axis=1))
        scores = np.full((n, k), -np.inf, np.float32)
        positions = np.full((n, k), -1, np.int64)
        todo = np.arange(n)
        depth = min(size, max(2 * k, 32))
        while len(todo):
            found_scores, found = self._search(queries[todo], depth)
            hit = (found >= 0) & allowed[todo[:, None], np.maximum(found, 0)]
            done = (hit.sum(axis=1) >= want[todo]) | (depth == size)
            # allowed hits to the front, in the order found (best first); k columns always fit them
            order = np.argsort(~hit[done], axis=1, kind="stable")[:, :k]
            keep = np.take_along_axis(hit[done], order, axis=1)
            rows = todo[done]
            positions[rows] = np.where(keep, np.take_along_axis(found[done], order, axis=1), -1)
            scores[rows] = np.where(keep, np.take_along_axis(found_scores[done], order, axis=1), -np.inf)
            todo = todo[~done]
            depth = min(size, 4 * depth)
        return scores, positions

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(n, k')`` and course ids ``(n, k')`` (empty string where fewer were found), best first;
        ``allowed`` as in :meth:`search_positions`."""
        scores, positions = self.search_positions(queries, k, allowed)
        found = np.where(positions >= 0, self.ids[np.clip(positions, 0, None)], "")
        return scores, found

    def save(self, folder: str | Path) -> Path:
        """Write ``index.faiss``, ``ids.npy`` and ``manifest.json`` into ``folder``, replaced atomically."""
        folder = Path(folder)
        manifest = {
            "format": INDEX_FORMAT,
            "kind": self.kind,
            "metric": "inner_product",
            "dim": self.dim,
            "size": len(self),
            "config": asdict(self.config),
            "faiss_version": faiss.__version__,
        }
        with atomic_dir(folder) as tmp:
            faiss.write_index(self.index, str(tmp / "index.faiss"))
            np.save(tmp / "ids.npy", self.ids, allow_pickle=False)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VectorIndex:
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{folder} holds no vector index (no manifest.json); run `tdr train`")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != INDEX_FORMAT:
            raise ValueError(
                f"{manifest_path}: index format {manifest.get('format')}, expected {INDEX_FORMAT}"
            )
        index = faiss.read_index(str(folder / "index.faiss"))
        ids = np.load(folder / "ids.npy", allow_pickle=False)
        return cls(index, ids, manifest["kind"], IndexConfig(**manifest["config"]))
