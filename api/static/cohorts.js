/* 群体画像 (trainers): competency × group heatmap, distributions, common gaps, teachers behind on hours, XLSX export. */
"use strict";

(() => {
  const { el, fill, fmt, pct, label } = TDR;
  const BYS = ["county", "school", "stage", "subject", "school_type", "title", "career_stage", "city", "province"];
  const byInput = document.getElementById("cohort-by");
  const valueInput = document.getElementById("cohort-value");

  const path = () => "/cohorts/" + encodeURIComponent(byInput.value) + "/" + encodeURIComponent(valueInput.value.trim());

  function names(cohort) {
    return new Map(cohort.competencies.map((c) => [c.competency, c.name || c.competency]));
  }

  function drawSummary(c) {
    const stat = (num, text) => el("div", { class: "stat" }, el("div", { class: "num" }, num), el("div", { class: "label" }, text));
    fill("cohort-summary",
      el("h2", {}, label("by", c.by) + "：" + c.value),
      el("div", { class: "stats" },
        stat(c.n_teachers, "教师人数"),
        stat(c.hours ? fmt(c.hours.done_mean) + " / " + fmt(c.hours.required_mean) : "—", "平均已修 / 应修学时"),
        stat(c.hours ? pct(c.hours.share_behind) : "—", "学时进度落后"),
        stat(pct(c.completion_rate), "结业率"),
        stat(pct(c.no_show_rate), "未参训率")));
  }

  /* Competencies run down the page (a cohort has dozens; their names stay readable on a phone), groups across. */
  const ROW_PX = 22;

  function drawHeatmap(c) {
    const hm = c.heatmap;
    const note = document.getElementById("heatmap-note");
    if (!hm || !hm.rows.length) {
      note.textContent = "该群体没有可显示的分组。";
      TDR.chart("heatmap").clear();
      return;
    }
    const named = names(c);
    note.textContent = "列：" + label("by", hm.row_level) + "（括号内为人数）；行：能力点；颜色为平均能力估计。" +
      (c.hidden_rows ? "另有 " + c.hidden_rows + " 个分组人数过少，为保护隐私未显示。" : "");
    const data = [];
    hm.values.forEach((row, i) => row.forEach((v, j) => { if (v !== null) data.push([i, j, +v.toFixed(1)]); }));
    // colours span the cohort's own range (in steps of 5), so differences between groups stand out
    const shown = data.map((d) => d[2]);
    const low = Math.floor(Math.min(...shown, 100) / 5) * 5, high = Math.max(low + 5, Math.ceil(Math.max(...shown, 0) / 5) * 5);
    document.getElementById("heatmap").style.height = Math.max(320, 160 + ROW_PX * hm.columns.length) + "px";
    const chart = TDR.chart("heatmap");
    chart.resize();
    chart.setOption({
      animation: false,
      tooltip: {
        position: "top",
        formatter: (p) => TDR.escapeHtml(hm.rows[p.value[0]] + " · " + named.get(hm.columns[p.value[1]]) + "：" + p.value[2]),
      },
      grid: { left: 8, right: 8, top: 10, bottom: 70, containLabel: true },
      xAxis: {
        type: "category", data: hm.rows.map((r, i) => r + "（" + hm.row_sizes[i] + "）"),
        axisLabel: { rotate: hm.rows.length > 3 ? 45 : 0, fontSize: 10, interval: hm.rows.length > 20 ? "auto" : 0 },
      },
      yAxis: { type: "category", inverse: true, data: hm.columns.map((code) => named.get(code) || code), axisLabel: { fontSize: 10, interval: 0 } },
      visualMap: { min: low, max: high, calculable: true, orient: "horizontal", left: "center", bottom: 0, itemHeight: 120, inRange: { color: ["#c53030", "#f6e05e", "#2f855a"] } },
      series: [{ type: "heatmap", data, label: { show: hm.rows.length <= 6, fontSize: 9 } }],
    }, true);
  }

  function drawDistribution(c) {
    const rows = c.competencies.filter((x) => x.p10 !== null && x.p90 !== null);
    document.getElementById("distribution").style.height = Math.max(320, 80 + ROW_PX * rows.length) + "px";
    const chart = TDR.chart("distribution");
    chart.resize();
    chart.setOption({
      animation: false,
      tooltip: { trigger: "item" },
      grid: { left: 8, right: 16, top: 10, bottom: 10, containLabel: true },
      yAxis: { type: "category", inverse: true, data: rows.map((x) => x.name || x.competency), axisLabel: { fontSize: 10, interval: 0 } },
      xAxis: { type: "value", min: 0, max: 100 },
      series: [
        { name: "分布", type: "boxplot", layout: "horizontal", data: rows.map((x) => [x.p10, x.p25, x.p50, x.p75, x.p90].map((v) => +v.toFixed(1))) },
        { name: "平均", type: "scatter", symbolSize: 6, data: rows.map((x, i) => (x.mean === null ? null : [+x.mean.toFixed(1), i])) },
      ],
    }, true);
  }

  function drawGaps(c) {
    fill("common-gaps", c.common_gaps.length
      ? c.common_gaps.map((g) => el("li", {}, (g.name || g.competency) + "：" + pct(g.share) + " 的教师"))
      : el("li", {}, "暂无数据。"));
  }

  function drawBehind(c) {
    const body = document.querySelector("#behind tbody");
    if (!c.behind_on_hours.length) { fill(body, el("tr", {}, el("td", { colspan: 6 }, "没有学时进度落后的教师。"))); return; }
    fill(body, c.behind_on_hours.map((t) => el("tr", {},
      el("td", {}, el("a", { href: "/me/portrait?teacher=" + encodeURIComponent(t.teacher_id) }, t.teacher_id)),
      el("td", {}, t.school_id || "—"),
      el("td", {}, t.county || "—"),
      el("td", {}, fmt(t.hours_done) + " / " + fmt(t.hours_required)),
      el("td", {}, fmt(t.hours_owed)),
      el("td", {}, t.missing_mandatory.join("、") || "—"))));
  }

  async function show(event) {
    if (event) event.preventDefault();
    TDR.notice("");
    try {
      const cohort = await TDR.request(path());
      drawSummary(cohort);
      drawHeatmap(cohort);
      drawDistribution(cohort);
      drawGaps(cohort);
      drawBehind(cohort);
      history.replaceState(null, "", "?by=" + encodeURIComponent(byInput.value) + "&value=" + encodeURIComponent(valueInput.value.trim()));
    } catch (e) {
      TDR.notice(e.message);
    }
  }

  function exportXlsx() {
    const name = "群体画像_" + label("by", byInput.value) + "_" + valueInput.value.trim() + ".xlsx";
    return TDR.download(path() + "/export", name, document.getElementById("cohort-export"));
  }

  TDR.start(async (who) => {
    if (who.role === "teacher") { TDR.notice("群体画像仅向培训管理者开放。"); return; }
    fill(byInput, BYS.map((b) => el("option", { value: b }, label("by", b))));
    const params = new URLSearchParams(location.search);
    const [kind, area] = (who.scope || ":").split(":");
    byInput.value = params.get("by") || kind || "county";
    valueInput.value = params.get("value") || area || "";
    document.getElementById("cohort-form").addEventListener("submit", show);
    document.getElementById("cohort-export").addEventListener("click", exportXlsx);
    if (valueInput.value) await show();
  });
})();
