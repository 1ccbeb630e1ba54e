"""Course titles and descriptions composed from the phrase bank (phrases.yaml, providers.csv)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).parent


@dataclass(frozen=True)
class PhraseBank:
    """phrases.yaml: per competency code its (title topics, description cues, aims); the rest by name there."""

    competencies: dict[str, tuple[list[str], list[str], list[str]]]
    mandatory_titles: dict[str, list[str]]
    environment_cues: dict[str, list[str]]
    level_words: list[list[str]]
    format_phrases: dict[str, list[str]]
    practical_phrases: list[str]
    fillers: list[str]


@lru_cache(maxsize=1)
def phrase_bank() -> PhraseBank:
    raw = yaml.safe_load((HERE / "phrases.yaml").read_text(encoding="utf-8"))
    comps = {code: (p["topics"], p["cues"], p["aims"]) for code, p in raw.pop("competencies").items()}
    return PhraseBank(competencies=comps, **raw)


@lru_cache(maxsize=1)
def known_providers() -> tuple[tuple[str, str], ...]:
    """providers.csv: the province's course providers and their kind (university, platform, province)."""
    with (HERE / "providers.csv").open(encoding="utf-8", newline="") as f:
        return tuple((row["provider"], row["kind"]) for row in csv.DictReader(f))


def _pick(options: str | Sequence[str], u: float) -> str:
    seq = options.split("|") if isinstance(options, str) else options
    return seq[min(int(u * len(seq)), len(seq) - 1)]


def course_text(
    codes: list[str],
    level: int,
    fmt: str,
    stage_ctx: str,
    subject_ctx: str,
    provider: str,
    provider_kind: str,
    topic: str | None,
    practical: bool,
    u: np.ndarray,
) -> tuple[str, str]:
    """Title and description composed from the phrase bank of the course's true codes (u: uniform draws)."""
    bank = phrase_bank()
    main = codes[0]
    topics, cue_list, aims = bank.competencies[main]
    topic_phrase = _pick(topics, u[0])
    c1 = cue_list[int(u[1] * len(cue_list))]
    c2 = cue_list[(int(u[1] * len(cue_list)) + 1 + int(u[2] * (len(cue_list) - 1))) % len(cue_list)]
    ctx = f"{stage_ctx}{subject_ctx}"
    level_word = _pick(bank.level_words[level - 1], u[3])
    fam = main.rstrip("0123456789")
    title_forms = (
        f"{ctx}{topic_phrase}",
        f"{topic_phrase}（{level_word}）",
        f"{ctx}{topic_phrase}专题研修",
        f"{topic_phrase}：{c1}与{c2}",
        topic_phrase if topic_phrase.endswith("实务") else f"{topic_phrase}实务",
        f"例说{topic_phrase}",
        f"{topic_phrase}——{ctx or '中小学'}教师{level_word}课程",
    )
    title = title_forms[int(u[4] * len(title_forms))]
    if topic is not None:
        topic_phrase = _pick(bank.mandatory_titles[topic], u[0])
        title = f"【{topic}】{topic_phrase}" if u[5] < 0.6 else f"{topic}专题：{topic_phrase}"

    if fam == "LEAD":
        audience = (
            "幼儿园园长和保教管理人员"
            if stage_ctx == "幼儿园"
            else _pick("中小学校长和学校管理团队|校长、副校长及中层干部|学校管理者", u[6])
        )
    elif fam == "CLS":
        audience = f"{stage_ctx or '中小学'}" + _pick("班主任|班主任和德育干部|班主任及任课教师", u[6])
    elif main == "RES4":
        audience = _pick("骨干教师和学科带头人|县级培训者和骨干教师|名师工作室成员", u[6])
    elif level == 1 and u[6] < 0.35:
        audience = f"{ctx or '中小学'}新入职教师"
    else:
        audience = f"{ctx}教师" if ctx else _pick("中小学教师|全体教师|中小学幼儿园教师", u[6])
    aim = _pick(aims, u[7])
    parts = [
        _pick(
            (
                f"本课程面向{audience}，旨在帮助学员{aim}。",
                f"课程适合{audience}学习，重点解决{c1}和{c2}中的实际问题。",
                f"针对{audience}在{c1}方面的常见困惑，课程帮助大家{aim}。",
                f"{audience}选学课程，目标是{aim}。",
            ),
            u[8],
        )
    ]
    rest = [cue for cue in cue_list if cue not in (c1, c2)]
    cue3 = rest[int(u[9] * len(rest))]
    parts.append(
        _pick(
            (
                f"内容包括{c1}、{c2}和{cue3}等模块，",
                f"课程围绕{c2}与{cue3}展开，结合{2 + int(u[10] * 5)}个典型课例进行剖析，",
                f"从{c1}入手，逐步深入到{cue3}，",
            ),
            u[11],
        )
    )
    if fam in bank.environment_cues:
        parts[-1] = parts[-1] + f"场景以{_pick(bank.environment_cues[fam], u[12])}为主，"
    parts.append(_pick(bank.format_phrases[fmt], u[13]) + "。")
    for j, sec in enumerate(codes[1:]):
        s_topics, s_cues, _ = bank.competencies[sec]
        parts.append(
            _pick(
                (
                    f"课程同时涉及{_pick(s_topics, u[14 + j])}。",
                    f"并兼顾{_pick(s_cues, u[16 + j])}等内容。",
                    f"还将介绍{_pick(s_topics, u[14 + j])}的相关做法。",
                ),
                u[18 + j],
            )
        )
    if topic is not None:
        parts.insert(0, f"本课程为{topic}必修专题。")
    if practical:
        p = _pick(bank.practical_phrases, u[20])
        if p:
            parts.append(p + "。")
    provider_forms = {
        "university": f"主讲团队来自{provider}，|由{provider}学科教学团队开发，|{provider}专家领衔授课，",
        "platform": f"课程由{provider}提供，配有在线测验和学习社区，|{provider}平台课程，|",
        "province": f"{provider}组织遴选的精品课程，|由{provider}统筹开发，|",
        "county": f"由{provider}组织，结合本县乡村学校实际，|{provider}开发的本土化课程，|",
    }
    lead = _pick(provider_forms[provider_kind], u[21])
    parts.append(lead + _pick(bank.fillers, u[22]) if lead else _pick(bank.fillers, u[22]))
    return title, "".join(parts)
