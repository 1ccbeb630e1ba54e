"""The need prior (features.need): relevance by role and career stage, expected shortfall, level fit."""

from __future__ import annotations

import numpy as np

from features.need import level_fit, need_matrix, plain_rule, relevance, shortfall

CODES = np.array(["DES1", "LEAD4", "CLS1", "RES4", "KNW4"])


def test_a_new_class_teachers_priority_is_not_leadership_but_a_principals_may_be() -> None:
    rel = relevance(
        CODES,
        np.array(["primary", "primary"]),
        np.array(["novice", "backbone"]),
        [frozenset({"head_teacher"}), frozenset({"principal"})],
    )
    novice, principal = rel
    assert novice[1] < novice[0] and novice[1] < 0.5  # 信息化领导力 matters little to a new class teacher
    assert principal[1] == 1.0
    assert novice[2] == 1.0 and principal[2] < 1.0  # class management is the head teacher's
    assert novice[3] < principal[3]  # mentoring young teachers is for the experienced


def test_early_years_care_matters_in_kindergarten_and_little_in_senior_school() -> None:
    rel = relevance(
        CODES, np.array(["kindergarten", "senior"]), np.array(["developing"] * 2), [frozenset()] * 2
    )
    assert rel[0, 4] == 1.0 and rel[1, 4] < 0.2


def test_shortfall_counts_need_under_uncertainty_and_none_when_surely_above_target() -> None:
    est = np.array([40.0, 70.0, 70.0, 95.0])
    se = np.array([1e-6, 1e-6, 10.0, 1.0])
    s = shortfall(est, se, target=70.0)
    assert s[0] == np.float64(30.0)
    assert s[1] < 1e-3 < s[2]  # at the target: no need if sure, some if not
    assert s[3] < 1e-6


def test_level_fit_peaks_where_the_course_level_suits_the_estimate() -> None:
    assert level_fit(1.0, np.array([35.0]))[0] == 1.0
    assert level_fit(3.0, np.array([75.0]))[0] == 1.0
    assert level_fit(3.0, np.array([35.0]))[0] < level_fit(2.0, np.array([35.0]))[0] < 1.0


def test_need_matrix_weighs_each_course_by_its_competencies_and_level() -> None:
    est = np.array([[35.0, 75.0]])  # weak on the first competency, strong on the second
    base = shortfall(est, np.full_like(est, 1e-6), target=70.0)
    comp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    level = np.array([1.0, 3.0, 1.0])
    need = need_matrix(base, est, comp, level)
    assert need[0, 0] > need[0, 1] > need[0, 2] == 0.0  # the right level first; no need where strong
    assert np.allclose(plain_rule(base, est, comp, level), need)
