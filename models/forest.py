"""Compiled tree ensemble (编译后的树模型): a LightGBM booster flattened into numpy arrays and scored by a numba
kernel that walks four rows at a time without branching on the data.

Scores are bit-identical to ``Booster.predict(X, num_iteration=..., raw_score=True)``: every split replays LightGBM's
``Tree::NumericalDecision`` (tree.h) and the trees are summed in order in float64. Three details of LightGBM are folded
into the arrays at compile time so that the kernel stays a single comparison per node:

* LightGBM reads a value with ``|v| <= kZeroThreshold`` as 0.0 before it reaches the trees, so a threshold inside that
  band is moved to where the comparison on the raw value gives the same side;
* the JSON dump writes a threshold with ``|t| >= 1e300`` as ±1e300 (``AvoidInf``), and a split that only separates
  NaN has threshold +inf, so thresholds are read from the model text, which keeps them exactly;
* a split with missing type ``Zero`` (sends NaN and values read as 0.0 to its default side) is not a single
  comparison, so it is compiled into three plain nodes that share the original children (the arrays form a DAG).

Only numerical splits and constant leaves are supported; categorical splits, linear trees, multiclass and
random-forest boosters raise ``NotImplementedError`` when compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Node = dict[str, Any]

# LightGBM's kZeroThreshold is the float literal 1e-35f widened to double (meta.h).
ZERO_THRESHOLD = float(np.float32(1e-35))
# `v > BELOW_ZERO_BAND` is `v >= -ZERO_THRESHOLD`.
BELOW_ZERO_BAND = float(np.nextafter(-ZERO_THRESHOLD, -np.inf))


@dataclass(frozen=True)
class Forest:
    """A tree ensemble as flat per-node arrays; node ``k`` sends row ``x`` to ``child[2*k + right]`` where
    ``right = x[feature[k]] > threshold[k] or (isnan(x[feature[k]]) and nan_right[k])``.

    A leaf has feature 0, threshold +inf and points to itself on both sides, so a walk that has reached it stays.
    ``roots[t]`` is the first node of tree ``t``; the score of a row is the sum of its leaf values over the trees.
    """

    feature: IntArray
    threshold: FloatArray
    child: IntArray
    nan_right: BoolArray
    leaf: BoolArray
    value: FloatArray
    roots: IntArray
    n_features: int

    @property
    def n_trees(self) -> int:
        return int(self.roots.size)

    def predict(self, X: npt.ArrayLike) -> FloatArray:
        """Raw scores of the rows of ``X`` (n, n_features), equal bit for bit to LightGBM's raw scores."""
        data = np.ascontiguousarray(X, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.n_features:
            raise ValueError(f"forest expects an (n, {self.n_features}) matrix, got shape {data.shape}")
        return _predict(
            data, self.roots, self.feature, self.threshold, self.child, self.nan_right, self.leaf, self.value
        )


def compile_forest(booster: lgb.Booster, num_iteration: int | None = None) -> Forest:
    """Flatten the first ``num_iteration`` iterations of ``booster`` (LightGBM's meaning: None for the best
    iteration, or all of them where there is none; <= 0 for all of them)."""
    dump = booster.dump_model(num_iteration=num_iteration)
    _check_supported(dump)
    thresholds = text_thresholds(booster.model_to_string(num_iteration=num_iteration))
    if len(thresholds) != len(dump["tree_info"]):
        raise RuntimeError(f"model text has {len(thresholds)} trees, its dump {len(dump['tree_info'])}")
    builder = _Builder()
    roots = [
        builder.add_tree(info["tree_structure"], tree_thresholds)
        for info, tree_thresholds in zip(dump["tree_info"], thresholds, strict=True)
    ]
    return builder.build(np.asarray(roots, dtype=np.int64), int(dump["max_feature_idx"]) + 1)


def text_thresholds(model_text: str) -> list[list[float]]:
    """Each tree's split thresholds, indexed by the dump's ``split_index``, from LightGBM's model text."""
    trees: list[list[float]] = []
    for line in model_text.splitlines():
        if line.startswith("Tree="):
            trees.append([])
        elif line.startswith("threshold=") and trees:
            trees[-1] = [float(field) for field in line.removeprefix("threshold=").split()]
    return trees


def effective_threshold(threshold: float) -> float:
    """The threshold that sends a raw value the way LightGBM sends it after reading ``|v| <= kZeroThreshold``
    as 0.0: the band goes left when ``0.0 <= threshold`` and right otherwise; values outside it are unchanged."""
    if -ZERO_THRESHOLD <= threshold < 0.0:
        return BELOW_ZERO_BAND
    if 0.0 <= threshold < ZERO_THRESHOLD:
        return ZERO_THRESHOLD
    return threshold


def _check_supported(dump: dict[str, Any]) -> None:
    if int(dump.get("num_tree_per_iteration", 1)) != 1:
        raise NotImplementedError("compile_forest supports one tree per iteration (no multiclass boosters)")
    if dump.get("average_output", False):
        raise NotImplementedError("compile_forest does not support averaged output (boosting='rf')")


def _is_leaf(node: Node) -> bool:
    return "leaf_value" in node


def _check_node(node: Node) -> None:
    if _is_leaf(node):
        if "leaf_coeff" in node or "leaf_const" in node:
            raise NotImplementedError("compile_forest does not support linear trees (linear_tree=True)")
    elif node["decision_type"] != "<=":
        raise NotImplementedError(
            f"compile_forest supports numerical splits only, got decision type {node['decision_type']!r} "
            f"on feature {node['split_feature']} (categorical features are not supported)"
        )


class _Builder:
    """Accumulates nodes tree by tree; child slots are filled in when the child is appended."""

    def __init__(self) -> None:
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.child: list[int] = []
        self.nan_right: list[bool] = []
        self.leaf: list[bool] = []
        self.value: list[float] = []

    def add_tree(self, root: Node, thresholds: list[float]) -> int:
        """Append one tree in pre-order (left subtree first) and return the index of its root; ``thresholds``
        are the tree's exact thresholds by split index."""
        first = len(self.leaf)
        stack: list[tuple[Node, list[int]]] = [(root, [])]
        while stack:
            node, slots = stack.pop()
            _check_node(node)
            index = len(self.leaf)
            for slot in slots:
                self.child[slot] = index
            if _is_leaf(node):
                self._append(0, np.inf, False, leaf=True, value=float(node["leaf_value"]))
                continue
            left, right = self._append_split(node, thresholds[int(node["split_index"])])
            stack.append((node["right_child"], right))
            stack.append((node["left_child"], left))
        return first

    def _append(
        self, feature: int, threshold: float, nan_right: bool, leaf: bool = False, value: float = 0.0
    ) -> int:
        index = len(self.leaf)
        self.feature.append(feature)
        self.threshold.append(threshold)
        self.child.extend((index, index))
        self.nan_right.append(nan_right)
        self.leaf.append(leaf)
        self.value.append(value)
        return index

    def _append_split(self, node: Node, threshold: float) -> tuple[list[int], list[int]]:
        """Append the node(s) of one split; return the child slots its left and its right subtree must fill."""
        feature = int(node["split_feature"])
        default_left = bool(node["default_left"])
        missing = node["missing_type"]
        if missing == "None":  # NaN is read as 0.0, which goes right iff 0.0 > threshold
            k = self._append(feature, effective_threshold(threshold), threshold < 0.0)
            return [2 * k], [2 * k + 1]
        if missing == "NaN":  # NaN goes to the default side
            k = self._append(feature, effective_threshold(threshold), not default_left)
            return [2 * k], [2 * k + 1]
        if missing == "Zero":  # NaN and |v| <= kZeroThreshold go to the default side
            return self._append_zero_split(feature, threshold, default_left)
        raise NotImplementedError(f"unknown missing type {missing!r}")

    def _append_zero_split(
        self, feature: int, threshold: float, default_left: bool
    ) -> tuple[list[int], list[int]]:
        """A 'Zero' split as three nodes: ``a`` asks v > kZeroThreshold (yes: ``b``, no or NaN: ``c``); ``c`` asks
        v >= -kZeroThreshold (yes or NaN: the default child, no: ``b``); ``b`` is the plain comparison."""
        a = self._append(feature, ZERO_THRESHOLD, False)
        b = self._append(feature, effective_threshold(threshold), False)
        c = self._append(feature, BELOW_ZERO_BAND, True)
        self.child[2 * a] = c
        self.child[2 * a + 1] = b
        self.child[2 * c] = b
        default_slot = [2 * c + 1]
        left, right = [2 * b], [2 * b + 1]
        return (left + default_slot, right) if default_left else (left, right + default_slot)

    def build(self, roots: IntArray, n_features: int) -> Forest:
        return Forest(
            feature=np.asarray(self.feature, dtype=np.int64),
            threshold=np.asarray(self.threshold, dtype=np.float64),
            child=np.asarray(self.child, dtype=np.int64),
            nan_right=np.asarray(self.nan_right, dtype=np.bool_),
            leaf=np.asarray(self.leaf, dtype=np.bool_),
            value=np.asarray(self.value, dtype=np.float64),
            roots=roots,
            n_features=n_features,
        )


@njit(cache=True)
def _predict(
    X: FloatArray,
    roots: IntArray,
    feature: IntArray,
    threshold: FloatArray,
    child: IntArray,
    nan_right: BoolArray,
    leaf: BoolArray,
    value: FloatArray,
) -> FloatArray:
    """Sum of leaf values per row; four rows walk each tree together, each step a branch-free child lookup."""
    n = X.shape[0]
    out = np.zeros(n)
    n4 = n - n % 4
    for i in range(0, n4, 4):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for t in range(roots.size):
            k0 = roots[t]
            k1 = k0
            k2 = k0
            k3 = k0
            while not (leaf[k0] and leaf[k1] and leaf[k2] and leaf[k3]):
                v0 = X[i, feature[k0]]
                v1 = X[i + 1, feature[k1]]
                v2 = X[i + 2, feature[k2]]
                v3 = X[i + 3, feature[k3]]
                k0 = child[2 * k0 + ((v0 > threshold[k0]) | (np.isnan(v0) & nan_right[k0]))]
                k1 = child[2 * k1 + ((v1 > threshold[k1]) | (np.isnan(v1) & nan_right[k1]))]
                k2 = child[2 * k2 + ((v2 > threshold[k2]) | (np.isnan(v2) & nan_right[k2]))]
                k3 = child[2 * k3 + ((v3 > threshold[k3]) | (np.isnan(v3) & nan_right[k3]))]
            a0 += value[k0]
            a1 += value[k1]
            a2 += value[k2]
            a3 += value[k3]
        out[i] = a0
        out[i + 1] = a1
        out[i + 2] = a2
        out[i + 3] = a3
    for i in range(n4, n):
        a = 0.0
        for t in range(roots.size):
            k = roots[t]
            while not leaf[k]:
                v = X[i, feature[k]]
                k = child[2 * k + ((v > threshold[k]) | (np.isnan(v) & nan_right[k]))]
            a += value[k]
        out[i] = a
    return out
