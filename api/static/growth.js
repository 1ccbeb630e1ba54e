/* 我的成长 on the portrait page: the teacher's competencies at each assessment date (domain means, with the
   competency detail in the tooltip), and each course completed between the first and last assessment with the
   competencies it teaches: the teacher's own change beside the course's measured effect across the province. */
"use strict";

const TDRGrowth = (() => {
  const { el, fill, fmt } = TDR;

  function domainSeries(points, dates) {
    const byDomain = new Map();
    for (const p of points) {
      const key = p.domain || "其他";
      if (!byDomain.has(key)) byDomain.set(key, new Map());
      const perDate = byDomain.get(key);
      if (!perDate.has(p.date)) perDate.set(p.date, []);
      perDate.get(p.date).push(p.estimate);
    }
    return Array.from(byDomain, ([name, perDate]) => ({
      name, type: "line", symbolSize: 6, connectNulls: true,
      data: dates.map((d) => (perDate.has(d) ? +(perDate.get(d).reduce((s, x) => s + x, 0) / perDate.get(d).length).toFixed(1) : null)),
    }));
  }

  function drawChart(g) {
    const note = document.getElementById("growth-note");
    if (!g.points.length) {
      note.textContent = "暂无测评记录，完成测评后这里会显示您的成长轨迹。";
      document.getElementById("growth").hidden = true;
      return;
    }
    note.textContent = g.dates.length < 2
      ? "目前只有一次测评（" + g.dates[0] + "），再次测评后可看到变化。"
      : "各维度能力估计的平均值在每次测评时的变化（共 " + g.dates.length + " 次测评）。";
    TDR.chart("growth").setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { bottom: 0, type: "scroll" },
      grid: { left: 8, right: 16, top: 16, bottom: 48, containLabel: true },
      xAxis: { type: "category", data: g.dates },
      yAxis: { type: "value", min: (v) => Math.max(0, Math.floor(v.min / 10) * 10), max: 100 },
      series: domainSeries(g.points, g.dates),
    });
  }

  function drawMoved(g) {
    if (!g.courses.length) {
      fill("moved", el("li", { class: "muted" }, g.dates.length < 2 ? "需两次测评才能看出课程带来的变化。" : "两次测评之间没有结业的课程。"));
      return;
    }
    fill("moved", g.courses.map((c) => el("li", { dataset: { course: c.course_id } },
      el("div", {}, c.title || c.course_id, el("span", { class: "muted small" }, "（" + c.date + " 结业）")),
      el("ul", { class: "chips" }, c.competencies.map((m) => el("li", { class: "chip" + (m.known && m.ci_low > 0 ? " ok" : "") },
        (m.name || m.competency) + "：本人 " + (m.change === null ? "—" : (m.change >= 0 ? "+" : "") + fmt(m.change, 1)) +
        "；全省参训者平均 " + (m.known ? (m.effect >= 0 ? "+" : "") + fmt(m.effect, 1) + "（" + fmt(m.ci_low, 1) + " 至 " + fmt(m.ci_high, 1) + "）" : "证据不足")))))));
  }

  async function draw(teacherId) {
    try {
      const g = await TDR.request("/teachers/" + encodeURIComponent(teacherId) + "/growth");
      drawChart(g);
      drawMoved(g);
    } catch (e) {
      document.getElementById("growth-note").textContent = e.message;
      document.getElementById("growth").hidden = true;
    }
  }

  return { draw };
})();
