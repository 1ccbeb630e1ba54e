"""Classes (50人编班): sizes as equal as possible, classes that share needs, counties spread evenly."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.selection import (
    class_sizes,
    form_classes,
    random_spread,
    spread,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 80))
def test_class_sizes_are_as_equal_as_possible_and_never_above_class_size(n: int, class_size: int) -> None:
    sizes = class_sizes(n, class_size)
    assert sizes.sum() == n
    assert len(sizes) == -(-n // class_size)
    if n:
        assert sizes.max() <= class_size and sizes.max() - sizes.min() <= 1


def test_classes_of_fifty_for_360_trainees_are_eight_classes_of_45() -> None:
    assert class_sizes(360, 50).tolist() == [45] * 8


def test_classes_group_teachers_with_the_same_needs() -> None:
    rng = np.random.default_rng(0)
    # 60 teachers weak in the first competency, 40 weak in the second: two classes of 50
    it_gap = np.c_[rng.normal(40, 2, 60), rng.normal(5, 2, 60)]
    ethics_gap = np.c_[rng.normal(5, 2, 40), rng.normal(40, 2, 40)]
    label = form_classes(np.r_[it_gap, ethics_gap], class_size=50)
    assert np.bincount(label).tolist() == [50, 50]
    # the 40 of the second kind share one class, with the ten most similar of the first kind
    assert len(set(label[60:])) == 1
    assert (label[:60] != label[60]).sum() == 50


def test_mixed_classes_spread_every_county_evenly() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(130, 4))
    county = np.repeat([0, 1, 2], [70, 40, 20])
    label = form_classes(features, class_size=50, groups=county)
    counts = pd.crosstab(label, county).to_numpy()
    assert counts.sum(axis=1).tolist() == [44, 43, 43]
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()


def test_classes_are_more_homogeneous_than_a_random_split() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 6)) * [8, 6, 4, 3, 2, 1]
    label = form_classes(features, class_size=50)
    assert spread(features, label) < 0.8 * random_spread(features, label)
