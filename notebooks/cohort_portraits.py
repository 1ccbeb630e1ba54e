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
# # 县区群体画像：一位分析员的走查 Cohort portrait of one county
#
# 本笔记本读取一个已训练的工作区（`tdr train` 写出的教师画像），为一个县区做群体画像（群体画像）：
#
# 1. 县区概况：人数、学段、城乡、发展阶段、测评覆盖；
# 2. 各能力点的分布，以及与全省的差距；
# 3. 城乡差异；
# 4. 各学校 × 能力点热力图；
# 5. 最常见的能力差距；
# 6. 学时进度与未完成的必修专题。
#
# 全部是汇总数字：少于 5 人的分组不显示任何数字，教师个人不出现在本笔记本中。
#
# 设置：环境变量 `TDR_NOTEBOOK_WORKSPACE`（工作区目录，默认 `workspace/demo`），可选 `TDR_NOTEBOOK_COUNTY`
# （县区名称，默认为教师最多的县区）。

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib import font_manager

from data.reference import load_taxonomy
from data.schema import SCHOOL_TYPE, STAGE
from data.workspace import Workspace
from features.cohort import MIN_SIZE, THRESHOLD, cohort_portrait
from features.history import CAREER_STAGE_ZH

WORKSPACE = Workspace.open(Path(os.environ.get("TDR_NOTEBOOK_WORKSPACE", "workspace/demo")))

# Chinese labels need a CJK font (Debian: fonts-noto-cjk, `make browser-deps`); without one every label
# would be drawn as boxes, so stop here rather than draw them.
CJK_FONTS = sorted({f.name for f in font_manager.fontManager.ttflist if f.name.startswith("Noto Sans CJK")})
if not CJK_FONTS:
    raise RuntimeError("未找到中文字体 Noto Sans CJK：请先安装 fonts-noto-cjk（make browser-deps）。")
plt.rcParams["font.family"] = "sans-serif"
plt.rcParams["font.sans-serif"] = sorted(CJK_FONTS, key=lambda name: not name.endswith("SC"))
plt.rcParams["axes.unicode_minus"] = False
plt.rcParams["figure.dpi"] = 100

teachers = pd.read_parquet(WORKSPACE.portraits_dir / "teachers.parquet")
competencies = pd.read_parquet(WORKSPACE.portraits_dir / "competencies.parquet")
# a deployment's own framework when it gave one (as `tdr train` reads it), else the built-in one
custom = WORKSPACE.read_table("taxonomy") if WORKSPACE.has_table("taxonomy") else pd.DataFrame()
taxonomy = (custom if len(custom) else load_taxonomy()).drop_duplicates("code").set_index("code")

COUNTY = os.environ.get("TDR_NOTEBOOK_COUNTY") or str(teachers["county"].value_counts().index[0])
county = teachers[teachers["county"] == COUNTY]
if len(county) < MIN_SIZE:
    raise ValueError(f"{COUNTY} 只有 {len(county)} 位教师，少于 {MIN_SIZE} 人，不做群体画像。")
print(f"工作区 {WORKSPACE.root.name}：全省 {len(teachers):,} 位教师；本次分析 {COUNTY}（{len(county):,} 位）")

# %% [markdown]
# ## 1. 县区概况
#
# 先看这个县区由哪些教师组成：学段、城乡类型和发展阶段的构成决定了后面各项数字该如何解读。

# %%
STAGE_ZH = STAGE.label_map()
SCHOOL_TYPE_ZH = SCHOOL_TYPE.label_map()
CAREER_ZH = dict(CAREER_STAGE_ZH)


def shares(column: str, names: dict[str, str]) -> pd.Series:
    """Share of the county's teachers per value of `column`, next to the province's, in per cent."""
    both = pd.DataFrame(
        {
            COUNTY: county[column].map(names).value_counts(normalize=True),
            "全省": teachers[column].map(names).value_counts(normalize=True),
        }
    )
    return (100 * both.fillna(0)).round(1)


overview = pd.Series(
    {
        "教师人数": len(county),
        "学校数": county["school_id"].nunique(),
        "有测评数据的教师（%）": round(100 * county["assessed"].mean(), 1),
        "平均教龄（年）": round(county["years_teaching"].mean(), 1),
    },
    name=COUNTY,
)
display(overview.to_frame())
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, (column, names, title) in zip(
    axes,
    [
        ("stage", STAGE_ZH, "学段构成"),
        ("school_type", SCHOOL_TYPE_ZH, "城乡类型"),
        ("career_stage", CAREER_ZH, "发展阶段"),
    ],
    strict=True,
):
    shares(column, names).plot.bar(ax=ax, rot=0, color=["#2b6cb0", "#a0aec0"])
    ax.set_title(title)
    ax.set_ylabel("教师占比（%）")
fig.suptitle(f"{COUNTY}的教师构成（与全省比较）")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. 各能力点的分布
#
# 同一函数 `features.cohort.cohort_portrait` 为县区和全省各算一次：每个能力点的平均、分位数和低于
# 阈值（60 分）的比例。只用有测评的教师的估计（同类推断的先验不计入），所以数字描述的是本县区的教师本身。

# %%
whole = teachers.assign(_all="全省")
mine = cohort_portrait(county, competencies, "county", taxonomy=taxonomy.reset_index())
province = cohort_portrait(whole, competencies, "_all", taxonomy=taxonomy.reset_index())
figures = mine.competencies.set_index("competency")
figures["domain"] = taxonomy["domain"].reindex(figures.index).to_numpy()
figures["province_mean"] = province.competencies.set_index("competency")["mean"].reindex(figures.index)
figures["versus_province"] = figures["mean"] - figures["province_mean"]
figures = figures.sort_values("mean")

fig, ax = plt.subplots(figsize=(9, max(5, 0.28 * len(figures))))
y = np.arange(len(figures))
ax.hlines(y, figures["p10"], figures["p90"], color="#a0aec0", linewidth=1.5, label="第 10–90 百分位")
ax.hlines(y, figures["p25"], figures["p75"], color="#2b6cb0", linewidth=5, label="四分位区间")
ax.plot(figures["mean"], y, "o", color="#1a365d", markersize=4, label="平均")
ax.plot(figures["province_mean"], y, "|", color="#c53030", markersize=10, label="全省平均")
ax.axvline(THRESHOLD, color="#dd6b20", linestyle="--", linewidth=1, label=f"阈值 {THRESHOLD:g} 分")
ax.set_yticks(y, figures["competency_name"].fillna(pd.Series(figures.index, index=figures.index)))
ax.tick_params(axis="y", labelsize=8)
ax.set_xlabel("能力估计（0–100）")
ax.set_title(f"{COUNTY}各能力点的分布（按平均由低到高）")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()
plt.show()

weakest = figures.head(5)
display(
    weakest[["competency_name", "domain", "n", "mean", "p25", "p75", "share_below", "versus_province"]]
    .rename(
        columns={
            "competency_name": "能力点",
            "domain": "维度",
            "n": "估计人数",
            "mean": "平均",
            "p25": "P25",
            "p75": "P75",
            "share_below": "低于阈值比例",
            "versus_province": "与全省之差",
        }
    )
    .round(2)
)

# %% [markdown]
# ### 与全省的差距，按维度汇总
#
# 单个能力点的差别可能只是抽样波动；按维度平均后更能看出这个县区整体偏弱的方向。

# %%
by_domain = figures.groupby("domain")["versus_province"].mean().sort_values()
fig, ax = plt.subplots(figsize=(8, 0.45 * len(by_domain) + 1.2))
ax.barh(by_domain.index, by_domain.to_numpy(), color=np.where(by_domain < 0, "#c53030", "#2f855a"))
ax.axvline(0, color="#4a5568", linewidth=0.8)
ax.set_xlabel("县区平均 − 全省平均（分）")
ax.set_title(f"{COUNTY}与全省的差距（按维度）")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. 城乡差异
#
# `urban_minus_rural` 是同一能力点城区教师与乡村教师平均之差；任一方少于 5 人时不计算。

# %%
gap = figures["urban_minus_rural"].dropna().sort_values()
if gap.empty:
    print("本县区城区或乡村教师不足 5 人，不比较城乡差异。")
else:
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(gap))))
    ax.barh(figures.loc[gap.index, "competency_name"], gap.to_numpy(), color="#805ad5")
    ax.axvline(0, color="#4a5568", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("城区平均 − 乡村平均（分）")
    ax.set_title(f"{COUNTY}的城乡差异")
    fig.tight_layout()
    plt.show()
    print(f"城区教师在 {int((gap > 0).sum())} / {len(gap)} 个能力点上平均高于乡村教师。")

# %% [markdown]
# ## 4. 各学校 × 能力点热力图
#
# 每行一所学校，颜色为该校教师的平均能力估计；少于 5 人的学校不显示（只报告其数量），空白格表示该校
# 在这个能力点上有估计的教师少于 5 人。

# %%
schools = cohort_portrait(county, competencies, "school_id")
shown = schools.groups[~schools.groups["suppressed"]]
grid = (
    schools.competencies.pivot_table(index="school_id", columns="competency", values="mean")
    .reindex(index=shown["school_id"], columns=figures.index)
    .rename(columns=figures["competency_name"].to_dict())
)
print(
    f"显示 {len(shown)} 所学校；另有 {int(schools.groups['suppressed'].sum())} 所学校少于 {MIN_SIZE} 人，未显示。"
)
if len(grid):
    fig, ax = plt.subplots(figsize=(13, 1.6 + 0.35 * len(grid)))
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=30, vmax=80)
    ax.set_xticks(np.arange(grid.shape[1]), grid.columns, rotation=70, ha="right", fontsize=7)
    sizes = shown.set_index("school_id")["n_teachers"]
    ax.set_yticks(np.arange(len(grid)), [f"{s}（{int(sizes[s])} 人）" for s in grid.index], fontsize=8)
    fig.colorbar(image, ax=ax, label="平均能力估计", shrink=0.8)
    ax.set_title(f"{COUNTY}各学校的能力热力图（能力点按县区平均由低到高）")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 5. 最常见的能力差距
#
# 每位教师画像中差距最大的三个能力点（`top_gaps`）在县区内出现的比例：比例高的能力点适合作为县级
# 集中培训或校本研修的主题。

# %%
common = mine.common_gaps.assign(name=lambda f: f["competency"].map(taxonomy["name"]))
fig, ax = plt.subplots(figsize=(8, 3.2))
ax.barh(common["name"][::-1], 100 * common["share"][::-1], color="#dd6b20")
ax.set_xlabel("教师占比（%）")
ax.set_title(f"{COUNTY}教师最常见的能力差距")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. 学时进度与必修专题
#
# 本周期应修学时（如 5 年 360 学时）中已完成的部分，以及尚未完成的必修专题。

# %%
group = mine.groups.iloc[0]
done = county["hours_done_cycle"].fillna(0)
required = county["hours_required"].dropna()
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
axes[0].hist(done, bins=30, color="#2b6cb0")
if len(required):
    axes[0].axvline(
        required.median(), color="#c53030", linestyle="--", label=f"应修 {required.median():g} 学时"
    )
    axes[0].legend()
axes[0].set_xlabel("本周期已修学时")
axes[0].set_ylabel("教师人数")
axes[0].set_title("学时进度分布")
missing = county["missing_mandatory"].explode().dropna().value_counts()
axes[1].barh(missing.index[::-1], 100 * missing.to_numpy()[::-1] / len(county), color="#805ad5")
axes[1].set_xlabel("尚未完成的教师占比（%）")
axes[1].set_title("未完成的必修专题")
fig.suptitle(f"{COUNTY}的学时与必修专题")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 小结

# %%
lowest = figures.iloc[0]
print(
    f"{COUNTY}：{len(county):,} 位教师，平均已修 {group['mean_hours_done_cycle']:.0f} 学时，"
    f"{100 * group['share_owing_hours']:.0f}% 的教师本周期学时尚有欠缺，结业率 {100 * group['completion_rate']:.0f}%。\n"
    f"最薄弱的能力点是「{lowest['competency_name']}」（平均 {lowest['mean']:.1f} 分，"
    f"{100 * lowest['share_below']:.0f}% 的教师低于 {THRESHOLD:g} 分）；"
    f"与全省相比差距最大的维度是「{by_domain.index[0]}」（{by_domain.iloc[0]:+.1f} 分）；"
    f"最常见的差距是「{common['name'].iloc[0]}」（{100 * common['share'].iloc[0]:.0f}% 的教师）。"
)
