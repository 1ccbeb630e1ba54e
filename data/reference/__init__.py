"""Reference data shipped with TDR: the competency taxonomy, policies, mandatory topics, Jiangxi 2022 projects.

Loaders return fresh copies of cached tables, in the normalised form of the data contract (lists as lists).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from data.policy import Policy
from data.policy import load_policy as _load_policy_file

REFERENCE_DIR = Path(__file__).parent
TAXONOMY_COLUMNS = ["code", "name", "domain", "description", "environment", "dimension"]
PROJECT_LIST_COLUMNS = [
    "target_stages",
    "target_subjects",
    "target_roles",
    "scope_counties",
    "target_school_types",
    "excluded_subjects",
]


def _read_text_table(name: str) -> pd.DataFrame:
    # Everything as text first, so codes such as "A1" or "01" are never turned into numbers.
    frame = pd.read_csv(REFERENCE_DIR / name, dtype=str, keep_default_na=False, encoding="utf-8")
    stripped: pd.DataFrame = frame.apply(lambda col: col.str.strip()).replace("", None)
    return stripped


def _split_list(cell: object) -> list[str]:
    # Blank cells arrive as NaN: not a string, so an empty list.
    return [part for part in cell.split(";") if part] if isinstance(cell, str) else []


def _copy(frame: pd.DataFrame, list_columns: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for column in list_columns:
        out[column] = out[column].map(list)
    return out


@lru_cache(maxsize=1)
def _taxonomy() -> pd.DataFrame:
    frame = _read_text_table("taxonomy.csv")
    for column in TAXONOMY_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


def load_taxonomy() -> pd.DataFrame:
    """The built-in competency framework: code, name, domain, description, environment, dimension.

    environment and dimension are set for the 30 micro-abilities of 能力提升工程2.0 and null elsewhere.
    """
    return _taxonomy().copy()


def load_policy(name: str | Path) -> Policy:
    """A built-in policy by name (default, henan_2021, jiangxi_2022) or a policy file by path."""
    return _load_policy_file(name)


@lru_cache(maxsize=1)
def _mandatory_topics() -> pd.DataFrame:
    return _read_text_table("mandatory_topics.csv")


def load_mandatory_topics() -> pd.DataFrame:
    """The mandatory training content (必修内容) of seed 003: topic, description, source."""
    return _mandatory_topics().copy()


@lru_cache(maxsize=1)
def _jiangxi_projects() -> pd.DataFrame:
    frame = _read_text_table("projects_jiangxi_2022.csv")
    for column in PROJECT_LIST_COLUMNS:
        frame[column] = frame[column].map(_split_list)
    for column in ("min_years", "quota", "class_size"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    for column in ("days", "online_hours"):
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame


def load_jiangxi_projects() -> pd.DataFrame:
    """Every project of seed 004's table (赣教师字〔2022〕14号 附件1) in the projects contract.

    Beyond the contract: category, provider, target_text, scope_label, scope_text, format_text,
    duration_text (the seed's own words), target_school_types and excluded_subjects (lists).
    days is the face-to-face days of one year; online_hours the online or workshop 学时.
    """
    return _copy(_jiangxi_projects(), PROJECT_LIST_COLUMNS)


@lru_cache(maxsize=1)
def _counties() -> pd.DataFrame:
    frame = _read_text_table("counties_jiangxi_2022.csv")
    frame["aliases"] = frame["aliases"].map(_split_list)
    return frame


def load_counties() -> pd.DataFrame:
    """Jiangxi 2022 counties (附件2) with city and category (demonstration / project /
    revitalisation_support), plus the counties only named as scope in 附件1 (category other)."""
    return _copy(_counties(), ["aliases"])
