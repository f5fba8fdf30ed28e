/* 待办队列: GET /api/cases (most urgent first, as the API orders them), live countdowns,
 * re-fetched on every `case` or `message` event; a case that was not there before flashes. */
"use strict";

(() => {
  const { $, h, clear, showError, api } = JMT;
  if (!JMT.initChrome()) return;

  const body = $("queue-body");
  let status = "active";
  const FLASH_MS = 4000; // as long as the `flash` animation in console.css
  let known = null; // ids shown before the latest fetch; null before the first one
  const arrived = new Map(); // id → when it first appeared (re-renders keep it flashing)
  let rows = []; // [{item, deadline, cell}] for the countdown ticker
  let loading = false;
  let again = false;

  function place(item) {
    const where = [item.street, item.community].filter(Boolean).join(" ");
    return [
      where ? h("div", {}, where) : null,
      item.desk ? h("div", { className: "muted" }, item.desk) : null,
      !where && !item.desk ? "—" : null,
    ];
  }

  function handler(item) {
    const claimed = JMT.officerName(item.claimed_by);
    const assigned = JMT.officerName(item.assigned_to);
    if (claimed) return h("span", {}, claimed);
    if (item.status === "closed") return h("span", { className: "muted" }, "—");
    return [
      h("span", { className: "tag" }, JMT.label("case_statuses", "open")),
      assigned ? h("div", { className: "muted" }, "指派：" + assigned) : null,
    ];
  }

  function notify(item) {
    const text = JMT.label("notify_statuses", item.notify_status);
    if (item.notify_status === "failed") {
      return h("span", { className: "fail", title: item.notify_error || "" }, text);
    }
    return h("span", { className: item.notify_status === "sent" ? "ok" : "muted" }, text);
  }

  function tick() {
    for (const row of rows) {
      const [text, cls] = JMT.countdownText(row.item, row.deadline);
      row.cell.textContent = text;
      row.cell.className = "nowrap countdown " + cls;
      row.tr.classList.toggle("overdue-row", cls === "overdue" && !row.item.first_reply_at);
    }
  }

  function render(items, fetchedAt) {
    clear(body);
    rows = [];
    const fresh = new Set();
    for (const item of items) {
      const href = "/console/cases/" + encodeURIComponent(item.id);
      const cell = h("td", { className: "nowrap countdown" });
      const tr = h(
        "tr",
        { className: "clickable", dataset: { caseId: item.id } },
        h("td", {}, JMT.priorityBadge(item.priority)),
        h("td", { className: "nowrap" }, item.category_label || item.category || "—"),
        h(
          "td",
          { className: "summary-cell" },
          h("a", { href }, item.summary || "（无摘要）"),
          h("div", { className: "muted" }, `#${item.id} · ${JMT.fmtShort(item.created_at)} 接报`)
        ),
        h("td", {}, place(item)),
        cell,
        h("td", {}, handler(item)),
        h("td", { className: "nowrap" }, notify(item))
      );
      tr.addEventListener("click", (event) => {
        if (event.target.closest("a")) return;
        location.href = href;
      });
      if (known && !known.has(item.id)) arrived.set(item.id, Date.now());
      const age = Date.now() - (arrived.get(item.id) || 0);
      if (age < FLASH_MS) {
        tr.classList.add("flash");
        for (const td of tr.children) td.style.animationDelay = `-${age}ms`; // carry on
      } else {
        arrived.delete(item.id);
      }
      fresh.add(item.id);
      rows.push({ item, tr, cell, deadline: JMT.deadline(item, fetchedAt) });
      body.appendChild(tr);
    }
    known = fresh;
    tick();
    $("queue-empty").hidden = items.length > 0;
    $("queue-empty").textContent = status === "closed" ? "暂无已办结案件。" : "暂无待办案件。";
    const urgent = items.filter((i) => i.priority === "urgent").length;
    const overdue = items.filter((i) => i.overdue).length;
    const open = items.filter((i) => i.status === "open").length;
    $("queue-stats").textContent =
      status === "closed"
        ? `共 ${items.length} 件`
        : `共 ${items.length} 件 · ${JMT.label("case_statuses", "open")} ${open} · ` +
          `${JMT.label("priorities", "urgent")} ${urgent} · 超时 ${overdue}`;
    document.title = (open && status !== "closed" ? `(${open}) ` : "") + "待办队列 · 镇海警民通";
  }

  async function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      const fetchedAt = Date.now();
      const [items] = await Promise.all([
        api("/api/cases?status=" + encodeURIComponent(status)),
        JMT.vocabulary(), // the badges' labels
      ]);
      showError($("queue-error"), "");
      render(items, fetchedAt);
    } catch (e) {
      if (e.status !== 401) showError($("queue-error"), "案件列表加载失败：" + e.message);
    } finally {
      loading = false;
      if (again) {
        again = false;
        load();
      }
    }
  }

  for (const tab of document.querySelectorAll(".tab[data-status]")) {
    tab.addEventListener("click", () => {
      status = tab.dataset.status;
      for (const t of document.querySelectorAll(".tab[data-status]")) {
        t.classList.toggle("active", t === tab);
      }
      known = null;
      arrived.clear();
      load();
    });
  }

  const refresh = JMT.debounce(load, 250);
  JMT.live({ case: refresh, message: refresh }, refresh);
  setInterval(tick, 1000);
  setInterval(load, 60000); // a safety net should an event be missed
  load();
})();
