"""Data (数据): the input contract, readers, ingest into a workspace, reference data, policies, and the synthetic
province generator. Entry points:

- `ingest(src, ws, append=, replace=)` — validate and load contract files into a new `Workspace` version
  (`IngestRefused` when that would lose data);
- `load_policy(name)` / `Policy` — a province's rules; `load_taxonomy()` — the built-in competency framework;
- `generate(dst, n_teachers, seed)` — a synthetic province in the contract format;
- `STAGE`, `FORMAT`, … (`EnumSpec`) — each contract enum with its values and its one Chinese label.
"""

from data.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "data.ingest": ("ingest", "IngestReport", "IngestRefused"),
        "data.workspace": ("Workspace",),
        "data.policy": ("Policy", "PolicyError"),
        "data.reference": ("load_policy", "load_taxonomy", "load_jiangxi_projects"),
        "data.synthetic": ("generate",),
        "data.schema": (
            "EnumSpec",
            "STAGE",
            "SCHOOL_TYPE",
            "TITLE",
            "ROLE",
            "FORMAT",
            "STATUS",
            "LEVEL",
            "EVENT_TYPE",
        ),
    },
)
