"""Synthetic province (合成省份): a realistic 江西省 export in the input data contract, with its ground truth.

`tdr generate`, the demo and every evaluation with known answers use it; training never reads DIR/_truth/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data.reference import load_counties, load_jiangxi_projects, load_taxonomy
from data.workspace import atomic_write, write_text_atomic

PROVINCE = "江西省"
DEFAULT_AS_OF = date(2025, 10, 31)
HISTORY_YEARS = 5
# Jiangxi has roughly this many kindergarten-to-senior teachers; project quotas are scaled by N / this
PROVINCE_TEACHERS = 550_000
MAX_COURSES = 20_000
# true utilities are computed for at most this many teacher × course cells (a sample beyond it)
UTILITY_CELLS_MAX = 30_000_000
UTILITY_TOP_PER_TEACHER = 200

STAGES = ("kindergarten", "primary", "junior", "senior")
STAGE_ZH = ("幼儿园", "小学", "初中", "高中")
SCHOOL_TYPES = ("rural", "town", "urban")
TITLES = ("none", "third", "second", "first", "senior", "full_senior")
ROLES = ("head_teacher", "principal", "party_secretary", "trainer", "researcher")
FORMATS = ("online", "offline", "blended", "workshop", "shadowing", "school_based")
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

# title phrases of the mandatory-topic courses (the phrase bank of their competency gives the description)
MANDATORY_TITLES = {
    "思想政治": "教师思想政治素质提升专题|新时代中国特色社会主义思想学习专题|弘扬教育家精神专题|坚定理想信念、做新时代好老师",
    "信息技术": "教师数字素养提升必修课|信息技术应用能力提升专题|信息素养与数字化教学|人工智能时代的教师数字素养",
    "师德师风": "新时代教师职业行为十项准则解读|师德失范典型案例警示教育|做党和人民满意的四有好老师|廉洁从教与师德修养",
    "心理健康": "中小学生心理危机的识别与应对|教师心理健康与压力调适|学生心理健康教育必修课|守护学生心理健康",
    "国家安全": "总体国家安全观专题学习|国家安全教育进课堂|全民国家安全教育日专题|校园中的国家安全教育",
    "法治教育": "教师法治素养提升|未成年人保护法解读|依法执教必修课|学校法治教育实务",
    "预防校园欺凌": "学生欺凌的预防与处置|防治中小学生欺凌专题|欺凌事件的识别与干预|建设无欺凌校园",
    "生态教育": "生态文明教育专题|绿色低碳与校园生态教育|人与自然和谐共生主题教育",
    "四史": "四史学习教育专题|用好红色资源开展四史教育|党史学习教育进课堂",
    "国家通用语言文字": "国家通用语言文字规范化专题|普通话与规范汉字必修课|语言文字规范与教师口语",
    "幼小衔接": "科学做好幼小衔接|入学准备与入学适应|幼小双向衔接实践指导",
    "少先队工作": "少先队辅导员工作实务|少先队活动课的组织|红领巾奖章与少先队仪式教育",
}

PROVIDERS: tuple[tuple[str, str], ...] = (
    ("江西师范大学", "university"), ("赣南师范大学", "university"), ("井冈山大学", "university"),
    ("上饶师范学院", "university"), ("南昌师范学院", "university"), ("豫章师范学院", "university"),
    ("东华理工大学", "university"), ("北京师范大学", "university"), ("华东师范大学", "university"),
    ("陕西师范大学", "university"), ("闽南师范大学", "university"), ("北京教育学院", "university"),
    ("国家开放大学培训中心", "platform"), ("北京继教网教育科技发展有限公司", "platform"),
    ("北京奥鹏远程教育中心有限公司", "platform"), ("北京尚睿通教育科技股份有限公司", "platform"),
    ("北京教培师训网络科技股份有限公司", "platform"), ("长春东师学思教育科技有限公司", "platform"),
    ("北京百年树人远程教育有限公司", "platform"), ("高等教育出版社有限公司", "platform"),
    ("江西省中小学教师发展中心", "province"),
)  # fmt: skip
# formats each kind of provider offers (relative weights, in FORMATS order)
PROVIDER_FORMATS = {
    "university": (0.10, 0.30, 0.25, 0.20, 0.15, 0.00),
    "platform": (0.75, 0.00, 0.20, 0.05, 0.00, 0.00),
    "province": (0.40, 0.25, 0.25, 0.10, 0.00, 0.00),
    "county": (0.10, 0.20, 0.05, 0.25, 0.05, 0.35),
}

# Course-text phrase bank per competency: title topics | description cues | aims. Paraphrases, never the
# taxonomy name itself, so that inferring a course's competencies from its text is a real task.
PHRASES: dict[str, tuple[str, str, str]] = {
    "ETH1": (
        "新时代教师职业行为准则解读|师德失范典型案例警示|做学生喜爱的四有好老师|师德修养与为人师表|廉洁从教与家校交往边界",
        "十项准则|有偿补课|师德负面清单|关爱学生|言行雅正|师德考核",
        "筑牢师德底线、涵养高尚师德|明确教师职业行为边界，守住廉洁从教红线|以德立身、以德施教",
    ),
    "ETH2": (
        "教师依法执教实务|未成年人保护法与学校责任|总体国家安全观进校园|学校法治教育课堂实践|教育法律风险防范",
        "未成年人保护法|教师法|全民国家安全教育日|学生权益保护|教育惩戒规则|法治副校长",
        "增强依法执教意识与风险防范能力|把国家安全教育和法治教育落到日常教学中|学会依法处理教育教学中的纠纷",
    ),
    "ETH3": (
        "学科教学中的课程思政|中华优秀传统文化融入课堂|四史学习与立德树人|生态文明教育主题课程|核心价值观的学科渗透",
        "课程思政|育人目标|红色资源|传统文化|生态文明|价值引领",
        "在知识传授中实现价值引领|挖掘本学科蕴含的育人元素|用好本地红色资源和传统文化开展育人",
    ),
    "ETH4": (
        "教师心理调适与职业幸福|乡村教师的教育情怀|走出职业倦怠|教师压力管理与身心健康|扎根乡土的教育人生",
        "职业倦怠|情绪管理|压力调适|乡村教育情怀|职业认同|正念练习",
        "学会调适工作压力、提升职业幸福感|增强扎根乡村、长期从教的内在动力|保持积极健康的职业心态",
    ),
    "KNW1": (
        "学科核心概念的深度理解|学科知识体系梳理与拓展|学科思想方法专题|学科前沿与知识更新|从知识点到知识结构",
        "核心概念|知识结构|学科思想方法|知识拓展|学科本质|易错知识点",
        "夯实学科专业功底|把握学科知识的内在联系|加深对学科本质的理解",
    ),
    "KNW2": (
        "新课标研读与教学转化|学科核心素养解读|教材编排体系分析|新教材使用指导|新课程方案的变化与应对",
        "课程标准|核心素养|学业要求|教材分析|新教材|课程方案",
        "读懂新课标并转化为课堂行动|理清教材编排意图|把核心素养要求落实到单元和课时",
    ),
    "KNW3": (
        "读懂学生的学习心理|儿童青少年身心发展特点|学习动机的激发与维持|认知规律与有效学习|青春期学生的心理与行为",
        "认知发展|学习动机|注意力|记忆规律|青春期|学习困难",
        "依据学生身心发展规律开展教学|理解学生学习困难背后的原因|激发学生内在的学习动力",
    ),
    "KNW4": (
        "幼儿园游戏活动的组织与支持|3—6岁儿童学习与发展指南解读|幼儿一日生活中的保育|科学做好入学准备|幼儿行为观察与解读",
        "区域游戏|一日生活|保教结合|入学准备|幼儿观察记录|学习与发展指南",
        "以游戏为基本活动支持幼儿发展|做好入学准备和入学适应的双向衔接|提升保教结合的专业能力",
    ),
    "KNW5": (
        "普通话与规范汉字教学示范|教师口语表达训练|推广国家通用语言文字|教师书写与板书规范|课堂语言的准确与生动",
        "普通话|规范汉字|教师口语|书写规范|朗读|语言文字规范",
        "提升语言文字规范意识和表达能力|在课堂中示范和推广国家通用语言文字|让课堂语言准确、简洁、生动",
    ),
    "DES1": (
        "素养导向的教学目标撰写|教学重难点的精准确定|从课标到课时目标|教学内容的选择与组织|逆向教学设计入门",
        "教学目标|重难点|目标叙写|逆向设计|评价任务|教学内容",
        "写出可观测、可评价的教学目标|准确把握教学重难点|让教学目标、活动与评价保持一致",
    ),
    "DES2": (
        "大单元教学的设计路径|基于大概念的单元整体设计|学习任务群的设计与实施|单元教学中的课时规划|单元整体教学案例剖析",
        "大单元|大概念|学习任务群|单元规划|结构化|单元作业",
        "以大概念统整单元教学|掌握单元整体设计的基本流程|设计有进阶的学习任务群",
    ),
    "DES3": (
        "课堂教学基本功锤炼|有效提问与课堂对话|课堂节奏调控艺术|板书设计与讲解技巧|新教师站稳讲台",
        "课堂提问|教学语言|板书|课堂调控|课堂常规|示范讲解",
        "提升课堂组织和驾驭能力|练就扎实的教学基本功|让课堂更加高效有序",
    ),
    "DES4": (
        "项目式学习的设计与实施|问题驱动的合作探究课堂|真实情境任务设计|探究式教学的组织策略|从活动走向素养的项目学习",
        "驱动性问题|项目式学习|合作探究|真实任务|成果展示|探究支架",
        "组织学生在真实任务中合作探究|设计有挑战性的驱动性问题|让学生经历完整的项目学习过程",
    ),
    "DES5": (
        "双减背景下的作业设计|分层作业与个别辅导|作业总量控制与质量提升|差异化教学策略|学困生转化与培优辅导",
        "双减|分层作业|作业设计|实践性作业|个别辅导|差异化教学",
        "提高作业设计质量、减轻学生负担|针对学生差异实施分层教学|做好课后个别辅导",
    ),
    "DES6": (
        "学科实验教学能力提升|劳动教育课程实施|综合实践活动指导|研学实践活动设计|实验操作规范与安全",
        "分组实验|劳动实践|研学旅行|综合实践|动手操作|实验安全",
        "上好实验课和实践活动课|组织学生安全规范地动手实践|让劳动教育和综合实践真正落地",
    ),
    "EVA1": (
        "课堂即时评价与反馈|表现性评价任务设计|以评促学的课堂实践|过程性评价的记录与运用|教学评一致性落地",
        "即时反馈|表现性任务|以评促学|课堂观察记录|教学评一致|评价证据",
        "让评价贯穿学习全过程|用评价信息改进学生学习|实现教学评一致",
    ),
    "EVA2": (
        "素养导向的命题技术|试卷分析与精准讲评|单元检测的编制|中高考试题研究|错题诊断与教学改进",
        "命题|双向细目表|试卷分析|错因诊断|试题情境|讲评课",
        "编制素养导向的高质量试题|通过试卷分析找到教学改进点|上好试卷讲评课",
    ),
    "EVA3": (
        "学生综合素质评价实务|五育并举的学生评价|学生成长记录的建立|多元主体参与的评价|写实记录与评语撰写",
        "综合素质评价|成长记录|写实记录|五育并举|多主体评价|期末评语",
        "科学开展学生综合素质评价|关注学生全面而有个性的发展|写好有温度的学生评语",
    ),
    "EVA4": (
        "读懂学业质量监测报告|学业质量标准与教学改进|区域质量监测结果运用|基于监测数据的教研改进|学业水平考试分析",
        "质量监测|学业质量标准|监测报告|增值评价|教学改进|学业水平考试",
        "学会解读质量监测结果|依据监测数据改进教学和教研|理解学业质量标准的要求",
    ),
    "CLS1": (
        "优秀班集体的建设|班主任工作实务|班级文化与班级公约|班干部培养与班级自治|班级突发事件处理",
        "班级公约|班干部|班级文化|班级常规|班级自治|偶发事件",
        "建设积极向上的班集体|提升带班育人能力|从容处理班级日常与突发事件",
    ),
    "CLS2": (
        "学生心理危机识别与干预|心理健康教育课设计|个别心理辅导技术|学生情绪与压力疏导|心理健康筛查与家校协同",
        "心理危机|情绪疏导|心理辅导|心理健康课|抑郁焦虑|转介",
        "及早识别学生心理问题|掌握个别谈心辅导的基本方法|上好心理健康教育课",
    ),
    "CLS3": (
        "家校沟通的艺术|家长会的组织与创新|家庭教育指导实务|家校社协同育人机制|有效家访",
        "家长会|家访|家庭教育促进法|家长学校|社区资源|家校沟通",
        "与家长建立互信合作关系|指导家长科学开展家庭教育|整合家庭、学校和社会的育人力量",
    ),
    "CLS4": (
        "主题班会的设计与实施|少先队活动课指导|仪式教育与节日育人|行为习惯养成教育|理想信念教育活动设计",
        "主题班会|少先队活动|中队辅导员|仪式教育|习惯养成|团队活动",
        "设计有感染力的德育活动|上好少先队活动课|培养学生良好的行为习惯",
    ),
    "CLS5": (
        "学生欺凌的预防与处置|校园安全教育与应急演练|防溺水与交通安全教育|校园风险排查与安全管理|欺凌事件的识别与干预",
        "学生欺凌|应急演练|防溺水|安全隐患|安全教育|处置流程",
        "及早发现并有效预防学生欺凌|提高校园安全管理和应急处置能力|落实安全教育责任",
    ),
    "A1": (
        "课前问卷与学情诊断|用小测摸清学生起点|多媒体课堂的学情调查|学情数据的收集与解读|借助问卷工具了解学生",
        "课前问卷|前测|学习起点|问卷星|学情报告|电子作业",
        "借助简单的技术工具摸清学生起点|用数据说明教学重难点的来由|写出有依据的学情分析报告",
    ),
    "A2": (
        "国家智慧教育平台资源检索与使用|优质数字资源的甄别与加工|教学素材的获取技巧|数字资源的选用评价|网络教学资源的整合",
        "国家中小学智慧教育平台|资源检索|素材下载|版权意识|资源评价|音视频素材",
        "快速找到适合课堂的优质资源|判断数字资源的科学性与适切性|把网络资源加工成自己的教学素材",
    ),
    "A3": (
        "PPT课件的设计美学|多媒体课件制作实战|让课件服务于教学|课件版式与动画设计|希沃白板与课件制作技巧",
        "PPT|课件模板|版式设计|动画|配色|希沃白板",
        "制作简洁美观、服务教学的课件|掌握版式、动画和音视频的合理运用|避免课件花哨而干扰学习",
    ),
    "A4": (
        "个人教学资源库的搭建|教研组资源共建共享|数字资源的分类与云端管理|网盘与资源平台使用|校本资源库建设",
        "资源库|云盘|文件命名|分类存储|共建共享|资源平台",
        "有序管理个人和教研组的数字资源|建设可复用的校本资源库|提高备课资源的利用效率",
    ),
    "A5": (
        "精彩导入的多媒体设计|用视频和情境开启新课|课堂导入的技术妙招|情境动画导入设计|三分钟导入技巧",
        "新课导入|情境创设|视频片段|激趣|悬念|导入环节",
        "在课堂开始几分钟抓住学生注意力|用音视频和情境唤起已有经验|自然引出本课学习任务",
    ),
    "A6": (
        "电子白板支持的课堂讲授|用动画突破教学难点|直观演示与抽象知识教学|交互式讲解技巧|实物展台在讲授中的运用",
        "交互式电子白板|动画演示|实物展台|直观化|难点突破|讲授环节",
        "借助直观演示讲清抽象知识|用技术手段突破重点难点|提升讲授环节的清晰度和效率",
    ),
    "A7": (
        "思维导图支持的课堂小结|知识结构化梳理|课堂总结的可视化|课末提升与拓展设计|复习课的知识梳理工具",
        "思维导图|知识结构图|课堂小结|梳理归纳|拓展延伸|概念图",
        "帮助学生把零散知识结构化|设计有提升的课堂总结|借助可视化工具梳理知识",
    ),
    "A8": (
        "学习方法的微视频指导|解题策略的可视化示范|学法指导的技术支持|阅读与实验方法演示|学习支架的设计",
        "学法指导|方法示范|解题策略|学习支架|操作演示|示范视频",
        "教会学生学习方法而不只是知识|用示范和支架指导学生自主学习|把隐性的思维方法显性化",
    ),
    "A9": (
        "小组合作学习的组织|课堂分组与小组管理|小组积分与合作规则|高效小组讨论的组织|合作学习中的角色分工",
        "随机分组|小组积分|计时器|角色分工|组长|小组讨论",
        "让小组合作真正发生|借助工具高效管理小组讨论|明确分工、提高合作效率",
    ),
    "A10": (
        "课堂即时测验的设计|答题器与在线练习|随堂检测与及时讲评|练习设计与反馈|技术支持的课堂检测",
        "随堂测验|答题器|正确率|即时反馈|在线练习|错题统计",
        "实时掌握学生练习情况|依据正确率开展针对性讲评|设计有梯度的课堂练习",
    ),
    "A11": (
        "评价量规的开发与使用|学生作品的量规评价|用量规引导学生自评互评|表现任务评分标准设计|量规工具与数字化评价",
        "评价量规|评分标准|等级描述|作品评价|自评互评|评价维度",
        "设计清晰可用的评价量规|用量规引导学生改进作品|让评价标准公开透明",
    ),
    "A12": (
        "成绩数据的图表分析|Excel数据处理与可视化|用图表读懂学情|班级成绩统计与解读|学习数据可视化报告",
        "Excel|统计图表|成绩分析|数据透视表|可视化|分数分布",
        "把学习数据变成直观图表|从数据中发现学习问题|用数据支持教学决策",
    ),
    "A13": (
        "家校沟通平台的使用|线上家长会的组织|班级群的规范管理|向家长反馈学习情况|数字化家校共育",
        "班级群|家校沟通平台|线上家长会|学习反馈|家长|通知",
        "用好数字化渠道与家长沟通|规范、高效地反馈学生学习情况|借助技术形成家校共育合力",
    ),
    "B1": (
        "平台数据驱动的学情诊断|混合式学习中的前测分析|在线学习行为数据解读|线上线下融合的学情分析|从平台数据看学情",
        "学习平台|在线前测|观看时长|讨论区|学习行为数据|混合式教学",
        "利用平台数据动态把握学情|根据线上前测调整线下课堂|识别学生在自学中的困难",
    ),
    "B2": (
        "微课的选题与脚本设计|微课录制与剪辑实战|翻转课堂中的微课应用|高质量微课的制作|微课与学习任务单",
        "微课|录屏|脚本|剪辑|学习任务单|翻转课堂",
        "制作主题聚焦的优质微课|用微课支持学生课前自学|掌握录屏、剪辑和配音等技巧",
    ),
    "B3": (
        "网络环境下的探究活动设计|问题驱动的线上探究|数字化探究工具的运用|探究学习单与资源包设计|线上线下结合的探究课",
        "探究活动|网络学习空间|探究工具|资源包|问题链|探究报告",
        "设计线上线下结合的探究活动|为学生探究提供数字化工具与资源|用问题链驱动深度学习",
    ),
    "B4": (
        "跨学科主题学习设计|STEAM项目活动|学科融合的主题课程|跨学科实践活动案例|真实问题的跨学科解决",
        "跨学科|主题学习|STEAM|学科融合|分工协作|成果汇报",
        "设计整合多学科的主题学习活动|组织学生用多学科知识解决真实问题|落实新课标跨学科主题学习要求",
    ),
    "B5": (
        "仿真实验支持的探究|几何画板与动态演示|数字化实验室应用|技术工具助力问题解决|用软件验证猜想",
        "仿真实验|几何画板|数字化实验|传感器|猜想验证|建模",
        "借助软件工具支持学生发现和解决问题|用数字化实验验证假设|培养学生的问题解决能力",
    ),
    "B6": (
        "学生成果的展示与交流|同屏投射与作品展评|线上作品墙的组织|课堂展示交流的技术支持|学习成果的多元展示",
        "同屏投射|作品墙|成果展示|交流点评|投屏|展评",
        "为学生搭建展示交流的平台|组织有质量的作品点评|让每个学生的成果被看见",
    ),
    "B7": (
        "在线协作文档的课堂应用|小组云端协作学习|讨论区与协作空间的组织|协作学习过程跟踪|线上线下结合的合作学习",
        "协作文档|云端共享|讨论区|小组协作|贡献记录|在线协作",
        "组织学生开展在线协作学习|跟踪小组协作过程与个人贡献|提升学生的合作能力",
    ),
    "B8": (
        "学习过程数据的伴随采集|平台日志与过程性评价|在线作业数据的收集|课堂互动数据记录|过程性评价证据的积累",
        "过程数据|平台日志|伴随式采集|在线作业|互动记录|过程性评价",
        "持续采集学习过程数据|为过程性评价积累证据|让评价伴随学习全过程",
    ),
    "B9": (
        "学生自评互评的组织|同伴互评的设计与实施|在线互评工具的使用|反思性自评表设计|互评中的反馈质量提升",
        "自评|互评|同伴反馈|评价量表|反思|修改完善",
        "组织有效的自评与同伴互评|引导学生在评价中反思改进|提高同伴反馈的质量",
    ),
    "B10": (
        "电子成长档案袋的建立|档案袋评价的实施|学生作品集的数字化管理|发展性评价与成长记录|基于证据的档案袋评价",
        "电子档案袋|作品集|成长记录|发展性评价|阶段反思|证据收集",
        "用电子档案袋记录学生成长|开展基于证据的发展性评价|引导学生回顾自己的进步",
    ),
    "C1": (
        "智慧课堂的精准学情诊断|学习分析系统与学情画像|多维数据的学情分析方案|智能终端采集学情数据|基于大数据的学情研判",
        "智慧课堂|学情画像|学习分析|平板终端|多维数据|精准诊断",
        "设计基于多维数据的学情分析方案|精准诊断每个学生的学习状态|用智能系统支撑精准教学",
    ),
    "C2": (
        "VR与AR创设学习情境|沉浸式虚拟实验|智慧教室中的情境教学|物联网与真实问题情境|虚拟仿真教学应用",
        "虚拟现实|增强现实|沉浸式|虚拟仿真|物联网|真实情境",
        "用新技术创设真实沉浸的学习情境|让学生在情境中建构知识|把虚拟仿真融入课堂",
    ),
    "C3": (
        "创客与编程支持的创意表达|3D设计与数字创作|学生数字作品创作指导|图形化编程课堂|创意设计与多媒体表达",
        "创客|图形化编程|3D打印|数字创作|创意设计|数字故事",
        "支持学生用数字工具创意表达|培养学生创新设计能力|指导学生完成数字作品",
    ),
    "C4": (
        "人工智能工具支持的问题解决|计算思维培养|数据分析解决真实问题|生成式AI的课堂应用|AI助学与创新思维",
        "人工智能|计算思维|生成式AI|数据分析|算法|创新方案",
        "引导学生运用AI工具探索问题解决|培养计算思维和创新思维|在课堂中审慎使用人工智能",
    ),
    "C5": (
        "学生网络素养与信息安全|数字公民教育|防网络沉迷与文明上网|AI时代的信息伦理|知识产权与信息道德",
        "网络安全|数字公民|网络沉迷|信息伦理|知识产权|个人隐私",
        "培养学生负责任地使用技术|增强学生信息安全和隐私保护意识|引导学生文明上网",
    ),
    "C6": (
        "学习画像驱动的个别化辅导|智能推送与分层任务|精准教学与个性化学习|自适应学习平台的应用|数据支持的培优补差",
        "学习画像|个性化推送|自适应|分层任务|精准辅导|错题本",
        "依据学习数据为每个学生提供个性化支持|用智能平台实施分层辅导|实现精准的因材施教",
    ),
    "C7": (
        "智能测评与课堂行为分析|AI课堂分析报告解读|学习过程的智能评价|多维评价数据诊断|智能阅卷与学业诊断",
        "智能测评|课堂行为分析|AI课堂报告|智能阅卷|实时评价|诊断报告",
        "用智能工具对学习过程实时评价|读懂智能诊断报告并改进教学|实现多维、实时的学业评价",
    ),
    "RES1": (
        "教学反思的方法与写作|教师个人专业发展规划|从课堂录像看自己的教学|反思型教师的成长路径|教师自主学习与终身发展",
        "教学反思|课堂录像|发展规划|成长档案|自主学习|反思日志",
        "养成反思教学的习惯|制定切实可行的个人发展规划|在反思中持续改进课堂",
    ),
    "RES2": (
        "高质量集体备课|听课评课的观察工具|课例研究与磨课|校本教研活动的组织|同课异构与教研改进",
        "集体备课|听评课|磨课|课例研究|同课异构|观课量表",
        "提升校本教研的实效|掌握听课评课的观察方法|在课例研究中共同成长",
    ),
    "RES3": (
        "小课题研究的选题与实施|教育行动研究方法|教学论文与案例写作|教学成果的提炼与表达|教育叙事写作",
        "小课题|行动研究|论文写作|教学案例|成果提炼|开题报告",
        "把教学问题转化为研究课题|掌握行动研究的基本方法|写出规范的教学论文和案例",
    ),
    "RES4": (
        "青蓝工程与师徒结对|骨干教师的示范引领|送教下乡与工作坊主持|培训课程开发与讲授|名师工作室的运作",
        "师徒结对|送教下乡|工作坊主持|示范课|培训讲座|名师工作室",
        "发挥骨干教师的示范引领作用|有效指导青年教师成长|胜任工作坊主持和培训讲授",
    ),
    "LEAD1": (
        "学校发展规划的制定|现代学校制度建设|校长办学治校能力|学校发展诊断与改进|乡村学校的特色发展",
        "发展规划|学校章程|内部治理|办学理念|特色发展|学校诊断",
        "科学制定学校发展规划|完善现代学校制度|提升办学治校能力",
    ),
    "LEAD2": (
        "校长课程领导力|学校课程体系建设|教学质量管理与提升|课堂变革的学校推进|教学常规管理",
        "课程体系|教学质量|课堂变革|教学常规|课程领导|校本课程",
        "统筹推进学校课程建设|建立教学质量保障机制|领导学校课堂变革",
    ),
    "LEAD3": (
        "教师梯队建设|校本研修的规划与管理|教师考核与激励|教师团队的凝聚与关怀|新教师培养体系",
        "教师梯队|校本研修|绩效考核|激励机制|团队建设|青年教师培养",
        "建设结构合理的教师梯队|规划和管理校本研修|激发教师队伍活力",
    ),
    "LEAD4": (
        "整校推进信息技术应用能力提升|学校信息化发展规划|智慧校园建设与管理|校长信息化领导力|学校数据治理与安全",
        "整校推进|信息化规划|智慧校园|数据治理|能力提升工程2.0|网络安全",
        "统筹推进学校信息化建设|领导整校信息技术应用能力提升|做好学校数据治理",
    ),
    "LEAD5": (
        "党组织领导的校长负责制|学校党建工作实务|党建引领学校发展|师生思想政治工作|基层党组织书记能力提升",
        "党组织|校长负责制|党建工作|思想政治工作|意识形态|党支部",
        "落实党组织领导的校长负责制|提升学校党建工作水平|做好师生思想政治工作",
    ),
}

ENV_CUES = {
    "A": "多媒体教室|电子白板|投影",
    "B": "线上线下混合|网络学习空间|学习平台",
    "C": "智慧课堂|平板电脑|智能终端",
}
LEVEL_WORDS = ("入门|基础|新手起步", "进阶|提升|实践", "高级研修|深化|专家视角")
FORMAT_PHRASES = {
    "online": "以线上视频课程为主，可利用碎片时间自主学习|采用网络研修方式，配有在线测验与讨论|线上异步学习，课程资源随时回看",
    "offline": "采用专家讲座与现场研讨相结合的集中培训方式|线下集中面授，安排现场观摩与交流|集中培训，专家授课后分组研讨",
    "blended": "线上自学与线下集中研讨相结合|先线上学习理论、再线下实践展示的混合式研修|混合式研修，线上打卡加线下工作坊",
    "workshop": "以工作坊形式开展，学员分组完成实践任务|参与式工作坊，边学边做、当堂产出|在坊主带领下开展任务驱动的研修",
    "shadowing": "学员赴优质学校跟岗实践，观摩诊断|跟岗研修，深入名校课堂和教研活动|影子培训，全程跟随导师开展工作",
    "school_based": "依托本校教研组开展校本研修|立足本校课堂的校本研修活动|结合学校实际问题的校本研修",
}
PRACTICAL_PHRASES = (
    "学员需提交一份实践作业并接受导师点评|结业要求完成一节实践课并提交反思|研修结束时提交可直接使用的成果|"
)
FILLERS = (
    "课程注重理论与实践相结合。|课程提供丰富的一线案例。|各单元均配有学习资源包。|学习完成后可获得相应学时认定。|"
    "欢迎有需要的教师选学。"
)


# What DIR/_truth/ holds, for whoever evaluates against it (written into meta.json as "files").
TRUTH_FILES: dict[str, str] = {
    "latent.parquet": (
        "true competencies, one row per teacher × taxonomy code: teacher_id, competency, theta (the "
        "latent ability on the logit scale of the item model, P(correct) = sigmoid(Σ a·theta − b)), "
        "score_0_100 (the same on the 0–100 display scale of competency_scores and portraits: "
        f"clip({DISPLAY_CENTRE:g} + {DISPLAY_SCALE:g}·theta, 0, 100)). "
        "Compare portrait estimates with score_0_100, IRT abilities with theta."
    ),
    "courses.parquet": (
        "true description of every course, tagged in courses.csv or not: course_id, competencies (true "
        "codes, main first), weights, quality, level, popularity, tagged (whether courses.csv shows the "
        "codes), stages, subjects, practical, active, prerequisites, launch_year"
    ),
    "items.parquet": (
        "true item parameters: item_id, competencies (Q-matrix row), discrimination (one per code), "
        "difficulty (b in sigmoid(Σ a·theta − b)), max_score (binomial trials)"
    ),
    "utility.parquet": (
        "true utility of courses for teachers at as_of (see true_utility): teacher_id, course_id, utility; "
        "the top_per_teacher highest positive values of each covered teacher (utility_teachers: all "
        "teachers, or the lowest ids, a random sample, when teachers × courses is large); absent pairs are "
        "worth less"
    ),
}


# ---------------------------------------------------------------------------------------------------------
# records crossing the module boundary


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate` wrote: rows per contract file and how many teachers the true utilities cover."""

    out_dir: Path
    seed: int
    n_teachers: int
    rows: dict[str, int]
    utility_teachers: int  # teachers whose true utilities are in _truth/utility.parquet (all, or a sample)
    note: str


@dataclass(frozen=True)
class Truth:
    """Ground truth of a synthetic province (never read by training code).

    The files and their columns are described in TRUTH_FILES (also written into meta.json under "files").
    """

    latent: pd.DataFrame
    courses: pd.DataFrame
    items: pd.DataFrame
    utility: pd.DataFrame
    meta: dict[str, Any]


def load_truth(directory: str | Path) -> Truth:
    """Read DIR/_truth/ written by `generate`."""
    root = Path(directory) / "_truth"
    return Truth(
        latent=pd.read_parquet(root / "latent.parquet"),
        courses=pd.read_parquet(root / "courses.parquet"),
        items=pd.read_parquet(root / "items.parquet"),
        utility=pd.read_parquet(root / "utility.parquet"),
        meta=json.loads((root / "meta.json").read_text(encoding="utf-8")),
    )


# ---------------------------------------------------------------------------------------------------------
# the true utility: one pure core shared by the generator's choice model and by true_utility


def code_family(codes: Sequence[str]) -> np.ndarray:
    """Family of each code: the letters before its number (A, B, C for the 2.0 micro-abilities, ETH, …)."""
    return np.array([c.rstrip("0123456789") for c in codes])


def relevance(
    stage: np.ndarray, school_type: np.ndarray, years: np.ndarray, roles: np.ndarray, codes: Sequence[str]
) -> np.ndarray:
    """How much each competency matters to each teacher's job (teachers × codes, in (0, 1]).

    stage and school_type are indices into STAGES / SCHOOL_TYPES, roles a teachers × 5 bool matrix (ROLES
    order).
    Leadership matters to principals and party secretaries, class management to head teachers, mentoring to
    experienced teachers and trainers, early-years care to kindergarten staff, smart-classroom skills where
    such classrooms exist.
    """
    fam = code_family(codes)
    codes_arr = np.asarray(codes)
    n = len(stage)
    rel = np.ones((n, len(codes)), dtype=np.float32)
    head, principal, secretary, trainer, researcher = (roles[:, j] for j in range(len(ROLES)))
    leader = principal | secretary
    lead_cols = fam == "LEAD"
    rel[:, lead_cols] = np.where(leader, 1.0, 0.15)[:, None]
    lead5 = codes_arr == "LEAD5"
    rel[:, lead5] = np.where(secretary, 1.0, np.where(principal, 0.6, 0.1))[:, None]
    rel[:, fam == "CLS"] = np.where(head, 1.0, 0.55)[:, None]
    cls4 = codes_arr == "CLS4"
    rel[:, cls4] *= np.where((stage == 1) | (stage == 2), 1.0, 0.4)[:, None]
    res4 = codes_arr == "RES4"
    rel[:, res4] = np.where(trainer | researcher | (years >= 12), 1.0, 0.3)[:, None]
    knw4 = codes_arr == "KNW4"
    rel[:, knw4] = np.select([stage == 0, stage == 1], [1.0, 0.35], 0.05)[:, None]
    knw1 = codes_arr == "KNW1"
    rel[:, knw1] = np.where(stage == 0, 0.3, 1.0)[:, None]
    smart = fam == "C"
    rel[:, smart] = np.array([0.6, 0.8, 1.0], dtype=np.float32)[school_type][:, None]
    return rel


def utility_core(
    theta_sel: np.ndarray,
    rel_sel: np.ndarray,
    weights: np.ndarray,
    level: np.ndarray,
    multiplier: np.ndarray,
) -> np.ndarray:
    """Utility of courses for teachers from the course's codes (last axis: up to MAX_CODES codes).

    u = multiplier × Σ_j w_j · relevance_j · gap_j · fit_j with gap_j = max(0, TARGET_THETA − θ_j) and
    fit_j = exp(−(level − (2 + θ_j))² / (2·LEVEL_SD²)): a course helps where the teacher is short of the
    target, on competencies that matter to the job, at a level matching where the teacher stands. Padded codes
    carry weight 0. `multiplier` holds the course's quality and context bonuses (broadcast over leading axes).
    """
    gap = np.maximum(TARGET_THETA - theta_sel, 0.0)
    fit = np.exp(-((level[..., None] - (2.0 + theta_sel)) ** 2) / (2.0 * LEVEL_SD**2))
    return np.asarray(multiplier * np.sum(weights * rel_sel * gap * fit, axis=-1))


def _as_list(value: object) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if str(v)]
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return []
    return [p for p in str(value).replace("；", ";").replace("、", ";").split(";") if p]


def _index_of(values: pd.Series, vocabulary: Sequence[str]) -> np.ndarray:
    pos = {v: i for i, v in enumerate(vocabulary)}
    return np.array([pos.get(str(v), 0) for v in values], dtype=np.int64)


def true_utility(
    latent_block: pd.DataFrame,
    course_truth: pd.DataFrame,
    teachers_block: pd.DataFrame,
    records_block: pd.DataFrame,
) -> np.ndarray:
    """The true value of each course for each teacher now (len(teachers_block) × len(course_truth)).

    latent_block: _truth/latent.parquet rows (teacher_id, competency, theta) for at least these teachers.
    course_truth: _truth/courses.parquet (competencies, weights, quality, level, stages, subjects, practical,
    active, prerequisites). teachers_block: teacher rows (teacher_id, stage, school_type, years_teaching,
    roles — contract file or normalised table). records_block: training records of these teachers.

    u(t, c) = q_c · (1 + bonuses_c) · Σ_j w_cj · r_t,k_j · max(0, 1.5 − θ_t,k_j) · fit(level_c, θ_t,k_j) with
    bonuses for subject-specific, stage-specific and practical courses (see utility_core, relevance). It is 0
    for a course that is inactive, closed to the teacher's stage or subject, already completed, or whose
    prerequisites the teacher has not completed. Observed choices, completions, scores and satisfaction in
    the synthetic records are driven by this same quantity.
    """
    tids = teachers_block["teacher_id"].astype(str).to_numpy()
    wide = latent_block.pivot(index="teacher_id", columns="competency", values="theta")
    codes = [c for c in load_taxonomy()["code"] if c in wide.columns]
    theta = wide.reindex(index=tids, columns=codes).to_numpy(dtype=np.float32)
    theta = np.nan_to_num(theta, nan=0.0)
    theta_pad = np.concatenate([theta, np.zeros((len(tids), 1), np.float32)], axis=1)
    stage = _index_of(teachers_block["stage"], STAGES)
    stype = _index_of(teachers_block["school_type"].fillna("town"), SCHOOL_TYPES)
    years = pd.to_numeric(teachers_block["years_teaching"], errors="coerce").fillna(0).to_numpy()
    role_lists = [set(_as_list(v)) for v in teachers_block.get("roles", pd.Series([None] * len(tids)))]
    roles = np.array([[r in rl for r in ROLES] for rl in role_lists], dtype=bool).reshape(
        len(tids), len(ROLES)
    )
    rel = relevance(stage, stype, years, roles, codes)
    rel_pad = np.concatenate([rel, np.zeros((len(tids), 1), np.float32)], axis=1)

    code_pos = {c: i for i, c in enumerate(codes)}
    n_courses = len(course_truth)
    comp_idx = np.full((n_courses, MAX_CODES), len(codes), dtype=np.int64)
    comp_w = np.zeros((n_courses, MAX_CODES), dtype=np.float32)
    for i, (comps, ws) in enumerate(zip(course_truth["competencies"], course_truth["weights"], strict=True)):
        for j, (c, w) in enumerate(zip(_as_list(comps), ws, strict=False)):
            if c in code_pos and j < MAX_CODES:
                comp_idx[i, j], comp_w[i, j] = code_pos[c], float(w)
    stages_l = [_as_list(v) for v in course_truth["stages"]]
    subjects_l = [_as_list(v) for v in course_truth["subjects"]]
    mult = (
        course_truth["quality"].to_numpy(dtype=np.float32)
        * (1.0 + SUBJECT_BONUS * np.array([len(s) > 0 for s in subjects_l]))
        * (1.0 + STAGE_BONUS * np.array([len(s) > 0 for s in stages_l]))
        * (1.0 + PRACTICAL_BONUS * course_truth["practical"].fillna(False).to_numpy(dtype=bool))
    ).astype(np.float32)
    level = course_truth["level"].to_numpy(dtype=np.float32)

    u = utility_core(
        theta_pad[:, comp_idx], rel_pad[:, comp_idx], comp_w[None], level[None, :], mult[None, :]
    ).astype(np.float64)

    t_stage = teachers_block["stage"].astype(str).to_numpy()
    t_subject = teachers_block["subject"].astype(str).to_numpy()
    stage_ok = np.array([[not s or st in s for s in stages_l] for st in np.unique(t_stage)], dtype=bool)
    subj_ok = np.array([[not s or sb in s for s in subjects_l] for sb in np.unique(t_subject)], dtype=bool)
    eligible = (
        stage_ok[np.searchsorted(np.unique(t_stage), t_stage)]
        & subj_ok[np.searchsorted(np.unique(t_subject), t_subject)]
        & course_truth["active"].to_numpy(dtype=bool)[None, :]
    )
    cpos = pd.Series(np.arange(n_courses), index=course_truth["course_id"].astype(str))
    tpos = pd.Series(np.arange(len(tids)), index=tids)
    done = np.zeros((len(tids), n_courses + 1), dtype=bool)  # last column: "no prerequisite"
    done[:, n_courses] = True
    rec = records_block[records_block["status"].astype(str) == "completed"]
    rec = rec[rec["course_id"].notna() & rec["teacher_id"].astype(str).isin(tpos.index)]
    rec = rec[rec["course_id"].astype(str).isin(cpos.index)]
    done[tpos[rec["teacher_id"].astype(str)].to_numpy(), cpos[rec["course_id"].astype(str)].to_numpy()] = True
    prereq_ok = np.ones((len(tids), n_courses), dtype=bool)
    for i, pre in enumerate(course_truth["prerequisites"]):
        for p in _as_list(pre):
            prereq_ok[:, i] &= done[:, cpos[p]] if p in cpos.index else False
    u[~(eligible & prereq_ok) | done[:, :n_courses]] = 0.0
    return u


# ---------------------------------------------------------------------------------------------------------
# geography and teachers


@dataclass(frozen=True)
class _Teachers:
    ids: np.ndarray
    county: np.ndarray  # index into geography
    school: np.ndarray
    school_type: np.ndarray  # index into SCHOOL_TYPES
    stage: np.ndarray  # index into STAGES
    subject: np.ndarray  # index into SUBJECTS
    title: np.ndarray  # index into TITLES
    years: np.ndarray
    roles: np.ndarray  # n × len(ROLES) bool
    birth_year: np.ndarray
    female: np.ndarray


def _geography() -> pd.DataFrame:
    """Counties of seed 004 (demonstration, project, revitalisation-support and others it names)."""
    geo = load_counties()[["county", "city", "category"]].drop_duplicates("county").reset_index(drop=True)
    suffix = geo["county"].str[-1]
    geo["kind"] = np.where(suffix == "区", "district", np.where(suffix == "市", "city", "county"))
    return geo


def _choice(rng: np.random.Generator, weights: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """Categorical draws of indices into weights (relative, not necessarily summing to 1) by inverse CDF."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.asarray(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").clip(0, len(cdf) - 1))


def _apportion(n: int, shares: np.ndarray) -> np.ndarray:
    """n split in proportion to shares, in whole numbers that add up to n (largest remainders)."""
    exact = n * np.asarray(shares, dtype=np.float64) / float(np.sum(shares))
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[: n - int(counts.sum())]] += 1
    return counts


def _make_teachers(n: int, geo: pd.DataFrame, rng: np.random.Generator, as_of: date) -> _Teachers:
    kind = geo["kind"].to_numpy()
    county_w = np.select([kind == "district", kind == "city"], [0.8, 1.1], 1.3) * rng.uniform(
        0.6, 1.4, len(geo)
    )
    # Teachers per stage are fixed to the province's shares first (a few big senior schools drawn or not would
    # otherwise swing a small province's stage mix by ten points); then each stage's schools are drawn until
    # they hold its teachers. Within a stage, a school type is drawn with odds = its share of teachers / its
    # typical school size, so small rural schools are many.
    median = np.array([[6, 14, 25], [12, 45, 85], [30, 60, 110], [60, 120, 200]], dtype=np.float64)
    per_stage = _apportion(n, STAGE_TEACHER_SHARE)
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # stage, type, county, size
    for si, n_stage in enumerate(per_stage):
        if n_stage == 0:
            continue
        n_schools = int(n_stage / median[si].min()) + 5
        s_county = _choice(rng, county_w, n_schools)
        s_type = np.zeros(n_schools, dtype=np.int64)
        for kd, type_shares in SCHOOL_TYPE_SHARE.items():
            m = np.flatnonzero(kind[s_county] == kd)
            s_type[m] = _choice(rng, np.array(type_shares[si]) / median[si], len(m))
        size = np.maximum(2, np.round(median[si, s_type] * rng.lognormal(0.0, 0.5, n_schools))).astype(
            np.int64
        )
        while size.sum() < n_stage:  # a draw of only tiny schools: rare, but never short of teachers
            size = size * 2
        ends = np.cumsum(size)
        keep = int(np.searchsorted(ends, n_stage) + 1)
        size = size[:keep]
        size[-1] -= int(ends[keep - 1] - n_stage)
        blocks.append((np.full(keep, si), s_type[:keep], s_county[:keep], size))
    s_stage, s_type, s_county, size = (np.concatenate(parts) for parts in zip(*blocks, strict=True))
    school = np.repeat(np.arange(len(size)), size)
    stage = s_stage[school]
    stype = s_type[school]
    county = s_county[school]

    subject = np.zeros(n, dtype=np.int64)
    for si, st in enumerate(STAGES):
        m = np.flatnonzero(stage == si)
        shares = STAGE_SUBJECTS[st]
        w = np.array([shares.get(s, 0.0) for s in SUBJECTS])
        subject[m] = _choice(rng, w, len(m))

    young = rng.random(n) < np.array([0.38, 0.30, 0.24])[stype]
    years = np.where(young, rng.integers(0, 9, n), np.clip(np.round(rng.normal(19, 8.5, n)), 0, 40)).astype(
        np.int64
    )
    entry_age = 21 + rng.poisson(1.6, n) - (stage == 0).astype(np.int64) * 2
    birth_year = as_of.year - np.minimum(years + entry_age, 60)

    z = (
        years / 4.5
        + rng.normal(0, 0.9, n)
        + np.array([-0.25, 0.0, 0.25])[stype]
        + np.array([-0.3, 0.0, 0.1, 0.4])[stage]
    )
    title = np.select([z < 0.3, z < 1.0, z < 3.0, z < 6.1, z < 8.0], [0, 1, 2, 3, 4], 5)
    title = np.where(years < 1, 0, title)
    title = np.where((title == 1) & (stage >= 2), 2, title)  # 三级 exists in practice only in early years
    title = np.where((title == 5) & (rng.random(n) > 0.08), 4, title)

    head = rng.random(n) < np.where(stage == 0, 0.25, np.where((years >= 2) & (years <= 25), 0.40, 0.15))
    # principals and secretaries: the most senior staff of each school
    seniority = years + 3.0 * title + rng.normal(0, 3.0, n)
    order = np.lexsort((-seniority, school))
    starts = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[school[order]]
    ssize = size[school]
    principal = (ssize >= 3) & ((rank == 0) | ((rank == 1) & (ssize >= 40)))
    secretary = ((rank == 2) & (ssize >= 30)) | (
        (rank == 0) & (ssize < 30) & (ssize >= 3) & (rng.random(n) < 0.5)
    )
    trainer = (years >= 8) & (title >= 3) & (rng.random(n) < 0.04)
    researcher = (years >= 10) & (title >= 3) & (rng.random(n) < 0.025)
    head &= ~principal
    roles = np.stack([head, principal, secretary, trainer, researcher], axis=1)
    female = rng.random(n) < np.array([0.97, 0.76, 0.60, 0.52])[stage]

    # teacher ids must not reveal the school: number them in a random order
    perm = rng.permutation(n)
    ids = np.array([f"T{i + 1:07d}" for i in range(n)])
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)

    def o(a: np.ndarray) -> np.ndarray:
        return a[perm]

    return _Teachers(
        ids=ids,
        county=o(county),
        school=o(school),
        school_type=o(stype),
        stage=o(stage),
        subject=o(subject),
        title=o(title),
        years=o(years),
        roles=o(roles),
        birth_year=o(birth_year),
        female=o(female),
    )


def _latent(t: _Teachers, codes: Sequence[str], domains: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """True competencies θ (teachers × codes): a general factor, domain factors and specific noise, shifted by
    career stage, urban/rural setting, school stage and roles."""
    n, k = len(t.ids), len(codes)
    fam = code_family(codes)
    codes_arr = np.asarray(codes)
    dom_names, dom_idx = np.unique(domains, return_inverse=True)
    g = rng.standard_normal(n).astype(np.float32)
    f = rng.standard_normal((n, len(dom_names))).astype(np.float32)
    e = rng.standard_normal((n, k)).astype(np.float32)
    load_s = np.sqrt(1.0 - LOAD_G**2 - LOAD_D**2)
    theta = LOAD_G * g[:, None] + LOAD_D * f[:, dom_idx] + load_s * e

    base = {"A": 0.2, "B": -0.1, "C": -0.5, "ETH": 0.5, "KNW": 0.2, "DES": 0.0, "EVA": -0.2, "CLS": 0.0}
    base |= {"RES": -0.2, "LEAD": -0.3}
    mean = np.array([base.get(fm, 0.0) for fm in fam]) + rng.normal(0, 0.15, k)
    mean[codes_arr == "A3"] += 0.4
    it = np.isin(fam, ("A", "B", "C"))
    y = t.years.astype(np.float32)
    career = 0.9 * (1 - np.exp(-y / 6.0)) - 0.55
    it_career = 0.35 - 0.03 * y + 0.25 * (1 - np.exp(-y / 3.0))
    shift = np.where(it[None, :], it_career[:, None], career[:, None])
    shift += np.array([-0.25, -0.1, 0.0])[t.school_type][:, None]
    shift[:, fam == "C"] += np.array([-0.35, -0.15, 0.0])[t.school_type][:, None]
    shift[:, fam == "B"] += np.array([-0.15, -0.05, 0.0])[t.school_type][:, None]
    kg = t.stage == 0
    shift[:, codes_arr == "KNW4"] += np.where(kg, 0.8, np.where(t.stage == 1, -0.3, -0.8))[:, None]
    shift[:, codes_arr == "KNW1"] += np.where(kg, -0.3, 0.0)[:, None]
    shift[:, ~it] += ((t.title - 2) * 0.08)[:, None]
    head, principal, secretary, trainer, researcher = (t.roles[:, j] for j in range(len(ROLES)))
    shift[:, fam == "CLS"] += (0.35 * head)[:, None]
    shift[:, fam == "LEAD"] += (0.9 * principal + 0.7 * secretary)[:, None]
    shift[:, codes_arr == "LEAD5"] += (0.6 * secretary)[:, None]
    shift[:, fam == "RES"] += (0.2 * principal + 0.5 * trainer + 0.6 * researcher)[:, None]
    shift[:, fam == "EVA"] += (0.2 * trainer + 0.3 * researcher)[:, None]
    shift[:, codes_arr == "KNW2"] += (0.3 * researcher)[:, None]
    return np.asarray(theta + mean[None, :] + shift, dtype=np.float32)


def _display(theta: np.ndarray) -> np.ndarray:
    return np.clip(DISPLAY_CENTRE + DISPLAY_SCALE * theta, 0.0, 100.0)


# ---------------------------------------------------------------------------------------------------------
# course catalogue


@dataclass(frozen=True)
class _Catalogue:
    ids: np.ndarray
    titles: list[str]
    descriptions: list[str]
    comp_idx: np.ndarray  # C × MAX_CODES, padded with K
    comp_w: np.ndarray
    level: np.ndarray
    fmt: np.ndarray
    hours: np.ndarray
    cost: np.ndarray
    practical: np.ndarray  # 1 true, 0 false, -1 unknown (blank in the file)
    stage_mask: np.ndarray  # C × 4 bool; all true = open to every stage
    stage_restricted: np.ndarray
    subject: np.ndarray  # index into SUBJECTS, -1 = all subjects
    mandatory: np.ndarray  # index into MANDATORY_TOPICS, -1 = none
    prereq: np.ndarray  # course index, -1 = none
    provider: np.ndarray  # index into the provider list
    providers: list[str]
    quality: np.ndarray
    popularity: np.ndarray
    launch_year: np.ndarray
    retire_year: np.ndarray  # first year not offered; 9999 = active
    tagged: np.ndarray

    @property
    def active(self) -> np.ndarray:
        return self.retire_year > 9000

    @property
    def multiplier(self) -> np.ndarray:
        return np.asarray(
            self.quality
            * (1.0 + SUBJECT_BONUS * (self.subject >= 0))
            * (1.0 + STAGE_BONUS * self.stage_restricted)
            * (1.0 + PRACTICAL_BONUS * (self.practical == 1)),
            dtype=np.float32,
        )


def default_course_count(n_teachers: int) -> int:
    return int(min(MAX_COURSES, max(600, round(n_teachers / 8))))


def _pick(options: str | Sequence[str], u: float) -> str:
    seq = options.split("|") if isinstance(options, str) else options
    return seq[min(int(u * len(seq)), len(seq) - 1)]


def _course_text(
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
    main = codes[0]
    topics, cues, aims = PHRASES[main]
    topic_phrase = _pick(topics, u[0])
    cue_list = cues.split("|")
    c1 = cue_list[int(u[1] * len(cue_list))]
    c2 = cue_list[(int(u[1] * len(cue_list)) + 1 + int(u[2] * (len(cue_list) - 1))) % len(cue_list)]
    ctx = f"{stage_ctx}{subject_ctx}"
    level_word = _pick(LEVEL_WORDS[level - 1], u[3])
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
        topic_phrase = _pick(MANDATORY_TITLES[topic], u[0])
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
    if fam in ENV_CUES:
        parts[-1] = parts[-1] + f"场景以{_pick(ENV_CUES[fam], u[12])}为主，"
    parts.append(_pick(FORMAT_PHRASES[fmt], u[13]) + "。")
    for j, sec in enumerate(codes[1:]):
        s_topics, s_cues, _ = PHRASES[sec]
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
        p = _pick(PRACTICAL_PHRASES, u[20])
        if p:
            parts.append(p + "。")
    provider_forms = {
        "university": f"主讲团队来自{provider}，|由{provider}学科教学团队开发，|{provider}专家领衔授课，",
        "platform": f"课程由{provider}提供，配有在线测验和学习社区，|{provider}平台课程，|",
        "province": f"{provider}组织遴选的精品课程，|由{provider}统筹开发，|",
        "county": f"由{provider}组织，结合本县乡村学校实际，|{provider}开发的本土化课程，|",
    }
    lead = _pick(provider_forms[provider_kind], u[21])
    parts.append(lead + _pick(FILLERS, u[22]) if lead else _pick(FILLERS, u[22]))
    return title, "".join(parts)


def _make_catalogue(
    n_courses: int, codes: Sequence[str], geo: pd.DataFrame, rng: np.random.Generator, as_of: date
) -> _Catalogue:
    k = len(codes)
    fam = code_family(codes)
    code_pos = {c: i for i, c in enumerate(codes)}
    fam_w = {"ETH": 1.0, "KNW": 1.2, "DES": 1.5, "EVA": 1.1, "CLS": 1.1, "A": 1.0, "B": 0.9, "C": 0.8}
    fam_w |= {"RES": 1.0, "LEAD": 0.7}
    code_w = np.array([fam_w.get(f, 1.0) for f in fam])
    c = n_courses

    topics = list(MANDATORY_TOPICS)
    n_mand = max(30, round(0.06 * c))
    mandatory = np.full(c, -1, dtype=np.int64)
    mand_rows = rng.choice(c, n_mand, replace=False)
    mandatory[mand_rows] = _choice(rng, np.array([MANDATORY_TOPICS[tp][0] for tp in topics]), n_mand)
    # whatever the draw, an open online course of every topic and several of 师德师风, which every policy asks
    # for each year
    guaranteed = mand_rows[: len(topics) + 4]
    mandatory[guaranteed] = [*range(len(topics)), *[topics.index("师德师风")] * 4]

    n_codes = 1 + _choice(rng, np.array([0.5, 0.35, 0.15]), c)
    comp_idx = np.full((c, MAX_CODES), k, dtype=np.int64)
    primary = _choice(rng, code_w, c)
    for i in np.flatnonzero(mandatory >= 0):
        tcodes = MANDATORY_TOPICS[topics[mandatory[i]]][1]
        primary[i] = code_pos[tcodes[int(rng.random() * len(tcodes))]]
    comp_idx[:, 0] = primary
    same_family = rng.random((c, MAX_CODES)) < 0.6
    random_codes = _choice(rng, code_w, (c, MAX_CODES))
    fam_members = {f: np.flatnonzero(fam == f) for f in np.unique(fam)}
    for j in range(1, MAX_CODES):
        has = n_codes > j
        pick = random_codes[:, j].copy()
        for f, members in fam_members.items():
            m = has & same_family[:, j] & (fam[primary] == f)
            pick[m] = members[rng.integers(0, len(members), m.sum())]
        dup = np.any(comp_idx[:, :j] == pick[:, None], axis=1)
        comp_idx[:, j] = np.where(has & ~dup, pick, k)
    # compact the padding to the right and recount
    order = np.argsort(comp_idx == k, axis=1, kind="stable")
    comp_idx = np.take_along_axis(comp_idx, order, axis=1)
    n_codes = (comp_idx < k).sum(axis=1)
    comp_w = np.where(comp_idx < k, np.array(CODE_WEIGHTS, dtype=np.float32)[None, :], 0.0).astype(np.float32)

    level = 1 + _choice(rng, np.array([0.45, 0.35, 0.20]), c)
    lead = fam[primary] == "LEAD"
    level[lead] = 1 + _choice(rng, np.array([0.2, 0.45, 0.35]), int(lead.sum()))
    level[mandatory >= 0] = 1

    # providers: the province's institutions plus county teacher-development centres
    county_names = geo["county"].to_numpy()
    centre_counties = county_names[rng.choice(len(county_names), min(12, len(county_names)), replace=False)]
    providers = [p for p, _ in PROVIDERS] + [f"{cn}教师发展中心" for cn in centre_counties]
    kinds = [kd for _, kd in PROVIDERS] + ["county"] * len(centre_counties)
    prov_w = np.array(
        [{"university": 1.0, "platform": 1.6, "province": 1.2, "county": 0.7}[kd] for kd in kinds]
    )
    provider = _choice(rng, prov_w, c)
    kind_arr = np.array(kinds)[provider]
    fmt = np.zeros(c, dtype=np.int64)
    for kd, format_weights in PROVIDER_FORMATS.items():
        m = np.flatnonzero(kind_arr == kd)
        fmt[m] = _choice(rng, np.array(format_weights), len(m))
    fmt[mandatory >= 0] = np.where(rng.random(int((mandatory >= 0).sum())) < 0.85, 0, 2)
    fmt[guaranteed] = 0

    hours_lo = np.array([2, 12, 10, 6, 24, 4], dtype=np.float64)[fmt]
    hours_typ = np.array([8, 24, 18, 12, 32, 10], dtype=np.float64)[fmt]
    hours = np.clip(np.round(hours_typ * rng.lognormal(0, 0.35, c)), hours_lo, 40.0)
    hours[mandatory >= 0] = np.clip(
        np.round(rng.lognormal(np.log(5), 0.4, int((mandatory >= 0).sum()))), 2, 12
    )
    days = np.ceil(hours / 8.0)
    cost = np.select(
        [fmt == 0, fmt == 1, fmt == 2, fmt == 3, fmt == 4],
        [3.0 * hours, 400.0 * days, 3.0 * hours / 2 + 400.0 * np.ceil(days / 2), 150.0 * days, 450.0 * days],
        0.0,
    )
    p_practical = np.array([0.25, 0.5, 0.6, 0.9, 0.95, 0.85])[fmt]
    practical = (rng.random(c) < p_practical).astype(np.int64)
    practical[mandatory >= 0] = 0
    practical[rng.random(c) < 0.05] = -1

    # who may take it: stage restrictions for a share, subject-specific courses inside one stage
    stage_mask = np.ones((c, 4), dtype=bool)
    restricted = rng.random(c) < 0.4
    one_stage = _choice(rng, np.array([0.2, 0.4, 0.25, 0.15]), c)
    two = rng.random(c) < 0.3
    stage_mask[restricted] = False
    idx = np.flatnonzero(restricted)
    stage_mask[idx, one_stage[idx]] = True
    nb = np.clip(one_stage + np.where(one_stage == 3, -1, 1), 0, 3)
    stage_mask[idx[two[idx]], nb[idx[two[idx]]]] = True
    knw4 = primary == code_pos["KNW4"]
    stage_mask[knw4] = np.array([True, False, False, False])
    stage_mask[knw4 & (rng.random(c) < 0.4), 1] = True
    for i in np.flatnonzero(mandatory >= 0):
        allowed = MANDATORY_TOPICS[topics[mandatory[i]]][2]
        if allowed:
            stage_mask[i] = [s in allowed for s in STAGES]
        elif rng.random() < 0.7 or i in guaranteed:
            stage_mask[i] = True
    stage_restricted = np.asarray(~stage_mask.all(axis=1))
    single = stage_mask.sum(axis=1) == 1
    subj_fams = np.isin(fam[primary], ("KNW", "DES", "EVA", "A", "B", "C"))
    subject = np.full(c, -1, dtype=np.int64)
    want = single & subj_fams & (rng.random(c) < 0.55) & (mandatory < 0)
    only_stage = np.argmax(stage_mask, axis=1)
    for si, st in enumerate(STAGES):
        m = np.flatnonzero(want & (only_stage == si))
        shares = STAGE_SUBJECTS[st]
        w = np.array([shares.get(s, 0.0) for s in SUBJECTS])
        subject[m] = _choice(rng, w, len(m))

    provider_effect = rng.normal(0, 0.25, len(providers))
    q_z = rng.standard_normal(c)
    quality = np.exp(provider_effect[provider] + 0.3 * q_z).astype(np.float32)
    popularity = (
        0.3 * q_z + np.sqrt(1 - 0.09) * rng.standard_normal(c) + 0.5 * (mandatory >= 0) + 0.3 * (fmt == 0)
    ).astype(np.float32)

    y_end = as_of.year
    # years since launch: a few brand-new courses (no history yet), most offered throughout the five years
    launch = y_end - _choice(rng, np.array([0.08, 0.10, 0.12, 0.12, 0.13, 0.15, 0.30]), c)
    retire = np.full(c, 9999, dtype=np.int64)
    gone = (rng.random(c) < 0.08) & (launch < y_end)
    retire[gone] = launch[gone] + 1 + (rng.random(int(gone.sum())) * (y_end - launch[gone])).astype(np.int64)
    retire = np.where(retire <= y_end, retire, 9999)
    retire[gone & (retire == 9999)] = y_end

    retire[guaranteed] = 9999

    # prerequisites: some level-2/3 courses build on an earlier, lower-level course of the same competency
    prereq = np.full(c, -1, dtype=np.int64)
    wants_pre = (level >= 2) & (mandatory < 0) & (rng.random(c) < 0.3)
    for code_i in np.unique(primary[wants_pre]):
        dependants = np.flatnonzero(wants_pre & (primary == code_i))
        for lv in (2, 3):
            dep = dependants[level[dependants] == lv]
            base = np.flatnonzero((primary == code_i) & (level == lv - 1) & (retire == 9999))
            if len(dep) and len(base):
                cand = base[rng.integers(0, len(base), len(dep))]
                ok = launch[cand] <= launch[dep]
                prereq[dep[ok]] = cand[ok]

    tagged = rng.random(c) < 0.5
    u = rng.random((c, 24))
    titles: list[str] = []
    descriptions: list[str] = []
    for row in range(c):
        st_ctx = (
            STAGE_ZH[int(only_stage[row])]
            if single[row]
            else ("中小学" if not stage_mask[row, 0] and stage_restricted[row] else "")
        )
        sb_ctx = SUBJECTS[subject[row]] if subject[row] >= 0 and SUBJECTS[subject[row]] != "学前教育" else ""
        code_list = [codes[j] for j in comp_idx[row, : n_codes[row]]]
        title, desc = _course_text(
            code_list,
            int(level[row]),
            FORMATS[fmt[row]],
            st_ctx,
            sb_ctx,
            providers[provider[row]],
            kinds[provider[row]],
            topics[mandatory[row]] if mandatory[row] >= 0 else None,
            bool(practical[row] == 1),
            u[row],
        )
        titles.append(title)
        descriptions.append(desc)
    return _Catalogue(
        ids=np.array([f"C{i + 1:05d}" for i in range(c)]),
        titles=titles,
        descriptions=descriptions,
        comp_idx=comp_idx,
        comp_w=comp_w,
        level=level,
        fmt=fmt,
        hours=hours,
        cost=np.round(cost),
        practical=practical,
        stage_mask=stage_mask,
        stage_restricted=stage_restricted,
        subject=subject,
        mandatory=mandatory,
        prereq=prereq,
        provider=provider,
        providers=providers,
        quality=quality,
        popularity=popularity,
        launch_year=launch,
        retire_year=retire,
        tagged=tagged,
    )


# ---------------------------------------------------------------------------------------------------------
# assessments: item bank with a Q-matrix, responses from a compensatory M2PL, scale-level scores


@dataclass(frozen=True)
class _ItemBank:
    ids: np.ndarray
    comp_idx: np.ndarray  # I × 2, padded with K
    a: np.ndarray  # I × 2 discriminations (0 for padding)
    b: np.ndarray  # intercept: P = sigmoid(Σ a θ − b)
    max_score: np.ndarray
    forms: np.ndarray  # n_forms × items_per_form item indices


ITEMS_PER_CODE = 6
EXTRA_ITEMS_PER_FORM = 30
N_FORMS = 6


def _make_items(codes: Sequence[str], domains: np.ndarray, rng: np.random.Generator) -> _ItemBank:
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
        rng.random(n_items) < 0.3, 2 + _choice(rng, np.array([0.35, 0.3, 0.2, 0.15]), n_items), 1
    )
    by_code = [np.flatnonzero(primary == j) for j in range(k)]
    forms = np.empty((N_FORMS, k + EXTRA_ITEMS_PER_FORM), dtype=np.int64)
    for f in range(N_FORMS):
        # each form takes a different item of every competency, so every item is answered by someone
        core = np.array([items[(f + j) % len(items)] for j, items in enumerate(by_code)])
        rest = np.setdiff1d(np.arange(n_items), core)
        extra = rng.choice(rest, EXTRA_ITEMS_PER_FORM, replace=False)
        forms[f] = np.sort(np.concatenate([core, extra]))
    return _ItemBank(
        ids=np.array([f"I{i + 1:04d}" for i in range(n_items)]),
        comp_idx=np.stack([primary, second], axis=1),
        a=np.stack([a1, a2], axis=1),
        b=b,
        max_score=max_score.astype(np.int64),
        forms=forms,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _days(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def _make_responses(
    t: _Teachers, theta: np.ndarray, bank: _ItemBank, rng: np.random.Generator, as_of: date
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Who is assessed (about 27 % never are), their test dates and their item responses."""
    n, k = theta.shape
    p_never = 0.27 + np.array([0.06, 0.0, -0.05])[t.school_type] + 0.05 * (t.stage == 0)
    assessed = rng.random(n) >= p_never
    taken = np.asarray(_days(as_of) - rng.integers(20, 540, n))
    form = rng.integers(0, N_FORMS, n)
    theta_pad = np.concatenate([theta, np.zeros((n, 1), np.float32)], axis=1)
    loadings = np.zeros((k + 1, len(bank.ids)), dtype=np.float32)
    cols = np.arange(len(bank.ids))
    loadings[bank.comp_idx[:, 0], cols] += bank.a[:, 0]
    loadings[bank.comp_idx[:, 1], cols] += bank.a[:, 1]
    loadings = loadings[:k]
    # an empty block first, so that a province where nobody is assessed still concatenates
    out_t, out_i, out_s = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for f in range(N_FORMS):
        who = np.flatnonzero(assessed & (form == f))
        items = bank.forms[f]
        for lo in range(0, len(who), 20_000):
            w = who[lo : lo + 20_000]
            p = _sigmoid(theta_pad[w, :k] @ loadings[:, items] - bank.b[items][None, :])
            scores = rng.binomial(bank.max_score[items][None, :], p)
            out_t.append(np.repeat(w, len(items)))
            out_i.append(np.tile(items, len(w)))
            out_s.append(scores.ravel())
    t_idx = np.concatenate(out_t)
    order = np.lexsort((np.concatenate(out_i), t_idx))
    return assessed, {
        "teacher": t_idx[order],
        "item": np.concatenate(out_i)[order],
        "score": np.concatenate(out_s)[order].astype(np.int64),
        "taken": taken[t_idx[order]],
        "taken_by_teacher": taken,
    }


def _make_scale_scores(
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
    display = _display(theta)
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


# ---------------------------------------------------------------------------------------------------------
# five years of training records from a choice model

CONSIDERED = 120  # courses a teacher looks at in a year (platform listing, colleagues' advice)
MAX_PER_YEAR = 10
SHORTLIST = 20
RECORD_BLOCK = 8192
BETA_UTILITY, BETA_POPULARITY, BETA_FORMAT, BETA_CAREER, BETA_MANDATORY = 0.8, 0.6, 0.8, 0.4, 1.5
FORMAT_TASTE = np.array([0.5, 0.0, 0.2, 0.0, -0.4, 0.3])
RURAL_TASTE = np.array([0.3, -0.3, 0.0, 0.0, -0.3, 0.1])
MONTH_WEIGHTS = np.array([0.03, 0.04, 0.09, 0.10, 0.09, 0.06, 0.14, 0.14, 0.07, 0.10, 0.09, 0.05])
STATUS = ("enrolled", "completed", "dropped", "no_show")
# typical utility of a considered course and its spread: outcomes respond to the standardised utility
UTILITY_CENTRE, UTILITY_SPREAD = 2.2, 1.6


def _sorted_contains(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(keys, query).clip(0, len(keys) - 1)
    return np.asarray(keys[pos] == query, dtype=bool)


@dataclass(frozen=True)
class _ChoiceModel:
    """What drives enrolment: true utility, popularity, the teacher's format taste and career stage."""

    cat: _Catalogue
    theta_pad: np.ndarray  # teachers × (K + 1); the last column pads courses with fewer codes
    rel_pad: np.ndarray
    taste: np.ndarray  # teachers × formats
    pref_level: np.ndarray
    group: np.ndarray  # stage × subject group of each teacher
    shelves: dict[tuple[int, int], np.ndarray]

    def shelf(self, g: int, y: int) -> np.ndarray:
        """Courses group g can see in year y, repeated in proportion to their exposure (a uniform draw from it
        is an exposure-weighted draw of a course)."""
        if (g, y) not in self.shelves:
            cat = self.cat
            st, sb = divmod(g, len(SUBJECTS))
            ok = (
                (cat.launch_year <= y)
                & (cat.retire_year > y)
                & cat.stage_mask[:, st]
                & ((cat.subject < 0) | (cat.subject == sb))
            )
            idx = np.flatnonzero(ok)
            exposure = np.exp(0.7 * cat.popularity[idx]) * np.where(
                (cat.subject[idx] >= 0) | cat.stage_restricted[idx], 1.5, 1.0
            )
            copies = np.maximum(
                1, np.round(20 * exposure / max(float(exposure.mean()), 1e-9)) if len(idx) else 1
            )
            self.shelves[(g, y)] = np.repeat(idx, np.asarray(copies, dtype=np.int64)) if len(idx) else idx
        return self.shelves[(g, y)]

    def choose(
        self, rows: np.ndarray, picks: np.ndarray, y: int, done_keys: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each teacher in rows enrols in up to picks courses of year y: (teacher, course, true utility)."""
        cat, c = self.cat, len(self.cat.ids)
        cand = np.zeros((len(rows), CONSIDERED), dtype=np.int64)
        usable = np.ones(len(rows), dtype=bool)
        for g in np.unique(self.group[rows]):
            sel = np.flatnonzero(self.group[rows] == g)
            options = self.shelf(int(g), y)
            if len(options) == 0:
                usable[sel] = False
                continue
            cand[sel] = options[rng.integers(0, len(options), (len(sel), CONSIDERED))]
        ci = cat.comp_idx[cand]
        level = cat.level.astype(np.float32)[cand]
        u = utility_core(
            self.theta_pad[rows[:, None, None], ci],
            self.rel_pad[rows[:, None, None], ci],
            cat.comp_w[cand],
            level,
            cat.multiplier[cand],
        )
        # Gumbel-max sampling without replacement: the top scores of logit + Gumbel noise (−log Exp(1))
        logit = (
            BETA_UTILITY * u
            + BETA_POPULARITY * cat.popularity[cand]
            + BETA_FORMAT * self.taste[rows[:, None], cat.fmt[cand]]
            - BETA_CAREER * np.abs(level - self.pref_level[rows][:, None])
            + BETA_MANDATORY * (cat.mandatory[cand] >= 0)
            - np.log(np.maximum(rng.standard_exponential(cand.shape, dtype=np.float32), 1e-30))
        )
        # only the best SHORTLIST are checked against what the teacher has completed or still lacks
        top = np.argpartition(-logit, SHORTLIST - 1, axis=1)[:, :SHORTLIST]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(logit, top, axis=1), axis=1), axis=1)
        course_top = np.take_along_axis(cand, top, axis=1)
        row_key = rows[:, None].astype(np.int64) * c
        pre = cat.prereq[course_top]
        blocked = (
            _sorted_contains(done_keys, row_key + course_top)
            | ((pre >= 0) & ~_sorted_contains(done_keys, row_key + pre))
            | ~usable[:, None]
            | np.triu(course_top[:, :, None] == course_top[:, None, :], 1).any(axis=1)
        )
        keep = ~blocked & (np.cumsum(~blocked, axis=1) <= picks[:, None])
        r_i, col = np.nonzero(keep)
        m_i = top[r_i, col]
        return rows[r_i], cand[r_i, m_i], u[r_i, m_i]


def _outcomes(
    utility: np.ndarray,
    fit: np.ndarray,
    rural: np.ndarray,
    quality: np.ndarray,
    hours: np.ndarray,
    fmt: np.ndarray,
    y: int,
    as_of: date,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Dates, status, credited hours, score and satisfaction of enrolments in year y.

    The better a course fits the teacher (true utility, format taste, course quality), the likelier it is
    finished, the higher its score and the better it is liked; away-from-school formats see more no-shows.
    """
    m = len(utility)
    uu = (utility - UTILITY_CENTRE) / UTILITY_SPREAD
    log_q = np.log(quality)
    away = np.isin(fmt, (1, 3, 4))
    p_noshow = _sigmoid(-3.0 + 0.9 * away - 0.2 * uu - 0.35 * fit + 0.3 * rural)
    p_drop = _sigmoid(-1.9 - 0.8 * uu - 0.5 * fit + 0.03 * (hours - 10) - 0.8 * log_q)
    status = np.where(rng.random(m) < p_noshow, 3, np.where(rng.random(m) < p_drop, 2, 1))

    latest = y == as_of.year
    if latest:
        offset = (rng.random(m) * as_of.timetuple().tm_yday).astype(np.int64)
    else:
        month_start = np.array([_days(date(y, mm + 1, 1)) for mm in range(12)]) - _days(date(y, 1, 1))
        offset = month_start[_choice(rng, MONTH_WEIGHTS, m)] + rng.integers(0, 28, m)
    start = _days(date(y, 1, 1)) + offset
    duration = np.select(
        [fmt == 0, fmt == 1, fmt == 2, fmt == 3, fmt == 4],
        [
            hours * rng.uniform(1, 4, m),
            np.ceil(hours / 8),
            hours * rng.uniform(1, 3, m),
            hours / 4 * rng.uniform(1, 3, m),
            np.ceil(hours / 8) + rng.integers(0, 4, m),
        ],
        rng.uniform(14, 120, m),
    ).astype(np.int64)
    end = start + np.maximum(duration, 1)
    if not latest:
        end = np.minimum(end, _days(date(y, 12, 31)))
    status = np.where((end > _days(as_of)) & (status != 3), 0, status)
    credited = np.select(
        [status == 2, status == 3], [np.round(hours * rng.uniform(0.1, 0.7, m), 1), 0.0], hours
    )
    score = 60 + 40 * _sigmoid(0.4 + 0.6 * uu + 0.3 * fit + 0.6 * log_q + rng.normal(0, 0.8, m))
    sat = np.clip(np.round(3.7 + 0.45 * uu + 0.3 * fit + 0.8 * log_q + rng.normal(0, 0.75, m)), 1, 5)
    rated_drop = (status == 2) & (rng.random(m) < 0.3)
    return {
        "start": start,
        "end": np.select([status == 1, status == 2], [end, start + np.maximum(duration // 2, 1)], -1),
        "status": status,
        "hours": credited,
        "score": np.where(status == 1, np.round(score, 1), np.nan),
        "satisfaction": np.select([status == 1, rated_drop], [sat, np.maximum(sat - 1, 1)], np.nan),
    }


def _make_records(
    t: _Teachers,
    theta: np.ndarray,
    rel: np.ndarray,
    cat: _Catalogue,
    rng: np.random.Generator,
    as_of: date,
) -> dict[str, np.ndarray]:
    """Five years of course enrolments from the choice model, in blocks of teachers (no per-teacher loop)."""
    n = len(t.ids)
    c = len(cat.ids)
    pad = np.zeros((n, 1), np.float32)
    model = _ChoiceModel(
        cat=cat,
        theta_pad=np.concatenate([theta, pad], axis=1),
        rel_pad=np.concatenate([rel, pad], axis=1),
        taste=(
            FORMAT_TASTE[None, :]
            + (t.school_type == 0)[:, None] * RURAL_TASTE[None, :]
            + rng.normal(0, 0.8, (n, len(FORMATS)))
        ).astype(np.float32),
        pref_level=(1.0 + np.minimum(2.0, t.years / 10.0)).astype(np.float32),
        group=t.stage * len(SUBJECTS) + t.subject,
        shelves={},
    )
    engagement = 3.6 * rng.lognormal(0, 0.35, n)
    year_share = as_of.timetuple().tm_yday / 365.0
    empty_int, empty_float = np.empty(0, np.int64), np.empty(0, np.float64)
    out: dict[str, list[np.ndarray]] = {
        key: [empty_float if key in ("hours", "score", "satisfaction") else empty_int]
        for key in ("teacher", "course", "start", "end", "status", "hours", "score", "satisfaction")
    }
    for lo in range(0, n, RECORD_BLOCK):
        tb = np.arange(lo, min(n, lo + RECORD_BLOCK))
        done_keys = np.empty(0, dtype=np.int64)
        for y in range(as_of.year - HISTORY_YEARS + 1, as_of.year + 1):
            n_pick = np.minimum(
                rng.poisson(engagement[tb] * (year_share if y == as_of.year else 1.0)), MAX_PER_YEAR
            )
            rows = tb[n_pick > 0]
            if len(rows) == 0:
                continue
            teacher, course, utility = model.choose(rows, n_pick[n_pick > 0], y, done_keys, rng)
            res = _outcomes(
                utility,
                model.taste[teacher, cat.fmt[course]],
                t.school_type[teacher] == 0,
                cat.quality[course],
                cat.hours[course],
                cat.fmt[course],
                y,
                as_of,
                rng,
            )
            finished = res["status"] == 1
            done_keys = np.sort(
                np.concatenate([done_keys, teacher[finished].astype(np.int64) * c + course[finished]])
            )
            for key, val in ({"teacher": teacher, "course": course} | res).items():
                out[key].append(val)
    return {key: np.concatenate(v) for key, v in out.items()}


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _project_records(
    t: _Teachers, geo: pd.DataFrame, projects: pd.DataFrame, rng: np.random.Generator, as_of: date
) -> dict[str, np.ndarray]:
    """Participation in provincial projects (国培/省培): the 2022 table, run again each year under new ids.

    Returns per record the teacher, the project run (index into the returned "run_id", "run_name" and
    "run_format" arrays), dates, status and hours.
    """
    n = len(t.ids)
    scale = n / PROVINCE_TEACHERS
    asof_days = _days(as_of)
    county_vocab = list(geo["county"])
    teacher_codes = (
        ("target_stages", STAGES, t.stage),
        ("target_subjects", SUBJECTS, t.subject),
        ("scope_counties", county_vocab, t.county),
        ("target_school_types", SCHOOL_TYPES, t.school_type),
    )
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("teacher", "run", "start", "end", "status", "hours")}
    run_id: list[str] = []
    run_name: list[str] = []
    run_format: list[str] = []
    for y in range(as_of.year - HISTORY_YEARS + 1, as_of.year + 1):
        for p in projects.to_dict("records"):
            ok = np.ones(n, dtype=bool)
            for col, vocab, codes_of_teacher in teacher_codes:
                wanted = _as_list(p.get(col))
                if wanted:
                    ok &= np.isin(np.arange(len(vocab)), [vocab.index(w) for w in wanted if w in vocab])[
                        codes_of_teacher
                    ]
            excluded = [SUBJECTS.index(sb) for sb in _as_list(p.get("excluded_subjects")) if sb in SUBJECTS]
            ok &= ~np.isin(t.subject, excluded)
            roles = [ROLES.index(r) for r in _as_list(p.get("target_roles")) if r in ROLES]
            if roles:
                ok &= t.roles[:, roles].any(axis=1)
            min_years = _number(p.get("min_years"))
            if not np.isnan(min_years):
                ok &= t.years >= int(min_years)
            min_title = p.get("min_title")
            if isinstance(min_title, str) and min_title in TITLES:
                ok &= t.title >= TITLES.index(min_title)
            pool = np.flatnonzero(ok)
            expected = float(np.nan_to_num(_number(p.get("quota")))) * scale * rng.uniform(0.7, 1.3)
            size = min(len(pool), int(expected) + int(rng.random() < expected - int(expected)))
            start_day = _days(date(y, 1, 1)) + int(rng.integers(120, 300))
            if size == 0 or start_day > asof_days:
                continue
            who = np.sort(rng.choice(pool, size, replace=False))
            days = float(np.nan_to_num(_number(p.get("days"))))
            online = float(np.nan_to_num(_number(p.get("online_hours"))))
            end_day = start_day + int(max(days, 1) + online / 2)
            status = np.where(rng.random(size) < 0.09, 3, np.where(rng.random(size) < 0.04, 2, 1))
            if end_day > asof_days:
                status = np.where(status == 3, 3, 0)
            full = days * 8 + online
            hours = np.select([status == 1, status == 2, status == 3], [full, np.round(days * 4), 0.0], full)
            out["teacher"].append(who)
            out["run"].append(np.full(size, len(run_id)))
            out["start"].append(np.full(size, start_day))
            out["end"].append(np.where(status == 1, end_day, -1))
            out["status"].append(status)
            out["hours"].append(hours.astype(np.float64))
            run_id.append(str(p["project_id"]).replace("2022", str(y), 1))
            run_name.append(str(p["name"]))
            run_format.append(str(p.get("format") or "offline"))
    result = {k: np.concatenate(v) if v else np.empty(0, dtype=np.int64) for k, v in out.items()}
    result["run_id"] = np.array(run_id, dtype=object)
    result["run_name"] = np.array(run_name, dtype=object)
    result["run_format"] = np.array(run_format, dtype=object)
    return result


# ---------------------------------------------------------------------------------------------------------
# writing


def _write_csv(table: pa.Table, path: Path) -> None:
    options = pacsv.WriteOptions(quoting_style="needed")
    atomic_write(path, lambda p: pacsv.write_csv(table, p, write_options=options))


def _write_parquet(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p))


def _dates(days: np.ndarray) -> pa.Array:
    days = np.asarray(days, dtype=np.int64)
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=days < 0)


def _floats(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, mask=np.isnan(values))


def _join(parts: np.ndarray, vocabulary: Sequence[str]) -> list[str | None]:
    """';'-joined names of the true entries of each row of a bool matrix (None when empty)."""
    out: list[str | None] = []
    for row in parts:
        names = [vocabulary[int(j)] for j in np.flatnonzero(row)]
        out.append(";".join(names) if names else None)
    return out


def _teachers_table(t: _Teachers, geo: pd.DataFrame) -> pa.Table:
    role_names = np.array(
        _join(np.array([[(m >> j) & 1 for j in range(len(ROLES))] for m in range(32)]), ROLES)
    )
    mask = (t.roles * (1 << np.arange(len(ROLES)))).sum(axis=1)
    county_ids = t.county
    return pa.table(
        {
            "teacher_id": pa.array(t.ids),
            "province": pa.array(np.full(len(t.ids), PROVINCE)),
            "city": pa.array(geo["city"].to_numpy()[county_ids]),
            "county": pa.array(geo["county"].to_numpy()[county_ids]),
            "school_id": pa.array(np.char.add("S", np.char.zfill((t.school + 1).astype(str), 6))),
            "school_type": pa.array(np.array(SCHOOL_TYPES)[t.school_type]),
            "stage": pa.array(np.array(STAGES)[t.stage]),
            "subject": pa.array(np.array(SUBJECTS)[t.subject]),
            "title": pa.array(np.array(TITLES)[t.title]),
            "years_teaching": pa.array(t.years.astype(np.int64)),
            "roles": pa.array(role_names[mask]),
            "birth_year": pa.array(t.birth_year.astype(np.int64)),
            "gender": pa.array(np.where(t.female, "女", "男")),
        }
    )


def _courses_table(cat: _Catalogue, codes: Sequence[str]) -> pa.Table:
    code_lists = [[codes[j] for j in row[row < len(codes)]] for row in cat.comp_idx]
    comp = [";".join(cl) if tag else None for cl, tag in zip(code_lists, cat.tagged, strict=True)]
    topics = list(MANDATORY_TOPICS)
    return pa.table(
        {
            "course_id": pa.array(cat.ids),
            "title": pa.array(cat.titles),
            "description": pa.array(cat.descriptions),
            "hours": pa.array(cat.hours.astype(np.float64)),
            "format": pa.array(np.array(FORMATS)[cat.fmt]),
            "competencies": pa.array(comp, type=pa.string()),
            "stages": pa.array(
                [
                    s if r else None
                    for s, r in zip(_join(cat.stage_mask, STAGES), cat.stage_restricted, strict=True)
                ],
                type=pa.string(),
            ),
            "subjects": pa.array([SUBJECTS[s] if s >= 0 else None for s in cat.subject], type=pa.string()),
            "level": pa.array(cat.level.astype(np.int64)),
            "practical": pa.array(cat.practical == 1, mask=cat.practical < 0),
            "mandatory_topic": pa.array(
                [topics[m] if m >= 0 else None for m in cat.mandatory], type=pa.string()
            ),
            "prerequisites": pa.array([cat.ids[p] if p >= 0 else None for p in cat.prereq], type=pa.string()),
            "provider": pa.array(np.array(cat.providers)[cat.provider]),
            "cost_yuan": pa.array(cat.cost.astype(np.float64)),
            "active": pa.array(cat.active),
        }
    )


def _course_truth_table(cat: _Catalogue, codes: Sequence[str]) -> pa.Table:
    k = len(codes)
    return pa.table(
        {
            "course_id": pa.array(cat.ids),
            "competencies": pa.array([[codes[j] for j in row[row < k]] for row in cat.comp_idx]),
            "weights": pa.array(
                [w[row < k].tolist() for row, w in zip(cat.comp_idx, cat.comp_w, strict=True)]
            ),
            "quality": pa.array(cat.quality),
            "level": pa.array(cat.level.astype(np.int64)),
            "popularity": pa.array(cat.popularity),
            "tagged": pa.array(cat.tagged),
            "stages": pa.array(
                [
                    [STAGES[j] for j in np.flatnonzero(m)] if r else []
                    for m, r in zip(cat.stage_mask, cat.stage_restricted, strict=True)
                ]
            ),
            "subjects": pa.array(
                [[SUBJECTS[s]] if s >= 0 else [] for s in cat.subject], type=pa.list_(pa.string())
            ),
            "practical": pa.array(cat.practical == 1, mask=cat.practical < 0),
            "active": pa.array(cat.active),
            "prerequisites": pa.array(
                [[cat.ids[p]] if p >= 0 else [] for p in cat.prereq], type=pa.list_(pa.string())
            ),
            "launch_year": pa.array(cat.launch_year.astype(np.int64)),
        }
    )


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """prefix + zero-padded 1..n, built in Arrow (millions of ids without a Python loop)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _take(values: Sequence[str] | np.ndarray, index: np.ndarray) -> pa.Array:
    """values[index] as an Arrow string column, null where index < 0."""
    index = np.asarray(index, dtype=np.int64)
    return pa.array(list(values), type=pa.string()).take(pa.array(index, mask=index < 0))


def _records_table(
    rec: dict[str, np.ndarray],
    proj: dict[str, np.ndarray],
    cat: _Catalogue,
    ids: pa.Array,
    rng: np.random.Generator,
) -> pa.Table:
    """Course and project records together, ordered by start date then teacher, then numbered."""
    n_rec = len(rec["teacher"])
    p_n = len(proj["teacher"])
    none = np.full(p_n, -1, dtype=np.int64)

    def both(key: str, project_values: np.ndarray) -> np.ndarray:
        return np.concatenate([rec[key], project_values])

    done = proj["status"] == 1
    p_score = np.where(done, np.round(rng.normal(86, 6, p_n).clip(60, 100), 1), np.nan)
    p_sat = np.where(done, np.clip(np.round(rng.normal(4.3, 0.6, p_n)), 1, 5), np.nan)
    teacher = both("teacher", proj["teacher"]).astype(np.int64)
    start = both("start", proj["start"]).astype(np.int64)
    order = np.lexsort((np.arange(n_rec + p_n), teacher, start))
    course = np.concatenate([rec["course"], none])[order]
    run = np.concatenate([np.full(n_rec, -1, dtype=np.int64), proj["run"]])[order]
    run_format = [FORMATS.index(f) if f in FORMATS else 1 for f in proj["run_format"]]
    fmt = np.concatenate([cat.fmt[rec["course"]], np.asarray(run_format, dtype=np.int64)[proj["run"]]])[order]
    return pa.table(
        {
            "record_id": _ids("R", n_rec + p_n, 8),
            "teacher_id": ids.take(pa.array(teacher[order])),
            "course_id": _take(cat.ids, course),
            "project_id": _take(proj["run_id"], run),
            "project_name": _take(proj["run_name"], run),
            "start_date": _dates(start[order]),
            "end_date": _dates(both("end", proj["end"])[order]),
            "hours": pa.array(both("hours", proj["hours"])[order].astype(np.float64)),
            "format": _take(FORMATS, fmt),
            "status": _take(STATUS, both("status", proj["status"])[order]),
            "score": _floats(both("score", p_score)[order]),
            "satisfaction": _floats(both("satisfaction", p_sat)[order]),
        }
    )


def generate(
    out_dir: str | Path,
    n_teachers: int = 5000,
    seed: int = 0,
    as_of: date = DEFAULT_AS_OF,
    n_courses: int | None = None,
) -> GenerationSummary:
    """Write a synthetic 江西省 province in the input data contract to out_dir, and its truth to out_dir/_truth.

    Deterministic per (n_teachers, seed, as_of, n_courses): the same arguments give the same bytes.
    """
    if n_teachers < 1:
        raise ValueError(f"n_teachers must be at least 1, got {n_teachers}")
    out = Path(out_dir)
    truth_dir = out / "_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    rng_teachers, rng_latent, rng_courses, rng_items, rng_resp, rng_scores, rng_records, rng_projects = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)
    )
    taxonomy = load_taxonomy()
    codes = list(taxonomy["code"])
    domains = taxonomy["domain"].to_numpy()
    geo = _geography()

    t = _make_teachers(n_teachers, geo, rng_teachers, as_of)
    theta = _latent(t, codes, domains, rng_latent)
    rel = relevance(t.stage, t.school_type, t.years, t.roles, codes)
    cat = _make_catalogue(n_courses or default_course_count(n_teachers), codes, geo, rng_courses, as_of)
    bank = _make_items(codes, domains, rng_items)
    assessed, resp = _make_responses(t, theta, bank, rng_resp, as_of)
    scales = _make_scale_scores(theta, assessed, resp["taken_by_teacher"], codes, t.stage, rng_scores)
    rec = _make_records(t, theta, rel, cat, rng_records, as_of)
    projects = load_jiangxi_projects()
    proj = _project_records(t, geo, projects, rng_projects, as_of)

    codes_arr = np.array(codes)
    teachers_tbl = _teachers_table(t, geo)
    courses_tbl = _courses_table(cat, codes)
    items_tbl = pa.table(
        {
            "item_id": pa.array(bank.ids),
            "competencies": pa.array(
                [";".join(codes_arr[row[row < len(codes)]]) for row in bank.comp_idx], type=pa.string()
            ),
            "max_score": pa.array(bank.max_score.astype(np.float64)),
        }
    )
    ids = pa.array(t.ids)
    responses_tbl = pa.table(
        {
            "teacher_id": ids.take(pa.array(resp["teacher"])),
            "item_id": pa.array(bank.ids).take(pa.array(resp["item"])),
            "score": pa.array(resp["score"]),
            "taken_at": _dates(resp["taken"]),
        }
    )
    scores_tbl = pa.table(
        {
            "teacher_id": ids.take(pa.array(scales["teacher"])),
            "competency": pa.array(codes_arr).take(pa.array(scales["code"])),
            "score": pa.array(scales["score"]),
            "taken_at": _dates(scales["taken"]),
            "source": pa.array(np.array(["self", "observation", "test"])[scales["source"]]),
        }
    )

    records_tbl = _records_table(rec, proj, cat, ids, rng_projects)
    tables = {
        "teachers": teachers_tbl,
        "courses": courses_tbl,
        "training_records": records_tbl,
        "items": items_tbl,
        "responses": responses_tbl,
        "competency_scores": scores_tbl,
        "projects": _projects_table(projects),
    }
    for name, tbl in tables.items():
        _write_csv(tbl, out / f"{name}.csv")

    # ground truth
    n, k = theta.shape
    _write_parquet(
        pa.table(
            {
                "teacher_id": ids.take(pa.array(np.repeat(np.arange(n), k))),
                "competency": pa.array(codes_arr).take(pa.array(np.tile(np.arange(k), n))),
                "theta": pa.array(theta.ravel()),
                "score_0_100": pa.array(_display(theta).ravel().astype(np.float32)),
            }
        ),
        truth_dir / "latent.parquet",
    )
    course_truth = _course_truth_table(cat, codes)
    _write_parquet(course_truth, truth_dir / "courses.parquet")
    _write_parquet(
        pa.table(
            {
                "item_id": pa.array(bank.ids),
                "competencies": pa.array([list(codes_arr[row[row < k]]) for row in bank.comp_idx]),
                "discrimination": pa.array(
                    [list(a[row < k]) for row, a in zip(bank.comp_idx, bank.a, strict=True)]
                ),
                "difficulty": pa.array(bank.b),
                "max_score": pa.array(bank.max_score.astype(np.int64)),
            }
        ),
        truth_dir / "items.parquet",
    )
    # Teacher ids are numbered in a random order, so the first ones are a random sample of the province.
    utility_teachers = min(n, max(1, UTILITY_CELLS_MAX // len(cat.ids)))
    m = utility_teachers
    sample_records = records_tbl.filter(
        pc.and_(
            pc.is_in(records_tbl["teacher_id"], value_set=pa.array(t.ids[:m])),
            pc.equal(records_tbl["status"], "completed"),
        )
    )
    sample_latent = pd.DataFrame(
        {
            "teacher_id": np.repeat(t.ids[:m], k),
            "competency": np.tile(codes_arr, m),
            "theta": theta[:m].ravel(),
        }
    )
    _write_parquet(
        _utility_table(
            teachers_tbl.slice(0, m).to_pandas(),
            sample_latent,
            course_truth.to_pandas(),
            sample_records.to_pandas(),
        ),
        truth_dir / "utility.parquet",
    )
    if utility_teachers == n:
        note = f"utility.parquet：每位教师真实效用最高的 {UTILITY_TOP_PER_TEACHER} 门课程"
    else:
        note = (
            f"utility.parquet：随机抽样的 {utility_teachers:,} 位教师（编号最小者）各自真实效用最高的 "
            f"{UTILITY_TOP_PER_TEACHER} 门课程；其余教师可用 true_utility() 分块计算"
        )
    rows = {name: tbl.num_rows for name, tbl in tables.items()}
    meta = {
        "seed": seed,
        "n_teachers": n_teachers,
        "n_courses": len(cat.ids),
        "as_of": as_of.isoformat(),
        "rows": rows,
        "assessed_teachers": int(assessed.sum()),
        "utility_teachers": utility_teachers,
        "note": note,
        "files": TRUTH_FILES,
        "display": {
            "centre": DISPLAY_CENTRE,
            "scale": DISPLAY_SCALE,
            "formula": "score_0_100 = clip(centre + scale × theta, 0, 100)",
        },
        "utility_model": {
            "target_theta": TARGET_THETA,
            "level_sd": LEVEL_SD,
            "code_weights": list(CODE_WEIGHTS),
            "subject_bonus": SUBJECT_BONUS,
            "stage_bonus": STAGE_BONUS,
            "practical_bonus": PRACTICAL_BONUS,
            "top_per_teacher": UTILITY_TOP_PER_TEACHER,
        },
        "self_rating": {"bias": SELF_RATING_BIAS, "sd": SELF_RATING_SD},
    }
    write_text_atomic(truth_dir / "meta.json", json.dumps(meta, ensure_ascii=False, indent=2, sort_keys=True))
    return GenerationSummary(
        out_dir=out,
        seed=seed,
        n_teachers=n_teachers,
        rows=rows,
        utility_teachers=utility_teachers,
        note=note,
    )


def _projects_table(projects: pd.DataFrame) -> pa.Table:
    """The reference project table in the contract's file form (list cells joined with ';')."""
    df = projects.copy()
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            df[col] = df[col].map(lambda v: ";".join(map(str, v)) if len(_as_list(v)) else None)
    return pa.Table.from_pandas(df, preserve_index=False)


def _utility_table(
    teachers: pd.DataFrame, latent: pd.DataFrame, course_truth: pd.DataFrame, records: pd.DataFrame
) -> pa.Table:
    """Each teacher's top true utilities; latent holds k rows per teacher in the order of ``teachers``."""
    k = len(latent) // max(1, len(teachers))
    course_ids = course_truth["course_id"].to_numpy()
    rec_by_teacher = records[records["course_id"].notna()]
    parts_t, parts_c, parts_u = [], [], []
    block = max(1, 2_000_000 // max(1, len(course_ids)))
    for lo in range(0, len(teachers), block):
        tb = teachers.iloc[lo : lo + block]
        lb = latent.iloc[lo * k : (lo + len(tb)) * k]
        rb = rec_by_teacher[rec_by_teacher["teacher_id"].isin(tb["teacher_id"])]
        u = true_utility(lb, course_truth, tb, rb)
        top = min(UTILITY_TOP_PER_TEACHER, u.shape[1])
        idx = np.argpartition(-u, top - 1, axis=1)[:, :top]
        vals = np.take_along_axis(u, idx, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        r, col = np.nonzero(vals > 0)
        parts_t.append(tb["teacher_id"].to_numpy()[r])
        parts_c.append(course_ids[idx[r, col]])
        parts_u.append(vals[r, col].astype(np.float32))
    return pa.table(
        {
            "teacher_id": pa.array(np.concatenate(parts_t)),
            "course_id": pa.array(np.concatenate(parts_c)),
            "utility": pa.array(np.concatenate(parts_u)),
        }
    )
