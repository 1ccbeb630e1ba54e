/* 训后成效 (trainers): measured change per course / project and competency, with 90% intervals (forest plot),
   beside completion and satisfaction; sortable table; XLSX export. Only the caller's scope comes back. */
"use strict";

(() => {
  const { el, fill, fmt, pct } = TDR;
  const FOREST_ROWS = 25;
  // a province has thousands of (unit, competency) rows: the page lists the first ones, the export holds all
  const TABLE_ROWS = 100;
  const ROW_PX = 24;
  const kindInput = document.getElementById("effects-kind");
  const sortInput = document.getElementById("effects-sort");
  const knownInput = document.getElementById("effects-known");
  let report = null;
  let order = { key: "effect", desc: true };

  const KIND = { course: "课程", project: "项目" };
  const rowName = (r) => (r.title || r.unit_id) + (r.competency_name ? " · " + r.competency_name : "");

  function shown() {
    const rows = report.rows.filter((r) => (!kindInput.value || r.kind === kindInput.value) && (!knownInput.checked || r.known));
    const { key, desc } = order;
    const value = (r) => r[key];
    return rows.sort((a, b) => {
      const x = value(a), y = value(b);
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      const c = typeof x === "string" ? x.localeCompare(y, "zh-CN") : x - y;
      return desc ? -c : c;
    });
  }

  function drawForest(rows) {
    const top = rows.filter((r) => r.known).slice(0, FOREST_ROWS).reverse();
    const box = document.getElementById("forest");
    if (!top.length) {
      TDR.chart("forest").clear();
      box.style.height = "80px";
      fill(box, el("p", { class: "muted" }, "范围内暂无证据充足的估计（需至少 5 位教师在两次测评之间参训）。"));
      return;
    }
    box.style.height = Math.max(240, 90 + ROW_PX * top.length) + "px";
    const chart = TDR.chart("forest");
    chart.resize();
    chart.setOption({
      animation: false,
      grid: { left: 8, right: 16, top: 10, bottom: 30, containLabel: true },
      tooltip: {
        trigger: "item",
        formatter: (p) => {
          const r = top[p.dataIndex];
          return TDR.escapeHtml(rowName(r) + "：" + fmt(r.effect, 1) + "（" + fmt(r.ci_low, 1) + " 至 " + fmt(r.ci_high, 1) + "），参训 " + r.n_treated + " 人");
        },
      },
      xAxis: { type: "value", name: "分", axisLabel: { fontSize: 10 } },
      yAxis: {
        type: "category", data: top.map(rowName),
        axisLabel: { fontSize: 10, width: 150, overflow: "truncate" },
      },
      series: [{
        type: "custom",
        data: top.map((r, i) => [r.ci_low, r.ci_high, r.effect, i]),
        renderItem: (params, api) => {
          const lo = api.coord([api.value(0), api.value(3)]), hi = api.coord([api.value(1), api.value(3)]);
          const mid = api.coord([api.value(2), api.value(3)]);
          const color = api.value(0) > 0 ? "#2f855a" : "#1769aa";
          return {
            type: "group",
            children: [
              { type: "line", shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style: { stroke: color, lineWidth: 2 } },
              { type: "circle", shape: { cx: mid[0], cy: mid[1], r: 4 }, style: { fill: color } },
            ],
          };
        },
        encode: { x: [0, 1, 2], y: 3 },
        markLine: { silent: true, symbol: "none", data: [{ xAxis: 0 }], lineStyle: { type: "dashed", color: "#7b8794" }, label: { show: false } },
      }],
    });
  }

  function drawTable(rows) {
    document.getElementById("effects-more").textContent = rows.length > TABLE_ROWS
      ? "共 " + rows.length + " 项，此处按当前排序显示前 " + TABLE_ROWS + " 项；全部请导出 Excel。" : "";
    fill(document.querySelector("#effects-table tbody"), rows.slice(0, TABLE_ROWS).map((r) => el("tr", { dataset: { kind: r.kind, unit: r.unit_id } },
      el("td", { class: "wrap" }, r.title || r.unit_id, el("div", { class: "muted small" }, KIND[r.kind] + " " + r.unit_id)),
      el("td", { class: "wrap" }, r.competency_name || "—"),
      el("td", {}, r.known ? fmt(r.effect, 1) : "证据不足",
        r.known ? el("div", { class: "muted small" }, fmt(r.ci_low, 1) + " 至 " + fmt(r.ci_high, 1)) : null),
      el("td", {}, r.n_treated + " / " + r.n_comparison),
      el("td", {}, pct(r.completion_rate)),
      el("td", {}, r.satisfaction === null ? "—" : fmt(r.satisfaction, 1)))));
    document.querySelectorAll("#effects-table th").forEach((th) => {
      th.setAttribute("aria-sort", th.dataset.key === order.key ? (order.desc ? "descending" : "ascending") : "none");
    });
  }

  function draw() {
    const rows = shown();
    const known = report.rows.filter((r) => r.known).length;
    document.getElementById("effects-summary").textContent =
      "范围内前后两次测评的教师 " + report.n_teachers_measured + " 人；" + known + " 项有估计，" +
      (report.rows.length - known) + " 项证据不足（不给数值）。";
    drawForest(rows);
    drawTable(rows);
  }

  TDR.start(async () => {
    report = await TDR.request("/effects");
    kindInput.addEventListener("change", draw);
    knownInput.addEventListener("change", draw);
    sortInput.addEventListener("change", () => { order = { key: sortInput.value, desc: true }; draw(); });
    document.querySelectorAll("#effects-table th").forEach((th) => th.addEventListener("click", () => {
      order = { key: th.dataset.key, desc: order.key === th.dataset.key ? !order.desc : true };
      draw();
    }));
    const exportButton = document.getElementById("effects-export");
    exportButton.addEventListener("click", () => TDR.download("/effects/export", "训后成效.xlsx", exportButton));
    draw();
  });
})();
