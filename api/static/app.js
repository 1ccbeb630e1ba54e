/* Shared page helpers: the token kept in this browser, calls to the JSON API, Chinese labels, small DOM builders.
   Pages never build HTML from data: text goes in through textContent, so no course title can inject markup. */
"use strict";

const TDR = (() => {
  const TOKEN_KEY = "tdr_token";
  // when the token stops being valid (ISO 8601, from /me): the page drops it then, without asking the server
  const EXPIRES_KEY = "tdr_token_expires";
  const API = "/api/v1";

  const labels = {
    format: { online: "线上", offline: "线下集中", blended: "混合", workshop: "工作坊", shadowing: "跟岗", school_based: "校本" },
    stage: { kindergarten: "幼儿园", primary: "小学", junior: "初中", senior: "高中" },
    status: { enrolled: "在训", completed: "结业", dropped: "退出", no_show: "未参训" },
    career: { novice: "新入职", developing: "成长期", backbone: "骨干", expert: "专家" },
    schoolType: { rural: "乡村", town: "镇区", urban: "城区" },
    title: { none: "未定级", third: "三级", second: "二级", first: "一级", senior: "高级", full_senior: "正高级" },
    source: { items: "测评", scores: "量表", fused: "综合", prior: "同类推断" },
    role: { teacher: "教师", trainer: "培训管理者", admin: "管理员" },
    by: {
      county: "县区", city: "市", province: "省", school: "学校", stage: "学段", subject: "学科",
      school_type: "城乡类型", title: "职称", career_stage: "发展阶段",
    },
  };

  function label(kind, value) {
    if (value === null || value === undefined || value === "") return "—";
    return (labels[kind] && labels[kind][value]) || String(value);
  }

  function forget() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(EXPIRES_KEY);
    sessionStorage.removeItem("tdr_me");
  }
  function msLeft() {
    const expires = Date.parse(localStorage.getItem(EXPIRES_KEY) || "");
    return Number.isNaN(expires) ? Infinity : expires - Date.now();
  }
  function token() {
    if (msLeft() <= 0) forget();
    return localStorage.getItem(TOKEN_KEY);
  }
  function setToken(value) {
    forget();
    localStorage.setItem(TOKEN_KEY, value);
  }
  function keepUntil(expiresAt) { if (expiresAt) localStorage.setItem(EXPIRES_KEY, expiresAt); }
  function signOut() {
    forget();
    location.assign("/login");
  }

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function request(path, options = {}) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(API + path, { method: options.method || "GET", headers, body: options.body });
    } catch (e) {
      throw new ApiError(0, "无法连接服务，请检查网络后重试。");
    }
    if (response.status === 401 && !options.noRedirect) {
      forget();
      location.assign("/login");
      throw new ApiError(401, "请重新登录。");
    }
    if (!response.ok) {
      let detail = "请求失败（" + response.status + "）。";
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not a problem+json body */ }
      throw new ApiError(response.status, detail);
    }
    return options.raw ? response : response.json();
  }

  async function me() {
    const cached = sessionStorage.getItem("tdr_me");
    if (cached) return JSON.parse(cached);
    const who = await request("/me");
    sessionStorage.setItem("tdr_me", JSON.stringify(who));
    keepUntil(who.expires_at);
    return who;
  }

  function homeFor(who) { return who.role === "teacher" ? "/me/portrait" : "/trainer/cohorts"; }

  /* el("li", {class: "x", dataset: {id: 1}, onclick: f}, "text", child) */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fill(target, ...children) {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
    return node;
  }

  let toastTimer = null;
  function toast(message) {
    const box = document.getElementById("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 3500);
  }

  function notice(message) {
    const box = document.getElementById("notice");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function fmt(x, digits = 0) {
    return x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toFixed(digits);
  }
  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(0) + "%"; }

  /* A client event id: random, and kept on the button so that a retry re-sends the same one. */
  function newEventId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  /* A chart that follows the width of its box (phones rotate). */
  function chart(id) {
    const node = document.getElementById(id);
    const instance = echarts.getInstanceByDom(node) || echarts.init(node, null, { renderer: "canvas" });
    if (!node.dataset.resizes) {
      node.dataset.resizes = "1";
      window.addEventListener("resize", () => instance.resize());
    }
    return instance;
  }

  /* An XLSX export needs the bearer token, so it is fetched and handed to the browser as a file; the button
     stays disabled meanwhile and a failure shows as a toast. */
  async function download(path, filename, button) {
    button.disabled = true;
    try {
      const response = await request(path, { raw: true, headers: { Accept: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" } });
      const url = URL.createObjectURL(await response.blob());
      const a = el("a", { href: url, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      toast(e.message);
    } finally {
      button.disabled = false;
    }
  }

  function renderNav(who) {
    const here = location.pathname;
    const links = who.role === "teacher"
      ? [["/me/portrait", "我的画像"], ["/me/menu", "我的选学菜单"]]
      : [["/trainer/cohorts", "群体画像"], ["/trainer/projects", "培训项目选人"], ["/trainer/effects", "训后成效"]];
    fill("nav",
      links.map(([href, text]) => el("a", { href, "aria-current": href === here ? "page" : null }, text)),
      el("span", { class: "small" }, label("role", who.role) + (who.scope ? "（" + who.scope.split(":")[1] + "）" : "")),
      el("button", { type: "button", onclick: signOut }, "退出"));
  }

  /* Run a page: require a token (except on the login page), draw the navigation, then the page itself. */
  function start(page) {
    document.addEventListener("DOMContentLoaded", async () => {
      if (!token()) { location.assign("/login"); return; }
      try {
        const who = await me();
        // an open page signs out when its token expires (timers hold at most about 24 days)
        if (msLeft() < 2 ** 31) setTimeout(signOut, Math.max(0, msLeft()));
        renderNav(who);
        await page(who);
      } catch (e) {
        notice(e.message);
      }
    });
  }

  return { label, labels, token, setToken, keepUntil, forget, request, me, homeFor, el, fill, toast, notice, fmt, pct, newEventId, escapeHtml, chart, download, start, ApiError };
})();

if (document.body.dataset.page === "index") {
  TDR.start(async (who) => { location.replace(TDR.homeFor(who)); });
}
