"""Outcome labels (recommender.outcomes) and the blend chosen on them (recommender.ranking)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.pairs import FEATURES
from recommender.outcomes import course_changes, course_outcomes, measured_change, outcome_gain
from recommender.ranking import (
    COURSE_MIXES,
    COURSE_PARTS,
    COURSE_SHARES,
    Blend,
    RankingData,
    blend_scores,
    choose_blend,
    fit_ranker,
    outcome_ndcg,
)

CODES = np.array(["A1", "B1"])
UNIT = (1.0,) * len(COURSE_PARTS)  # every course-level part's spread
COMP = np.array([[1.0, 0.0], [0.5, 0.5]])


def records(**cols: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "teacher_id": ["T1", "T1", "T2"],
        "status": ["completed", "completed", "completed"],
        "start_date": pd.to_datetime(["2023-03-01", "2023-03-01", "2023-03-01"]),
        "end_date": pd.to_datetime(["2023-04-01", "2023-04-01", "2023-04-01"]),
        "satisfaction": [np.nan, np.nan, np.nan],
        "score": [np.nan, np.nan, np.nan],
    }
    base.update(cols)
    return pd.DataFrame(base)


def values() -> pd.DataFrame:
    """T1 assessed before and after on A1 (+6) and B1 (+2), by test; T2 only before; a self-rating of T1 after."""
    rows = [
        ("T1", "A1", "test", "2022-10-01", 40.0),
        ("T1", "A1", "test", "2024-01-01", 46.0),
        ("T1", "B1", "test", "2022-10-01", 50.0),
        ("T1", "B1", "test", "2024-01-01", 52.0),
        ("T1", "A1", "self", "2024-01-01", 90.0),
        ("T2", "A1", "test", "2022-10-01", 30.0),
    ]
    v = pd.DataFrame(rows, columns=["teacher_id", "competency", "source", "taken_at", "value"])
    return v.assign(taken_at=pd.to_datetime(v["taken_at"]))


def test_measured_change_pairs_the_last_assessment_before_with_the_first_after_of_the_same_source() -> None:
    change = measured_change(records(), np.array([0, 1, 0]), COMP, CODES, values())
    assert change[0] == 6.0  # the self-rating after has no self-rating before: not compared
    assert change[1] == 4.0  # half A1 (+6), half B1 (+2)
    assert np.isnan(change[2])  # T2 was not assessed after


def test_outcomes_put_measured_gains_above_losses_a_liked_completion_above_a_plain_one_and_know_no_choice() -> (
    None
):
    r = records(
        teacher_id=["T1", "T2", "T3", "T4", "T5"],
        status=["completed", "completed", "completed", "enrolled", "completed"],
        start_date=pd.to_datetime(["2023-03-01"] * 5),
        end_date=pd.to_datetime(["2023-04-01"] * 5),
        satisfaction=[np.nan, np.nan, 5.0, np.nan, 3.0],
        score=[np.nan] * 5,
    )
    change = np.array([8.0, -3.0, np.nan, np.nan, np.nan])
    gain = outcome_gain(r, change)
    assert gain[0] > gain[1]  # a measured gain over a measured loss
    assert gain[2] > gain[4] and np.isnan(
        gain[3]
    )  # a completion liked over one less liked; the choice alone: unknown


def test_course_changes_shrink_a_course_with_few_measured_takers_toward_the_mean() -> None:
    r = records(teacher_id=["T1", "T1"], status=["completed"] * 2, start_date=pd.to_datetime(["2023-03-01"] * 2),
                end_date=pd.to_datetime(["2023-04-01"] * 2), satisfaction=[np.nan] * 2, score=[np.nan] * 2)  # fmt: skip
    change = measured_change(r, np.array([0, 1]), COMP, CODES, values())
    c = course_changes(change, np.array([0, 1]), n_courses=3)
    assert list(c["n"]) == [1.0, 1.0, 0.0]
    assert c["mean"][0] == 6.0 and np.isnan(c["mean"][2])
    assert c["effect"][1] < c["effect"][0] < c["mean"][0]  # pulled toward the mean of 5


def test_a_course_outcome_leaves_the_common_mean_as_far_as_its_known_outcomes_support() -> None:
    rng = np.random.default_rng(0)
    # thirty ordinary courses (twenty takers each, true means spread 0.3); course 30: one taker at +3; course 31:
    # forty takers around +0.8; course 32: none
    course = np.r_[np.repeat(np.arange(30), 20), 30, np.full(40, 31), 32]
    mean = np.r_[np.repeat(rng.normal(0, 0.3, 30), 20), 3.0, np.full(40, 0.8), np.nan]
    gain = mean + np.r_[rng.normal(0, 1, 600), 0.0, rng.normal(0, 1, 40), 0.0]
    o = course_outcomes(gain, course, n_courses=34)
    assert o["n"][30] == 1.0 and o["n"][31] == 40.0 and o["n"][32] == o["n"][33] == 0.0
    assert o["outcome"][31] > o["outcome"][30] > o["outcome"][32]  # one great outcome counts for little
    # a course nobody finished sits at the courses' common mean, each course counted once: the forty takers of
    # course 31 do not lift it
    course_means = [gain[course == c].mean() for c in range(32) if (course == c).sum() >= 2]
    assert o["outcome"][32] == o["outcome"][33] and abs(o["outcome"][32] - np.mean(course_means)) < 1e-9
    assert o["outcome"][32] < np.nanmean(gain)
    assert o["se"][31] < o["se"][30] < o["se"][32]


def test_the_blend_follows_the_course_level_evidence_that_held_out_outcomes_follow() -> None:
    """Held-out outcomes follow the courses' mean satisfaction, not the need prior: the chosen prior gives the
    course-level evidence most of its weight, and that evidence is the satisfaction alone."""
    rng = np.random.default_rng(0)
    teachers, taken = 400, 4
    row = np.repeat(np.arange(teachers), taken)
    X = pd.DataFrame(rng.normal(size=(len(row), len(FEATURES))), columns=list(FEATURES))
    X["rated"] = 5.0  # every course rated by about 150 teachers: its course-level evidence counts
    liked = X["satisfaction"].to_numpy() + 0.1 * rng.normal(size=len(row))
    blend, metrics = choose_blend(
        np.zeros(len(row)), RankingData(X, row, liked, np.zeros(len(row), dtype=bool)), 1.0, UNIT
    )
    assert blend.course_share > 0.5 and blend.course_mix == COURSE_MIXES[COURSE_PARTS.index("satisfaction")]
    assert metrics["outcome_teachers"] == teachers
    score = blend_scores(blend, np.zeros(len(row)), X, row)
    assert np.corrcoef(score, X["satisfaction"])[0, 1] > 0.8
    # outcomes that follow the need prior keep the course-level evidence out of it
    needed = RankingData(
        X, row, X["need"].to_numpy() + 0.1 * rng.normal(size=len(row)), np.zeros(len(row), dtype=bool)
    )
    assert choose_blend(np.zeros(len(row)), needed, 1.0, UNIT)[0].course_share == 0.0


def test_the_prior_spreads_no_wider_than_its_parts_whatever_the_course_share() -> None:
    """Where evidence is thin the prior ranks alone: whatever the course-level evidence's share and mix, its
    scores keep the unit spread of the learned score, so courses little is known about do not crowd the top by
    scale alone."""
    rng = np.random.default_rng(1)
    row = np.repeat(np.arange(50), 8)
    X = pd.DataFrame(rng.normal(size=(len(row), len(FEATURES))), columns=list(FEATURES))
    X["rated"] = 0.0  # no course rated: evidence 0, the prior alone
    for share in COURSE_SHARES:
        for mix in COURSE_MIXES:
            blend = Blend(4.0, 1.0, 1.0, share, mix, UNIT)
            score = blend_scores(blend, rng.normal(size=len(row)), X, row)
            assert np.std(score) <= 1.0 + 1e-9


def test_outcome_ndcg_rewards_ranking_taken_courses_by_their_outcome_and_ignores_the_rest() -> None:
    row = np.array([0, 0, 0, 1, 1])
    gain = np.array([2.0, 1.0, 0.0, np.nan, 1.0])  # teacher 1 has one known outcome: left out
    good = outcome_ndcg(np.array([3.0, 2.0, 1.0, 9.0, 0.0]), gain, row)
    bad = outcome_ndcg(np.array([1.0, 2.0, 3.0, 9.0, 0.0]), gain, row)
    assert list(good.index) == [0] and good[0] == 1.0 and bad[0] < good[0]


def test_of_blends_the_held_out_outcomes_cannot_tell_apart_the_one_trusting_the_learned_score_least_wins() -> (
    None
):
    """The learned score and the need prior rank held-out outcomes alike (the same signal): no blend is clearly
    better, so the need prior alone is chosen; once the learned score is clearly better, it is trusted."""
    rng = np.random.default_rng(2)
    teachers, taken = 400, 4
    row = np.repeat(np.arange(teachers), taken)
    X = pd.DataFrame(rng.normal(size=(len(row), len(FEATURES))), columns=list(FEATURES))
    X["n_records"], X["rated"] = 20.0, 5.0  # evidence enough for the learned score to count
    gain = rng.normal(size=len(row))
    X["need"] = gain + rng.normal(size=len(row))
    learned = X["need"].to_numpy()
    X[list(COURSE_PARTS)] = 0.0  # nothing known of the courses themselves
    data = RankingData(X, row, gain, np.zeros(len(row), dtype=bool))
    blend, metrics = choose_blend(learned, data, 1.0, UNIT)
    assert (blend.weight, blend.course_share) == (0.0, 0.0)
    assert metrics["outcome_ndcg_best"] == metrics["outcome_ndcg_chosen"]
    sharp = gain + 0.1 * rng.normal(size=len(row))
    assert choose_blend(sharp, data, 1.0, UNIT)[0].weight > 0


def outcome_periods(seed: int, teachers: int = 200) -> list[RankingData]:
    """One period of pairs per teacher: three taken courses whose outcome follows how well the course's format
    suits the teacher (nothing the prior knows), and five untaken ones (no outcome) that are far more popular:
    what teachers chose and what came of it part ways."""
    rng = np.random.default_rng(seed)
    taken, untaken = 3, 5
    row = np.repeat(np.arange(teachers), taken + untaken)
    is_taken = np.tile(np.r_[np.ones(taken, bool), np.zeros(untaken, bool)], teachers)
    X = pd.DataFrame(rng.normal(size=(len(row), len(FEATURES))), columns=list(FEATURES))
    X["popularity"] += np.where(is_taken, 0.0, 3.0)
    X["n_records"], X["rated"] = 20.0, 5.0  # evidence enough for the learned score to count
    gain = np.where(is_taken, X["format_taste"].to_numpy() + 0.3 * rng.normal(size=len(row)), np.nan)
    return [RankingData(X, row, gain, np.zeros(len(row), dtype=bool))]


def test_the_ranker_learns_what_came_of_courses_not_which_were_chosen() -> None:
    ranker, blend, metrics = fit_ranker(outcome_periods(0), 200, seed=0)
    test = outcome_periods(1)[0]
    score = ranker.predict(test.X[list(FEATURES)])
    assert np.corrcoef(score, test.X["format_taste"])[0, 1] > 0.8
    assert abs(np.corrcoef(score, test.X["popularity"])[0, 1]) < 0.2
    # held-out outcomes follow the learned score, not the need prior (noise here): the blend trusts the score
    assert blend.weight > 0 and metrics["outcome_teachers"] >= 30


def test_a_bundle_blend_from_before_the_outcome_model_keeps_its_need_scale() -> None:
    old = {"weight": 2.0, "sd_learned": 0.5, "shares": [0.25, 0.75, 0.0], "sds": [9.0, 0.4, 1.7]}
    assert Blend.from_dict(old) == Blend(2.0, 0.5, 9.0)
    mixed = Blend(1.0, 0.3, 8.0, 0.5, (0.5, 0.5, 0.0, 0.0), (0.4, 0.2, 0.1, 1.5), (0.1, 4.2, 0.8, 2.0))
    assert Blend.from_dict(mixed.as_dict()) == mixed
    # a bundle from before the course mix: the course outcome alone, on its own scale
    before = {"weight": 1.0, "sd_learned": 0.3, "sd_need": 8.0, "course_share": 0.5, "sd_outcome": 0.4}
    assert Blend.from_dict(before) == Blend(1.0, 0.3, 8.0, 0.5, (1.0, 0.0, 0.0, 0.0), (0.4, 1.0, 1.0, 1.0))
    assert Blend.from_dict({"weight": 1.0, "sd_learned": 0.3, "sd_need": 8.0}).course_share == 0.0


def test_with_no_outcome_known_yet_the_need_prior_ranks_alone() -> None:
    (period,) = outcome_periods(0, teachers=60)
    running = RankingData(
        period.X, period.row, np.full(len(period.row), np.nan), np.zeros(len(period.row), dtype=bool)
    )
    _, blend, metrics = fit_ranker([running], 60, seed=0)
    assert blend.weight == 0.0 and metrics["outcome_teachers"] == 0


def test_a_course_few_have_rated_cannot_top_the_prior_on_a_few_good_marks() -> None:
    """Two raters' perfect marks count for less than two hundred raters' nearly perfect ones: a course-level
    part counts as far as the course's ratings back it."""
    row = np.repeat(np.arange(20), 3)
    X = pd.DataFrame(np.zeros((len(row), len(FEATURES))), columns=list(FEATURES))
    X["satisfaction"] = np.tile([5.0, 4.8, 3.0], 20)
    X["rated"] = np.log1p(np.tile([2.0, 200.0, 200.0], 20))
    sat = COURSE_MIXES[COURSE_PARTS.index("satisfaction")]
    blend = Blend(0.0, 1.0, 1.0, 1.0, sat, UNIT, (4.0,) * len(COURSE_PARTS))  # training pairs' mean 4
    score = blend_scores(blend, np.zeros(len(row)), X, row)
    assert (score[1::3] > score[0::3]).all() and (score[0::3] > score[2::3]).all()
    # a teacher's scores do not depend on who else is scored beside them
    alone = blend_scores(blend, np.zeros(3), X.iloc[:3].reset_index(drop=True), np.zeros(3, dtype=np.int64))
    assert np.allclose(alone, score[:3])
