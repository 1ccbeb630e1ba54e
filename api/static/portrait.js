/* 我的画像: competency radar with its 95% band, hours owed vs done, strengths and gaps, competencies folded by
   domain, the training timeline, and 我的成长 (growth.js). */
"use strict";

(() => {
  const { el, fill, fmt, label } = TDR;
  const Z = 1.96;
  const clamp = (x) => Math.max(0, Math.min(100, x));

  /* Axes of the radar: each competency when few, else each domain (mean estimate; SE of a mean of independents). */
  function radarAxes(competencies) {
    if (competencies.length <= 12) {
      return competencies.map((c) => ({ name: c.name || c.competency, est: c.estimate, se: c.std_error, peer: c.peer_mean }));
    }
    const groups = new Map();
    for (const c of competencies) {
      const key = c.domain || "其他";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    return Array.from(groups, ([name, cs]) => {
      const n = cs.length;
      const peers = cs.filter((c) => c.peer_mean !== null && c.peer_mean !== undefined);
      return {
        name,
        est: cs.reduce((s, c) => s + c.estimate, 0) / n,
        se: Math.sqrt(cs.reduce((s, c) => s + c.std_error ** 2, 0)) / n,
        peer: peers.length ? peers.reduce((s, c) => s + c.peer_mean, 0) / peers.length : null,
      };
    });
  }

  /* Long Chinese names break into lines of four characters so the radar keeps its size on a phone. */
  const wrap = (text) => text.replace(/(.{4})(?=.)/g, "$1\n");

  function drawRadar(competencies) {
    const axes = radarAxes(competencies);
    if (axes.length < 3) { fill("radar", el("p", { class: "muted" }, "能力点不足三个，无法绘制雷达图。")); return; }
    const upper = axes.map((a) => +clamp(a.est + Z * a.se).toFixed(1));
    const lower = axes.map((a) => +clamp(a.est - Z * a.se).toFixed(1));
    const data = [
      // upper first, then lower painted over it in the background colour: what remains visible is the band
      { name: "95% 区间上限", value: upper, symbol: "none", lineStyle: { width: 0 }, areaStyle: { color: "rgba(23,105,170,.22)" } },
      { name: "95% 区间下限", value: lower, symbol: "none", lineStyle: { width: 0 }, areaStyle: { color: "#fff", opacity: 1 } },
      { name: "能力估计", value: axes.map((a) => +a.est.toFixed(1)), lineStyle: { width: 2, color: "#1769aa" }, itemStyle: { color: "#1769aa" } },
    ];
    if (axes.every((a) => a.peer !== null && a.peer !== undefined)) {
      data.push({ name: "同类教师平均", value: axes.map((a) => +a.peer.toFixed(1)), symbol: "none", lineStyle: { type: "dashed", color: "#7b8794" }, itemStyle: { color: "#7b8794" } });
    }
    TDR.chart("radar").setOption({
      animation: false,
      tooltip: { trigger: "item" },
      legend: { bottom: 0, data: ["能力估计", "同类教师平均"] },
      radar: {
        indicator: axes.map((a) => ({ name: a.name, max: 100, min: 0 })),
        radius: "52%",
        splitArea: { show: false },
        axisName: { color: "#3e4c59", fontSize: 11, formatter: wrap },
      },
      series: [{ type: "radar", data }],
    });
  }

  function drawHours(p) {
    const facts = [
      ["应修学时", fmt(p.hours_required)], ["已修学时", fmt(p.hours_done)], ["尚欠学时", fmt(p.hours_owed)],
      ["信息技术尚欠", fmt(p.it_hours_owed)],
    ];
    fill("hours-facts", facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
      el("dt", {}, "未完成必修"),
      el("dd", {}, p.missing_mandatory.length ? el("ul", { class: "chips" }, p.missing_mandatory.map((t) => el("li", { class: "chip warn" }, t))) : "无"));
    const required = p.hours_required || (p.hours_done || 0) + (p.hours_owed || 0);
    if (!required) { fill("hours", el("p", { class: "muted" }, "暂无学时要求数据。")); return; }
    const done = Math.min(p.hours_done ?? required - (p.hours_owed || 0), required);
    TDR.chart("hours").setOption({
      animation: false,
      series: [{
        type: "gauge", min: 0, max: required, startAngle: 200, endAngle: -20, radius: "95%", center: ["50%", "62%"],
        progress: { show: true, width: 14 }, axisLine: { lineStyle: { width: 14 } }, pointer: { show: false },
        axisTick: { show: false }, splitLine: { show: false }, axisLabel: { show: false },
        detail: { valueAnimation: false, offsetCenter: [0, "10%"], fontSize: 20, formatter: (v) => v.toFixed(0) + " / " + required.toFixed(0) + " 学时" },
        title: { offsetCenter: [0, "45%"], fontSize: 12 },
        data: [{ value: done, name: "已修 / 应修" }],
      }],
    });
  }

  function rangeBar(c) {
    const lo = clamp(c.estimate - Z * c.std_error), hi = clamp(c.estimate + Z * c.std_error);
    return el("div", { class: "range", title: "95% 区间 " + fmt(lo) + "–" + fmt(hi) },
      el("span", { class: "band", style: "left:" + lo + "%;width:" + (hi - lo) + "%" }),
      c.peer_mean === null || c.peer_mean === undefined ? null : el("span", { class: "peer", style: "left:" + clamp(c.peer_mean) + "%" }),
      el("span", { class: "point", style: "left:" + clamp(c.estimate) + "%" }));
  }

  const peerDiff = (c) => (c.peer_mean === null || c.peer_mean === undefined ? 0 : c.estimate - c.peer_mean);

  /* At a glance: the three strongest competencies (furthest above peers) and the three largest gaps. */
  function drawHighlights(competencies) {
    const measured = competencies.filter((c) => !c.is_prior);
    const pool = measured.length ? measured : competencies;
    const strengths = [...pool].sort((a, b) => peerDiff(b) - peerDiff(a)).filter((c) => peerDiff(c) > 0).slice(0, 3);
    const gaps = [...pool].sort((a, b) => (b.gap ?? 0) - (a.gap ?? 0)).filter((c) => (c.gap ?? 0) > 0).slice(0, 3);
    const list = (title, cs, note, empty) => el("div", {},
      el("h3", { class: "small" }, title),
      cs.length ? el("ol", { class: "plain" }, cs.map((c) => el("li", {}, c.name || c.competency,
        el("span", { class: "muted small" }, "（" + note(c) + "）")))) : el("p", { class: "muted small" }, empty));
    fill("highlights",
      list("优势", strengths, (c) => fmt(c.estimate) + " 分，高于同类 " + fmt(peerDiff(c)), "暂无明显高于同类教师的能力点。"),
      list("待提升", gaps, (c) => fmt(c.estimate) + " 分，距目标 " + fmt(c.gap), "各能力点均已达到目标水平。"));
  }

  function competencyRow(c) {
    return el("tr", {},
      el("td", { class: "wrap" }, c.name || c.competency, el("div", { class: "muted small" }, label("source", c.source))),
      el("td", {}, fmt(c.estimate), el("div", { class: "muted small" }, fmt(clamp(c.estimate - Z * c.std_error)) + "–" + fmt(clamp(c.estimate + Z * c.std_error)))),
      el("td", { class: "bar-col" }, rangeBar(c)));
  }

  /* One folded block per domain, the domain with the largest mean gap first and open. */
  function drawTable(competencies) {
    const groups = new Map();
    for (const c of competencies) {
      const key = c.domain || "其他";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    }
    const meanOf = (cs, f) => cs.reduce((s, c) => s + (f(c) ?? 0), 0) / cs.length;
    const domains = Array.from(groups, ([name, cs]) => ({ name, cs, gap: meanOf(cs, (c) => c.gap), est: meanOf(cs, (c) => c.estimate) }))
      .sort((a, b) => b.gap - a.gap);
    fill("competencies", domains.map((d, i) => el("details", { class: "domain", open: i === 0 },
      el("summary", {}, d.name, el("span", { class: "muted small" },
        " · " + d.cs.length + " 项，平均 " + fmt(d.est) + " 分" + (d.gap > 0 ? "，平均差距 " + fmt(d.gap, 1) : ""))),
      el("div", { class: "table-wrap" }, el("table", { class: "table" },
        el("thead", {}, el("tr", {}, el("th", {}, "能力点"), el("th", {}, "估计"), el("th", { class: "bar-col" }, "95% 区间 ┆ 同类平均"))),
        el("tbody", {}, [...d.cs].sort((a, b) => (b.gap ?? 0) - (a.gap ?? 0)).map(competencyRow)))))));
  }

  function drawTimeline(history) {
    if (!history.length) { fill("timeline", el("li", {}, "暂无培训记录。")); return; }
    const newestFirst = [...history].sort((a, b) => String(b.start_date).localeCompare(String(a.start_date)));
    fill("timeline", newestFirst.map((r) => el("li", { class: r.status },
      el("div", { class: "when" }, (r.start_date || "") + (r.end_date ? " 至 " + r.end_date : "")),
      el("div", {}, r.title || r.course_id || "培训"),
      el("ul", { class: "chips" },
        el("li", { class: "chip" + (r.status === "completed" ? " ok" : r.status === "enrolled" ? "" : " warn") }, label("status", r.status)),
        r.hours ? el("li", { class: "chip" }, fmt(r.hours, 0) + " 学时") : null,
        r.format ? el("li", { class: "chip" }, label("format", r.format)) : null,
        r.score !== null && r.score !== undefined ? el("li", { class: "chip" }, "成绩 " + fmt(r.score)) : null))));
  }

  function drawProfile(p) {
    const facts = [
      ["教师编号", p.teacher_id], ["学段 / 学科", label("stage", p.stage) + " / " + (p.subject || "—")],
      ["学校", p.school_id || "—"], ["县区", p.county || "—"], ["职称", label("title", p.title)],
      ["教龄", p.years_teaching === null ? "—" : p.years_teaching + " 年"], ["发展阶段", label("career", p.career_stage)],
    ];
    fill("profile",
      el("dl", { class: "facts" }, facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      p.need_statement ? el("p", {}, p.need_statement) : null,
      p.assessed ? null : el("p", { class: "muted small" }, "您暂无测评数据，以下能力估计参照同类教师推断，区间较宽。"));
  }

  TDR.start(async (who) => {
    const asked = new URLSearchParams(location.search).get("teacher");
    const teacherId = asked || who.teacher_id;
    if (!teacherId) { TDR.notice("请从群体画像中选择一位教师查看。"); return; }
    const p = await TDR.request("/teachers/" + encodeURIComponent(teacherId) + "/portrait");
    drawProfile(p);
    drawRadar(p.competencies);
    drawHours(p);
    drawHighlights(p.competencies);
    drawTable(p.competencies);
    drawTimeline(p.history);
    await TDRGrowth.draw(teacherId);
  });
})();
