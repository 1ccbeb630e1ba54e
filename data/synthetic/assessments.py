"""Assessments: an item bank with a Q-matrix, responses from a compensatory M2PL, scale-level scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from data.synthetic.common import (
    HISTORY_YEARS,
    SELF_RATING_BIAS,
    SELF_RATING_SD,
    choice,
    day_number,
    sigmoid,
    to_display,
)
from data.synthetic.growth import training_start
from data.synthetic.teachers import Teachers
from data.synthetic.utility import code_family


@dataclass(frozen=True)
class ItemBank:
    ids: np.ndarray
    comp_idx: np.ndarray  # I × 2, padded with K
    a: np.ndarray  # I × 2 discriminations (0 for padding)
    b: np.ndarray  # intercept: P = sigmoid(Σ a θ − b)
    max_score: np.ndarray
    forms: np.ndarray  # n_forms × items_per_form item indices


ITEMS_PER_CODE = 6
# share of wave-2 participants (and of the others) assessed at wave 1 too, among teachers who taught then
WAVE1_SHARE_ASSESSED, WAVE1_SHARE_OTHERS = 0.65, 0.2
# sd of the day-of-test state (θ): about 4 display points of transient error shared by a day's measures
STATE_SD = 0.25
EXTRA_ITEMS_PER_FORM = 30
N_FORMS = 6


def make_items(codes: Sequence[str], domains: np.ndarray, rng: np.random.Generator) -> ItemBank:
    k = len(codes)
    n_items = max(300, ITEMS_PER_CODE * k)
    primary = rng.permutation(np.resize(np.arange(k), n_items))
    second = np.full(n_items, k, dtype=np.int64)
    two = rng.random(n_items) < 0.3
    same_dom = rng.random(n_items) < 0.7
    other = rng.integers(0, k, n_items)
    for d in np.unique(domains):
        members = np.flatnonzero(domains == d)
        m = two & same_dom & (domains[primary] == d)
        other[m] = members[rng.integers(0, len(members), m.sum())]
    second[two & (other != primary)] = other[two & (other != primary)]
    a1 = rng.lognormal(np.log(1.6), 0.25, n_items)
    a2 = np.where(second < k, rng.uniform(0.4, 0.8, n_items), 0.0)
    b = a1 * rng.normal(-0.4, 0.8, n_items)
    max_score = np.where(
        rng.random(n_items) < 0.3, 2 + choice(rng, np.array([0.35, 0.3, 0.2, 0.15]), n_items), 1
    )
    by_code = [np.flatnonzero(primary == j) for j in range(k)]
    forms = np.empty((N_FORMS, k + EXTRA_ITEMS_PER_FORM), dtype=np.int64)
    for f in range(N_FORMS):
        # each form takes a different item of every competency, so every item is answered by someone
        core = np.array([items[(f + j) % len(items)] for j, items in enumerate(by_code)])
        rest = np.setdiff1d(np.arange(n_items), core)
        extra = rng.choice(rest, EXTRA_ITEMS_PER_FORM, replace=False)
        forms[f] = np.sort(np.concatenate([core, extra]))
    return ItemBank(
        ids=np.array([f"I{i + 1:04d}" for i in range(n_items)]),
        comp_idx=np.stack([primary, second], axis=1),
        a=np.stack([a1, a2], axis=1),
        b=b,
        max_score=max_score.astype(np.int64),
        forms=forms,
    )


@dataclass(frozen=True)
class AssessmentPlan:
    """Who is assessed on which day, in two waves: wave 1 in the autumn before the training period (teachers who
    already taught then), wave 2 in its last eighteen months (about 27 % of teachers are never assessed, some
    only once).

    day: 2 × n day numbers (drawn for everybody; meaningful where `assessed`), assessed: 2 × n bool, form: each
    teacher's test form — the same at both waves, so a later answer replaces the earlier one item by item —,
    state: 2 × n × K θ, the day-of-test deviation every measure of that day shares (transient measurement
    error: who looked weak on the day partly regresses to the mean by the next wave)."""

    day: np.ndarray
    assessed: np.ndarray
    form: np.ndarray
    state: np.ndarray


def plan_assessments(
    t: Teachers, k: int, rng: np.random.Generator, rng_waves: np.random.Generator, as_of: date
) -> AssessmentPlan:
    n = len(t.ids)
    p_never = 0.27 + np.array([0.06, 0.0, -0.05])[t.school_type] + 0.05 * (t.stage == 0)
    assessed2 = rng.random(n) >= p_never
    day2 = np.asarray(day_number(as_of) - rng.integers(20, 540, n))
    form = rng.integers(0, N_FORMS, n)
    taught_then = t.years >= HISTORY_YEARS
    share1 = np.where(assessed2, WAVE1_SHARE_ASSESSED, WAVE1_SHARE_OTHERS)
    assessed1 = taught_then & (rng_waves.random(n) < share1)
    day1 = np.asarray(day_number(training_start(as_of)) - rng_waves.integers(10, 150, n))
    state = rng_waves.normal(0.0, STATE_SD, (2, n, k)).astype(np.float32)
    return AssessmentPlan(np.stack([day1, day2]), np.stack([assessed1, assessed2]), form, state)


def make_responses(
    plan: AssessmentPlan, theta_waves: Sequence[np.ndarray], bank: ItemBank, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Item responses of each wave (theta_waves: the true n × K competencies on each teacher's day of that
    wave, plus the day's state), ordered by teacher, date and item."""
    k = theta_waves[0].shape[1]
    loadings = np.zeros((k + 1, len(bank.ids)), dtype=np.float32)
    cols = np.arange(len(bank.ids))
    loadings[bank.comp_idx[:, 0], cols] += bank.a[:, 0]
    loadings[bank.comp_idx[:, 1], cols] += bank.a[:, 1]
    loadings = loadings[:k]
    # an empty block first, so that a province where nobody is assessed still concatenates; narrow integer
    # types, since a province of 100 000 teachers answers some ten million items
    out_t, out_i, out_s, out_w = (
        [np.empty(0, np.int32)],
        [np.empty(0, np.int32)],
        [np.empty(0, np.int8)],
        [np.empty(0, np.int8)],
    )
    for wave, theta in enumerate(theta_waves):
        measured = theta + plan.state[wave]
        for f in range(N_FORMS):
            who = np.flatnonzero(plan.assessed[wave] & (plan.form == f)).astype(np.int32)
            items = bank.forms[f].astype(np.int32)
            for lo in range(0, len(who), 20_000):
                w = who[lo : lo + 20_000]
                p = sigmoid(measured[w] @ loadings[:, items] - bank.b[items][None, :])
                scores = rng.binomial(bank.max_score[items][None, :], p)
                out_t.append(np.repeat(w, len(items)))
                out_i.append(np.tile(items, len(w)))
                out_s.append(scores.ravel().astype(np.int8))
                out_w.append(np.full(len(w) * len(items), wave, dtype=np.int8))
    t_idx, item, wave_of, score = (np.concatenate(part) for part in (out_t, out_i, out_w, out_s))
    del out_t, out_i, out_w, out_s
    order = np.lexsort((item, wave_of, t_idx))
    t_idx, wave_of = t_idx[order], wave_of[order]
    return {
        "teacher": t_idx,
        "item": item[order],
        "score": score[order],
        "taken": plan.day[wave_of, t_idx],
    }


def wave_scale_scores(
    plan: AssessmentPlan,
    theta_waves: Sequence[np.ndarray],
    codes: Sequence[str],
    stage: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """make_scale_scores for each wave (on the day's measured competencies), ordered by teacher, date, source
    and competency."""
    waves = [
        make_scale_scores(theta + plan.state[w], plan.assessed[w], plan.day[w], codes, stage, rng)
        for w, theta in enumerate(theta_waves)
    ]
    joined = {key: np.concatenate([part[key] for part in waves]) for key in waves[0]}
    wave_of = np.concatenate([np.full(len(part["teacher"]), w) for w, part in enumerate(waves)])
    order = np.lexsort((joined["code"], joined["source"], wave_of, joined["teacher"]))
    return {key: v[order] for key, v in joined.items()}


def make_scale_scores(
    theta: np.ndarray,
    assessed: np.ndarray,
    taken: np.ndarray,
    codes: Sequence[str],
    stage: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Self-ratings (inflated by SELF_RATING_BIAS points, noisy), classroom observations and tests."""
    n, k = theta.shape
    fam = code_family(codes)
    codes_arr = np.asarray(codes)
    display = to_display(theta)
    none = np.empty(0, np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = [
        (none, none, none * 1.0, none, 0)
    ]

    def draw(
        who: np.ndarray, pool: np.ndarray, per: int, bias: float, sd: float, source: int, lag: int
    ) -> None:
        if len(who) == 0 or len(pool) == 0:
            return
        per = min(per, len(pool))
        pick = pool[np.argsort(rng.random((len(who), len(pool))), axis=1)[:, :per]]
        tt = np.repeat(who, per)
        cc = pick.ravel()
        score = np.clip(display[tt, cc] + bias + rng.normal(0, sd, len(tt)), 0, 100)
        when = taken[tt] - lag
        parts.append((tt, cc, np.round(score, 1), when, source))

    self_who = np.flatnonzero(assessed & (rng.random(n) < 0.8))
    draw(self_who, np.arange(k), 12, SELF_RATING_BIAS, SELF_RATING_SD, 0, 7)
    obs_pool = np.flatnonzero(np.isin(fam, ("DES", "EVA", "CLS", "A")))
    draw(np.flatnonzero(assessed & (rng.random(n) < 0.25)), obs_pool, 6, 0.0, 6.0, 1, -30)
    test_who = np.flatnonzero(assessed & (rng.random(n) < 0.3))
    for kg in (True, False):
        pool = np.flatnonzero(np.isin(codes_arr, ("KNW2", "KNW3", "KNW4" if kg else "KNW1")))
        draw(test_who[(stage[test_who] == 0) == kg], pool, 3, 0.0, 5.0, 2, 0)
    tt = np.concatenate([p[0] for p in parts])
    cc = np.concatenate([p[1] for p in parts])
    src = np.concatenate([np.full(len(p[0]), p[4]) for p in parts])
    order = np.lexsort((cc, src, tt))
    return {
        "teacher": tt[order],
        "code": cc[order],
        "score": np.concatenate([p[2] for p in parts])[order],
        "taken": np.concatenate([p[3] for p in parts])[order],
        "source": src[order],
    }
