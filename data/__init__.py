"""Data (数据): the input contract, readers, ingest into a workspace, reference data, policies, and the synthetic
province generator. Entry points:

- `ingest(src, ws)` — validate and load contract files into a `Workspace`;
- `load_policy(name)` / `Policy` — a province's rules; `load_taxonomy()` — the built-in competency framework;
- `generate(dst, n_teachers, seed)` — a synthetic province in the contract format;
- `STAGE`, `FORMAT`, … (`EnumSpec`) — each contract enum with its values and its one Chinese label.
"""

from data.lazy import lazy_exports

_EXPORTS = {
    "ingest": "data.ingest",
    "IngestReport": "data.ingest",
    "Workspace": "data.workspace",
    "Policy": "data.policy",
    "PolicyError": "data.policy",
    "load_policy": "data.reference",
    "load_taxonomy": "data.reference",
    "load_jiangxi_projects": "data.reference",
    "generate": "data.synthetic",
    "EnumSpec": "data.schema",
    "STAGE": "data.schema",
    "SCHOOL_TYPE": "data.schema",
    "TITLE": "data.schema",
    "ROLE": "data.schema",
    "FORMAT": "data.schema",
    "STATUS": "data.schema",
    "LEVEL": "data.schema",
    "EVENT_TYPE": "data.schema",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
