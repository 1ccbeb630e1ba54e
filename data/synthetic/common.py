"""Province-wide constants of the synthetic generator and small draws shared by its stages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Literal, get_args

import numpy as np
import pandas as pd

from data.schema import FORMAT, ROLE, SCHOOL_TYPE, STAGE, STATUS, TITLE

PROVINCE = "江西省"
DEFAULT_AS_OF = date(2025, 10, 31)
HISTORY_YEARS = 5
# Jiangxi has roughly this many kindergarten-to-senior teachers; project quotas are scaled by N / this
PROVINCE_TEACHERS = 550_000
MAX_COURSES = 20_000

STAGES = STAGE.values
STAGE_ZH = ("幼儿园", "小学", "初中", "高中")
SCHOOL_TYPES = SCHOOL_TYPE.values
TITLES = TITLE.values
ROLES = ROLE.values
FORMATS = FORMAT.values
STATUSES = STATUS.values
SUBJECTS = (
    "学前教育", "语文", "数学", "英语", "物理", "化学", "生物", "历史", "地理",
    "道德与法治", "思想政治", "音乐", "体育", "美术", "信息技术", "科学", "心理健康",
)  # fmt: skip
# teachers per subject within a stage (relative shares)
STAGE_SUBJECTS: dict[str, dict[str, float]] = {
    "kindergarten": {"学前教育": 1.0},
    "primary": {
        "语文": 34, "数学": 27, "英语": 9, "科学": 5, "道德与法治": 5, "音乐": 5, "体育": 6, "美术": 5,
        "信息技术": 2, "心理健康": 2,
    },
    "junior": {
        "语文": 15, "数学": 15, "英语": 14, "物理": 7, "化学": 5, "生物": 5, "历史": 6, "地理": 5,
        "道德与法治": 7, "音乐": 3, "体育": 8, "美术": 3, "信息技术": 4, "心理健康": 3,
    },
    "senior": {
        "语文": 13, "数学": 13, "英语": 13, "物理": 9, "化学": 8, "生物": 7, "历史": 7, "地理": 6,
        "思想政治": 7, "音乐": 2, "体育": 7, "美术": 2, "信息技术": 4, "心理健康": 2,
    },
}  # fmt: skip

# share of teachers by stage, and by school type (rural, town, urban) within each stage and kind of county
STAGE_TEACHER_SHARE = np.array([0.20, 0.41, 0.25, 0.14])
SCHOOL_TYPE_SHARE = {
    "district": ((0.15, 0.25, 0.60), (0.20, 0.25, 0.55), (0.15, 0.25, 0.60), (0.00, 0.15, 0.85)),
    "city": ((0.50, 0.30, 0.20), (0.60, 0.25, 0.15), (0.50, 0.30, 0.20), (0.10, 0.40, 0.50)),
    "county": ((0.65, 0.25, 0.10), (0.75, 0.17, 0.08), (0.65, 0.25, 0.10), (0.20, 0.50, 0.30)),
}

# --- ground-truth model constants (documented in true_utility) ---
DISPLAY_CENTRE = 50.0
DISPLAY_SCALE = 15.0
TARGET_THETA = 1.5
LEVEL_SD = 0.9
CODE_WEIGHTS = (1.0, 0.6, 0.4)
SUBJECT_BONUS = 0.25
STAGE_BONUS = 0.10
PRACTICAL_BONUS = 0.10
MAX_CODES = 3

# --- worlds: what truly helps a teacher (see utility.benefit) ---
World = Literal["need", "quality", "popularity", "mixed"]
WORLDS: tuple[World, ...] = get_args(World)
DEFAULT_WORLD: World = "mixed"
WORLD_ZH: dict[World, str] = {
    "need": "需求驱动",
    "quality": "质量驱动",
    "popularity": "同伴偏好",
    "mixed": "混合",
}
# appeal = exp(APPEAL_SLOPE · popularity): what peers like
APPEAL_SLOPE = 0.8
# each world's benefit × its unit has the typical size of the need world's (calibrated on chosen courses of a
# 5 000-teacher province), so that effects and outcomes are on one scale whatever the world
WORLD_UNIT = {"need": 1.0, "quality": 0.525, "popularity": 0.245, "mixed": 0.404}
# typical true utility of a chosen course and its spread, per world: outcomes respond to the standardised utility
WORLD_UTILITY = {
    "need": (1.44, 1.16),
    "quality": (1.44, 1.09),
    "popularity": (1.44, 1.58),
    "mixed": (1.44, 1.61),
}
LOAD_G, LOAD_D = 0.60, 0.50
# self-ratings (自评) sit this many display points above the truth on average, with this much noise
SELF_RATING_BIAS, SELF_RATING_SD = 8.0, 12.0

MANDATORY_TOPICS: dict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = {
    # topic (seed 003's list): (share of mandatory courses, competency codes, stages it is for; empty = all)
    "师德师风": (0.25, ("ETH1",), ()),
    "思想政治": (0.10, ("ETH3", "LEAD5"), ()),
    "心理健康": (0.10, ("CLS2", "ETH4"), ()),
    "信息技术": (0.08, ("A2", "A3", "B2", "A12"), ()),
    "国家安全": (0.08, ("ETH2",), ()),
    "法治教育": (0.08, ("ETH2",), ()),
    "预防校园欺凌": (0.07, ("CLS5",), ("primary", "junior", "senior")),
    "生态教育": (0.05, ("ETH3",), ()),
    "四史": (0.05, ("ETH3",), ()),
    "国家通用语言文字": (0.05, ("KNW5",), ()),
    "幼小衔接": (0.04, ("KNW4",), ("kindergarten", "primary")),
    "少先队工作": (0.05, ("CLS4",), ("primary", "junior")),
}

# formats each kind of provider offers (relative weights, in FORMATS order)
PROVIDER_FORMATS = {
    "university": (0.10, 0.30, 0.25, 0.20, 0.15, 0.00),
    "platform": (0.75, 0.00, 0.20, 0.05, 0.00, 0.00),
    "province": (0.40, 0.25, 0.25, 0.10, 0.00, 0.00),
    "county": (0.10, 0.20, 0.05, 0.25, 0.05, 0.35),
}


def choice(rng: np.random.Generator, weights: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """Categorical draws of indices into weights (relative, not necessarily summing to 1) by inverse CDF."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.asarray(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").clip(0, len(cdf) - 1))


def apportion(n: int, shares: np.ndarray) -> np.ndarray:
    """n split in proportion to shares, in whole numbers that add up to n (largest remainders)."""
    exact = n * np.asarray(shares, dtype=np.float64) / float(np.sum(shares))
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[: n - int(counts.sum())]] += 1
    return counts


def to_display(theta: np.ndarray) -> np.ndarray:
    return np.clip(DISPLAY_CENTRE + DISPLAY_SCALE * theta, 0.0, 100.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def day_number(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def as_list(value: object) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if str(v)]
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return []
    return [p for p in str(value).replace("；", ";").replace("、", ";").split(";") if p]


def index_of(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    pos = {v: i for i, v in enumerate(vocabulary)}
    return np.array([pos.get(str(v), 0) for v in values], dtype=np.int64)
