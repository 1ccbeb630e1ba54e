"""Learned ranker (排序模型): LightGBM LambdaRank over pair features, grouped per teacher.

scikit-learn style: parameters in `__init__`, `fit` returns self, learned state ends in `_`; saved as the
booster's text model plus a JSON of its feature list and metrics. Scoring goes through the booster compiled into a
`Forest` (models/forest.py), which gives LightGBM's scores bit for bit in less time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from data.workspace import atomic_write, write_text_atomic
from models.forest import compile_forest


class Ranker:
    """A gradient-boosted scorer of (teacher, course) pairs, early-stopped on a later period: LambdaRank over
    graded labels grouped per teacher (`objective="lambdarank"`), or a pointwise regression of a continuous
    outcome (`objective="regression"`, no groups)."""

    def __init__(
        self,
        objective: str = "lambdarank",
        n_estimators: int = 300,
        learning_rate: float = 0.1,
        num_leaves: int = 31,
        min_child_samples: int = 40,
        early_stopping_rounds: int = 30,
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.objective = objective
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        group: np.ndarray | None,
        eval_set: tuple[pd.DataFrame, np.ndarray, np.ndarray | None] | None = None,
    ) -> Ranker:
        """Fit on rows grouped per query (`group` = sizes of consecutive groups; None for a regression); early
        stopping on `eval_set`."""
        ranking = self.objective == "lambdarank"
        estimator = lgb.LGBMRanker if ranking else lgb.LGBMRegressor
        model = estimator(
            objective=self.objective,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        kwargs: dict[str, Any] = {}
        if eval_set is not None:
            Xv, yv, gv = eval_set
            kwargs = {
                "eval_X": (Xv,),
                "eval_y": (yv,),
                "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            }
            if ranking:
                kwargs |= {"eval_group": [gv], "eval_at": [10]}
        if ranking:
            kwargs["group"] = group
        model.fit(X, y, **kwargs)
        self.booster_ = model.booster_
        self.features_ = list(X.columns)
        self.best_iteration_ = int(model.best_iteration_ or model.n_estimators)
        self.forest_ = compile_forest(self.booster_, self.best_iteration_)
        best = model.best_score_.get("valid_0", {}) if eval_set is not None else {}
        self.metrics_ = {k: float(v) for k, v in best.items()}
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Scores of the rows of `X` (columns exactly `features_`), equal to the booster's at `best_iteration_`."""
        if list(X.columns) != self.features_:
            raise ValueError(f"ranker expects features {self.features_}, got {list(X.columns)}")
        return self.forest_.predict(X.to_numpy(dtype=np.float64))

    def feature_importance(self) -> pd.Series:
        gain = self.booster_.feature_importance(importance_type="gain", iteration=self.best_iteration_)
        return pd.Series(gain, index=self.features_).sort_values(ascending=False)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "ranker.txt", lambda p: self.booster_.save_model(str(p)))
        meta = {
            "objective": self.objective,
            "features": self.features_,
            "best_iteration": self.best_iteration_,
            "metrics": self.metrics_,
        }
        write_text_atomic(folder / "ranker.json", json.dumps(meta, ensure_ascii=False, indent=2))

    @classmethod
    def load(cls, folder: Path) -> Ranker:
        meta = json.loads((folder / "ranker.json").read_text(encoding="utf-8"))
        ranker = cls(objective=meta.get("objective", "lambdarank"))
        ranker.booster_ = lgb.Booster(model_file=str(folder / "ranker.txt"))
        ranker.features_ = list(meta["features"])
        ranker.best_iteration_ = int(meta["best_iteration"])
        ranker.metrics_ = dict(meta["metrics"])
        ranker.forest_ = compile_forest(ranker.booster_, ranker.best_iteration_)
        return ranker
