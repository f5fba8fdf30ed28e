/* 镇海警民通 · 民警工作台 — helpers shared by every console page.
 *
 * - api(): fetch with the session cookie (HttpOnly: this script never sees it) and, for
 *   POST/PUT/PATCH/DELETE, the session's CSRF token, kept in memory only; a 401 sends
 *   the officer to the login page with ?next= (docs/console-api.md "Signing in").
 * - h(): builds DOM nodes; text always goes through text nodes (never as markup), so
 *   nothing the API returns can inject markup.
 * - formatting in Beijing time (UTC+8, no daylight saving) whatever the browser's zone.
 * - vocabulary()/label(): codes → Chinese labels from GET /api/vocabulary (never copied here).
 * - live(): the server-sent event stream with the 实时 indicator.
 */
"use strict";

const JMT = (() => {
  const LEGACY_TOKEN_KEY = "jmtConsoleToken"; // where a bearer token used to be kept
  const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
  const BEIJING_OFFSET_MS = 8 * 3600 * 1000;

  // ------------------------------------------------------------------ vocabulary

  // Codes and their Chinese labels (categories, priorities, statuses, desks …) come from
  // GET /api/vocabulary (casework/vocabulary.py), fetched once per page: never copy them here.
  const LABELS = {}; // group → {code: label}, filled by vocabulary()
  let vocabularyPromise = null;

  /** The vocabulary (a promise, fetched once per page); fills label() on the way. */
  function vocabulary() {
    if (!vocabularyPromise) {
      vocabularyPromise = api("/api/vocabulary").then((vocab) => {
        for (const [group, terms] of Object.entries(vocab)) {
          if (!Array.isArray(terms)) continue;
          LABELS[group] = Object.fromEntries(terms.map((t) => [t.value, t.label]));
        }
        return vocab;
      });
      vocabularyPromise.catch(() => (vocabularyPromise = null)); // let a later call retry
    }
    return vocabularyPromise;
  }

  /** label("priorities", "urgent") → 紧急 (its label); the code itself when the group lacks it. */
  function label(group, code) {
    const known = LABELS[group] && LABELS[group][code];
    return known || (code === null || code === undefined || code === "" ? "—" : String(code));
  }

  function hasLabel(group, code) {
    return Boolean(LABELS[group] && LABELS[group][code]);
  }

  /** Append one <option> per term to a <select> (after its placeholder). */
  function fillOptions(select, terms, text = (t) => t.label, value = (t) => t.value) {
    for (const term of terms) select.append(h("option", { value: value(term) }, text(term)));
    return select;
  }

  // ------------------------------------------------------------------ session and API

  // No credential is stored by this script: the browser holds the HttpOnly session cookie
  // (it survives DingTalk's in-app browser being closed, sessionStorage does not). What
  // the script keeps is the session's CSRF token, in memory, for requests that change
  // something. A bearer token an older version left in sessionStorage is dropped.
  try {
    sessionStorage.removeItem(LEGACY_TOKEN_KEY);
  } catch (e) {
    /* storage unavailable: nothing to drop */
  }

  let sessionPromise = null;

  /** This browser's session (GET /api/auth/session: CSRF token, user, expiry), once per
   * page; `fresh` asks again (another tab may have signed in anew). */
  function session(fresh = false) {
    if (!sessionPromise || fresh) {
      sessionPromise = api("/api/auth/session");
      sessionPromise.catch(() => (sessionPromise = null)); // let a later call retry
    }
    return sessionPromise;
  }

  function toLogin() {
    const here = location.pathname + location.search;
    const next = here.startsWith("/console/login") ? "" : "?next=" + encodeURIComponent(here);
    location.replace("/console/login" + next);
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** FastAPI's `detail`: a string, or a list of validation errors. */
  function detailText(detail, status) {
    if (typeof detail === "string" && detail) return detail;
    if (Array.isArray(detail) && detail.length) {
      return detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("；");
    }
    if (status === 403) return "无权执行此操作";
    if (status === 404) return "未找到该记录";
    if (status >= 500) return "服务器内部错误，请稍后再试";
    return `请求失败（HTTP ${status}）`;
  }

  async function errorOf(response) {
    let detail = null;
    try {
      detail = (await response.json()).detail;
    } catch (e) {
      /* not JSON */
    }
    return new ApiError(response.status, detailText(detail, response.status));
  }

  /**
   * Call the console API. `body` (an object) is sent as JSON; `raw: true` returns the
   * Response itself (for downloads). Throws ApiError with a message safe to show.
   */
  async function api(path, { method = "GET", body, raw = false } = {}) {
    const unsafe = UNSAFE_METHODS.has(method.toUpperCase());
    let response = await send(path, method, body, unsafe ? (await session()).csrf_token : null);
    if (unsafe && response.status === 403 && response.headers.get("X-CSRF-Refused")) {
      // The cookie now belongs to a newer session (signed in again in another tab):
      // fetch that session's token and try once more.
      response = await send(path, method, body, (await session(true)).csrf_token);
    }
    if (response.status === 401) {
      toLogin();
      throw new ApiError(401, "登录已失效，请重新登录");
    }
    if (!response.ok) throw await errorOf(response);
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  async function send(path, method, body, csrf) {
    const headers = {};
    const init = { method, headers, cache: "no-store", credentials: "same-origin" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    try {
      return await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "网络连接失败，请检查网络后重试");
    }
  }

  // ------------------------------------------------------------------ DOM

  /**
   * h("td", {className: "x", title: "..."}, "text", otherNode, null) — children that are
   * strings become text nodes; null/undefined/false are skipped; arrays are flattened.
   * `href` only accepts same-origin paths (not "//host") and https URLs.
   */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else if (key === "href") {
        const url = String(value);
        const local = url.startsWith("/") && !url.startsWith("//") && !url.startsWith("/\\");
        if (local || url.startsWith("https://")) node.setAttribute("href", url);
      } else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else if (child instanceof Node) node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    }
  }

  function $(id) {
    return document.getElementById(id);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function showError(node, message) {
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  let toastTimer = null;
  function toast(message, bad = false) {
    const box = $("toast");
    if (!box) return;
    box.textContent = message;
    box.className = bad ? "bad" : "";
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (box.hidden = true), bad ? 6000 : 3000);
  }

  // ------------------------------------------------------------------ formatting

  /** A Date from the API's ISO string; a string without a zone is UTC (SQLite). */
  function parseTime(iso) {
    if (!iso) return null;
    const text = String(iso);
    const zoned = /([zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : text + "Z";
    const date = new Date(zoned);
    return isNaN(date.getTime()) ? null : date;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  /** Beijing wall-clock parts of a Date. */
  function beijing(date) {
    const b = new Date(date.getTime() + BEIJING_OFFSET_MS);
    return {
      y: b.getUTCFullYear(),
      m: pad(b.getUTCMonth() + 1),
      d: pad(b.getUTCDate()),
      hh: pad(b.getUTCHours()),
      mm: pad(b.getUTCMinutes()),
      ss: pad(b.getUTCSeconds()),
    };
  }

  /** "2026-11-28 18:00" (Beijing time); `seconds` adds ":05". */
  function fmtTime(iso, { seconds = false } = {}) {
    const date = iso instanceof Date ? iso : parseTime(iso);
    if (!date) return "—";
    const p = beijing(date);
    return `${p.y}-${p.m}-${p.d} ${p.hh}:${p.mm}${seconds ? ":" + p.ss : ""}`;
  }

  /** "18:00" when the time is today in Beijing, else "11-27 18:00". */
  function fmtShort(iso) {
    const date = iso instanceof Date ? iso : parseTime(iso);
    if (!date) return "—";
    const p = beijing(date);
    const t = beijing(new Date());
    const day = p.y === t.y && p.m === t.m && p.d === t.d ? "" : `${p.m}-${p.d} `;
    return `${day}${p.hh}:${p.mm}`;
  }

  function fmtDate(date) {
    const p = beijing(date);
    return `${p.y}-${p.m}-${p.d}`;
  }

  /** 3725 → "1小时02分"; 125 → "2分05秒"; for countdowns. */
  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    const days = Math.floor(s / 86400);
    const hours = Math.floor((s % 86400) / 3600);
    const minutes = Math.floor((s % 3600) / 60);
    if (days) return `${days}天${hours}小时`;
    if (hours) return `${hours}小时${pad(minutes)}分`;
    return `${minutes}分${pad(s % 60)}秒`;
  }

  /** Median-type durations in metrics: 95 → "1分35秒", 7200 → "2小时00分". */
  function fmtSpan(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "—";
    if (seconds < 60) return `${Math.round(seconds)}秒`;
    return fmtDuration(seconds);
  }

  function fmtYuan(amount) {
    const n = Number(amount);
    if (amount === null || amount === undefined || amount === "" || isNaN(n)) return null;
    return "¥" + n.toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  /** 0.9123 → "91.2%". */
  function fmtPercent(value, digits = 1) {
    if (value === null || value === undefined || isNaN(value)) return "—";
    return (Number(value) * 100).toFixed(digits) + "%"; // the API's rates are 0–1
  }

  function priorityBadge(priority) {
    return h(
      "span",
      { className: "prio prio-" + (hasLabel("priorities", priority) ? priority : "low") },
      label("priorities", priority)
    );
  }

  /** A status badge; `group` is "case_statuses" or "ticket_states". */
  function statusBadge(status, group = "case_statuses") {
    return h("span", { className: "status status-" + status }, label(group, status));
  }

  function officerName(person) {
    if (!person) return null;
    return person.name || person.username || `#${person.id}`;
  }

  /**
   * A countdown to `due_at`, corrected for the browser's clock: the API's `seconds_left`
   * was computed on the server at fetch time.
   */
  function deadline(item, fetchedAt) {
    const due = parseTime(item.due_at);
    if (!due) return null;
    let skew = 0;
    if (typeof item.seconds_left === "number") {
      const serverNow = due.getTime() - item.seconds_left * 1000;
      skew = serverNow - fetchedAt;
    }
    return { due, skew };
  }

  /** Render the countdown cell content: [text, className]. */
  function countdownText(item, dl) {
    if (item.status === "closed") return [label("case_statuses", "closed"), "ok"];
    if (item.first_reply_at) {
      const late = dl && parseTime(item.first_reply_at) > dl.due;
      return [late ? "已答复（超时）" : "已答复", late ? "overdue" : "ok"];
    }
    if (!dl) return ["—", ""];
    const left = (dl.due.getTime() - (Date.now() + dl.skew)) / 1000;
    if (left <= 0) return ["已超时 " + fmtDuration(-left), "overdue"];
    return [fmtDuration(left), left < 300 ? "soon" : ""];
  }

  // ------------------------------------------------------------------ page chrome

  /** Who is signed in (the session's user: id, username, name, role, desk, community). */
  async function me() {
    return (await session()).user;
  }

  /** Every signed-in page: not signed in → login (with ?next=); name in the header;
   * 退出 (this browser) and 退出所有设备 (every device, and every API token). */
  function initChrome() {
    const logout = $("logout");
    if (logout) {
      logout.addEventListener("click", () => signOut("/api/auth/logout", logout));
      logout.after(logoutAllControl());
    }
    Promise.all([me(), vocabulary().catch(() => null)])
      .then(([user]) => {
        const who = `${user.name || user.username}（${label("roles", user.role)}` +
          (user.desk ? `·${user.desk}` : user.community ? `·${user.community}` : "") + "）";
        $("me").textContent = who;
      })
      .catch(() => {}); // a 401 has already gone to the login page
    return true;
  }

  /** POST a logout route, then the login page; on failure say so and stay. */
  async function signOut(path, button) {
    button.disabled = true;
    try {
      await api(path, { method: "POST" });
      location.replace("/console/login");
    } catch (e) {
      if (e.status !== 401) toast(e.message, true); // 401: already on the way to login
      button.disabled = false;
    }
  }

  /** The 退出所有设备 button and its confirmation (a lost phone: every session and every
   * API token of this account end, this browser's too). */
  function logoutAllControl() {
    const accept = h("button", { type: "button", id: "logout-all-confirm", className: "danger" },
      "确定退出");
    const cancel = h("button", { type: "button", id: "logout-all-cancel" }, "取消");
    const dialog = h(
      "div",
      { id: "logout-all-dialog", className: "logout-all-dialog", role: "dialog",
        "aria-modal": "true", "aria-labelledby": "logout-all-title", hidden: true },
      h("div", { className: "logout-all-box" },
        h("h2", { id: "logout-all-title" }, "退出所有设备"),
        h("p", {}, "将退出您在所有手机和电脑上的登录（包括本机），已签发的接口令牌也一并失效。" +
          "手机丢失或借用他人设备后请使用。确定退出吗？"),
        h("div", { className: "logout-all-actions" }, cancel, accept))
    );
    const open = h("button", { type: "button", id: "logout-all", className: "link" },
      "退出所有设备");
    open.addEventListener("click", () => {
      dialog.hidden = false;
      cancel.focus();
    });
    cancel.addEventListener("click", () => (dialog.hidden = true));
    dialog.addEventListener("keydown", (event) => {
      if (event.key === "Escape") dialog.hidden = true;
    });
    accept.addEventListener("click", () => signOut("/api/auth/logout-all", accept));
    document.body.append(dialog);
    return open;
  }

  /**
   * Subscribe to the event stream. `handlers` maps event names ("case", "message") to
   * functions receiving the parsed data. Each (re)connection first fetches a fresh
   * single-use stream ticket with the session (POST /api/events/ticket), so no credential
   * appears in a URL; a 401 there sends the user to the login page. The stream ends when
   * the session does (logout, expiry); the reconnect then finds the 401.
   */
  /**
   * `resync` (optional) runs each time the stream (re)connects: the stream starts from
   * "now", so whatever changed between the page's own load and the connection — or while
   * it was down — would otherwise be missed.
   */
  function live(handlers, resync) {
    const indicator = $("live");
    let source = null;
    let retry = null;

    function state(on, text) {
      if (!indicator) return;
      indicator.hidden = false;
      indicator.className = "live " + (on ? "on" : "off");
      indicator.textContent = text;
      indicator.title = on ? "已连接实时推送" : "实时推送已断开，正在重连";
    }

    function reconnect(ms) {
      if (!retry) retry = setTimeout(connect, ms);
    }

    async function connect() {
      retry = null;
      let ticket;
      try {
        ticket = (await api("/api/events/ticket", { method: "POST" })).ticket;
      } catch (e) {
        state(false, "重连中…");
        // 401: api() already went to the login page; 403: this role has no live queue.
        if (e.status !== 401 && e.status !== 403) reconnect(5000);
        return;
      }
      source = new EventSource("/api/events?ticket=" + encodeURIComponent(ticket));
      source.onopen = () => {
        state(true, "实时");
        if (resync) resync();
      };
      source.onerror = () => {
        // The browser would retry with the same ticket, which is already used: close
        // and reconnect with a new one instead.
        state(false, "重连中…");
        source.close();
        reconnect(2000);
      };
      for (const [name, handler] of Object.entries(handlers)) {
        source.addEventListener(name, (event) => {
          let data = {};
          try {
            data = JSON.parse(event.data || "{}");
          } catch (e) {
            /* a malformed event still means "something changed" */
          }
          handler(data);
        });
      }
    }

    state(false, "连接中…");
    connect();
    window.addEventListener("beforeunload", () => source && source.close());
  }

  /** Call `fn` at most once per `ms`, trailing (bursts of events → one re-fetch). */
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  return {
    vocabulary, label, hasLabel, fillOptions,
    session, toLogin, api, ApiError,
    h, $, clear, showError, toast,
    parseTime, fmtTime, fmtShort, fmtDate, fmtDuration, fmtSpan, fmtYuan, fmtPercent,
    priorityBadge, statusBadge, officerName, deadline, countdownText,
    me, initChrome, live, debounce,
  };
})();
