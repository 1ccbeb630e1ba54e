/* 我的选学菜单: the menu with its reasons, 接受 / 不感兴趣 feedback (posted as events), re-planning, course search. */
"use strict";

(() => {
  const { el, fill, fmt, label } = TDR;
  const FORMATS = Object.keys(TDR.labels.format);
  let teacherId = null;
  const verdict = new Map(); // course_id -> "enrolled" | "dismissed", from the teacher's stored events

  async function loadVerdicts() {
    const events = await TDR.request("/teachers/" + encodeURIComponent(teacherId) + "/events");
    for (const e of events) if (e.type === "enrolled" || e.type === "dismissed") verdict.set(e.course_id, e.type);
  }

  /* Post one event; the id lives on the button so a retry after a network error cannot be counted twice. */
  async function postEvent(button, courseId, type) {
    button.dataset.eventId = button.dataset.eventId || TDR.newEventId();
    const body = { event_id: button.dataset.eventId, teacher_id: teacherId, course_id: courseId, type };
    await TDR.request("/events", { method: "POST", json: body });
    delete button.dataset.eventId;
  }

  function itemCard(item) {
    const card = el("li", { class: "item", dataset: { course: item.course_id } });
    const detail = el("p", { class: "detail", hidden: true });
    const texts = { enrolled: ["接受", "已接受"], dismissed: ["不感兴趣", "已标记不感兴趣"] };
    const mark = (chosen) => {
      card.classList.toggle("accepted", chosen === "enrolled");
      card.classList.toggle("dismissed", chosen === "dismissed");
      card.querySelectorAll("button[data-type]").forEach((b) => {
        b.disabled = b.dataset.type === chosen;
        b.textContent = texts[b.dataset.type][b.disabled ? 1 : 0];
      });
    };
    const act = (type, done) => el("button", {
      type: "button", class: type === "enrolled" ? "primary accept" : "dismiss", dataset: { type },
      onclick: async (event) => {
        const button = event.currentTarget;
        button.disabled = true;
        try {
          await postEvent(button, item.course_id, type);
          verdict.set(item.course_id, type);
          mark(type);
          TDR.toast(done);
        } catch (e) {
          button.disabled = false;
          TDR.toast(e.message);
        }
      },
    }, texts[type][0]);
    const more = el("button", {
      type: "button", class: "more",
      onclick: async (event) => {
        const button = event.currentTarget;
        if (!detail.hidden) { detail.hidden = true; return; }
        try {
          const course = await TDR.request("/courses/" + encodeURIComponent(item.course_id));
          detail.textContent = course.description || "暂无课程简介。";
          detail.hidden = false;
          postEvent(button, item.course_id, "clicked").catch(() => {}); // a lost click is not worth bothering the teacher
        } catch (e) {
          TDR.toast(e.message);
        }
      },
    }, "详情");
    card.append(
      el("h3", {}, item.title),
      el("ul", { class: "chips" },
        el("li", { class: "chip" }, fmt(item.hours, 0) + " 学时"),
        item.format ? el("li", { class: "chip" }, label("format", item.format)) : null,
        item.mandatory_topic ? el("li", { class: "chip warn" }, "必修：" + item.mandatory_topic) : null,
        item.practical ? el("li", { class: "chip ok" }, "实践性") : null),
      el("p", { class: "reason" }, item.reason),
      el("div", { class: "actions" }, act("enrolled", "已加入您的选学计划。"), act("dismissed", "已记录，重新规划时将不再推荐。"), more),
      detail);
    mark(verdict.get(item.course_id));
    return card;
  }

  function drawMenu(menu) {
    fill("menu-summary",
      el("div", { class: "stats" },
        el("div", { class: "stat" }, el("div", { class: "num" }, fmt(menu.hours_total)), el("div", { class: "label" }, "菜单学时")),
        el("div", { class: "stat" }, el("div", { class: "num" }, fmt(menu.hours_target)), el("div", { class: "label" }, "目标学时")),
        el("div", { class: "stat" }, el("div", { class: "num" }, menu.items.length), el("div", { class: "label" }, "课程数"))),
      menu.notes.map((n) => el("p", { class: "notice" }, n)),
      el("p", { class: "muted small" }, "模型版本 " + (menu.model_version || "—")));
    fill("menu-items", menu.items.length ? menu.items.map(itemCard) : el("li", { class: "item" }, "暂无可推荐的课程。"));
  }

  function setupReplan(menu) {
    const hours = document.getElementById("replan-hours");
    if (!hours.value && menu.hours_target) hours.value = menu.hours_target;
    const box = document.getElementById("replan-formats");
    if (!box.children.length) {
      fill(box, FORMATS.map((f) => el("label", {}, el("input", { type: "checkbox", name: "formats", value: f, checked: true }), label("format", f))));
    }
  }

  async function replan(event) {
    event.preventDefault();
    const hours = document.getElementById("replan-hours").value;
    const formats = Array.from(document.querySelectorAll("#replan-formats input:checked"), (i) => i.value);
    const typed = document.getElementById("replan-exclude").value.split(/[,，\s]+/).filter(Boolean);
    const dismissed = Array.from(verdict).filter(([, v]) => v === "dismissed").map(([id]) => id);
    if (!formats.length) { TDR.toast("请至少选择一种学习形式。"); return; }
    const body = { hours: hours ? Number(hours) : null, formats, exclude: Array.from(new Set([...typed, ...dismissed])) };
    try {
      drawMenu(await TDR.request("/teachers/" + encodeURIComponent(teacherId) + "/menu", { method: "POST", json: body }));
      TDR.toast("已按您的条件重新生成菜单。");
    } catch (e) {
      TDR.toast(e.message);
    }
  }

  async function search(event) {
    event.preventDefault();
    const q = document.getElementById("search-q").value.trim();
    if (!q) return;
    try {
      const result = await TDR.request("/courses?q=" + encodeURIComponent(q) + "&top_k=10");
      fill("search-results", result.hits.length
        ? result.hits.map((h) => el("li", {}, el("strong", {}, h.title), " ", el("span", { class: "muted small" }, [h.course_id, fmt(h.hours, 0) + " 学时", label("format", h.format)].join(" · "))))
        : el("li", {}, "没有找到相关课程。"));
    } catch (e) {
      TDR.toast(e.message);
    }
  }

  TDR.start(async (who) => {
    teacherId = new URLSearchParams(location.search).get("teacher") || who.teacher_id;
    if (!teacherId) { TDR.notice("请从群体画像中选择一位教师查看。"); return; }
    await loadVerdicts();
    const menu = await TDR.request("/teachers/" + encodeURIComponent(teacherId) + "/menu");
    drawMenu(menu);
    setupReplan(menu);
    document.getElementById("replan-form").addEventListener("submit", replan);
    document.getElementById("search-form").addEventListener("submit", search);
  });
})();
