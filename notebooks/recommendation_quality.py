# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 推荐质量评估 Recommendation quality
#
# 本笔记本对一个已训练的工作区做离线评估（与 `tdr evaluate` 相同的代码）：
#
# 1. 与隐藏真值比较的 NDCG@10：TDR 排序模型与各基线方法（热门、BM25、向量、差距、协同过滤、随机）；
# 2. 按教师分组（城乡、职业阶段、是否测评）的 NDCG；
# 3. 选学菜单的构成与政策合规情况；
# 4. 排序模型的特征重要性。
#
# 设置：环境变量 `TDR_NOTEBOOK_WORKSPACE`（工作区目录），可选 `TDR_NOTEBOOK_TRUTH`（合成省份的 `_truth` 目录）、
# `TDR_NOTEBOOK_MAX_TEACHERS`（评估的教师数上限）。

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib import font_manager

from data.workspace import Workspace
from recommender.evaluate import evaluate
from recommender.explain import FORMAT_ZH

WORKSPACE = Path(os.environ.get("TDR_NOTEBOOK_WORKSPACE", "workspace/demo"))
TRUTH = os.environ.get("TDR_NOTEBOOK_TRUTH")
MAX_TEACHERS = int(os.environ.get("TDR_NOTEBOOK_MAX_TEACHERS", "2000"))

# Chinese labels need a CJK font (Debian: fonts-noto-cjk); without one they would render as boxes.
CJK = [f.name for f in font_manager.fontManager.ttflist if "CJK" in f.name or "WenQuanYi" in f.name]
plt.rcParams["font.sans-serif"] = sorted(set(CJK), key=lambda n: ("Sans" not in n, n)) + ["DejaVu Sans"]
plt.rcParams["axes.unicode_minus"] = False

report = evaluate(Workspace.open(WORKSPACE), Path(TRUTH) if TRUTH else None, max_teachers=MAX_TEACHERS)
print(
    f"模型版本 {report['bundle']}，评估教师 {report['teachers_evaluated']:,} / {report['teachers_in_workspace']:,} 位"
)

# %% [markdown]
# ## 1. 排序质量：TDR 与基线

# %%
METHOD_ZH = {
    "tdr": "TDR 排序模型",
    "rule": "差距×层级匹配规则（无学习）",
    "need_rating": "需求+评分（未调参）",
    "satisfaction": "平均满意度",
    "popularity": "热门课程",
    "bm25": "BM25 词匹配",
    "embedding": "向量相似",
    "gap": "能力差距（无学习）",
    "item_knn": "协同过滤 item-kNN",
    "random": "随机（可选课程）",
}
ranking = report.get("ranking")
if ranking:
    table = pd.DataFrame(ranking["methods"]).T.rename(index=METHOD_ZH)
    table = table.rename(columns={"mean": ranking["metric"], "se": "标准误", "teachers": "教师数"})
    display(table.round(4))  # noqa: F821
    print(
        f"TDR / 最佳基线（{METHOD_ZH[ranking['best_baseline']]}）= {ranking['ratio_to_best_baseline']:.2f}；"
        f"TDR / max(热门, 随机) = {ranking['ratio_to_popularity_or_random']:.2f}"
    )
else:
    print("未提供真值目录：只报告不需要真值的指标。排序模型验证集指标：", report["ranker"]["validation"])

# %% [markdown]
# ## 2. 按教师分组的 NDCG@10

# %%
GROUP_ZH = {
    "by_school_type": "城乡类型",
    "by_career_stage": "职业阶段",
    "by_assessed": "是否测评",
}
LABEL_ZH = {
    "rural": "乡村",
    "town": "镇区",
    "urban": "城区",
    "novice": "新入职",
    "developing": "成长期",
    "backbone": "骨干",
    "expert": "专家",
    "assessed": "已测评",
    "prior": "未测评（先验）",
}
if ranking:
    fig, axes = plt.subplots(1, len(GROUP_ZH), figsize=(15, 4), sharey=True)
    for ax, (key, title) in zip(axes, GROUP_ZH.items(), strict=True):
        groups = pd.DataFrame(ranking[key]).T.drop(columns="teachers")
        order = [g for g in LABEL_ZH if g in groups.index] + [g for g in groups.index if g not in LABEL_ZH]
        groups = groups.loc[order, ["tdr", ranking["best_baseline"], "popularity", "random"]].rename(
            index=LABEL_ZH, columns=METHOD_ZH
        )
        groups.plot.bar(ax=ax, rot=0, legend=ax is axes[-1])
        ax.set_title(f"按{title}")
        ax.set_ylabel(ranking["metric"])
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 3. 选学菜单：合规与构成

# %%
menus = report["menus"]
print(
    f"遵守全部规则的菜单 {menus['share_obeying_every_rule']:.1%}，放宽一项规则 {menus['share_relaxed']:.1%}，"
    f"无法生成 {menus['share_empty']:.1%}，违反规则 {menus['share_breaking_a_rule']:.1%}；"
    f"平均 {menus['mean_hours']:.1f} 学时、{menus['mean_courses']:.1f} 门课程"
)
print(
    "推荐中含已完成课程：",
    report["recommendations"]["completed_already"],
    "；对教师不开放的课程：",
    report["recommendations"]["closed_to_teacher"],
)
composition = menus["composition"]
shares = pd.Series(composition["hours_share_by_format"]).rename(index=FORMAT_ZH)
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
shares.plot.barh(ax=left)
left.set_title(f"菜单学时按形式（实践性课程占 {composition['practical_hours_share']:.0%}）")
left.set_xlabel("学时占比")
topics = pd.Series(composition["mandatory_courses_by_topic"], dtype=float)
if len(topics):
    topics.sort_values().plot.barh(ax=right)
right.set_title("菜单中的必修专题课程（门次）")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. 排序模型的特征重要性

# %%
importance = pd.Series(report["ranker"]["feature_importance"]).head(15).sort_values()
ax = importance.plot.barh(figsize=(7, 5))
ax.set_title("特征重要性（分裂增益占比）")
plt.show()

# %% [markdown]
# ## 5. 画像与标注（有真值时）

# %%
if "portraits" in report:
    rows = {
        "已测评教师": report["portraits"]["assessed"],
        "未测评教师（先验）": report["portraits"]["prior_teachers"],
    }
    display(  # noqa: F821
        pd.DataFrame(
            {
                name: {
                    "相关系数（总体）": p["corr_overall"],
                    "相关系数（各能力点平均）": p["corr_mean_per_competency"],
                    "95% 区间覆盖率": p["coverage_95"],
                    "平均绝对误差": p["mae"],
                }
                for name, p in rows.items()
            }
        ).round(3)
    )
    print("课程能力点推断：", {k: round(v, 3) for k, v in report["tagging"].items()})
