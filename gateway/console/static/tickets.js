/* 治理工单: GET /api/tickets — non-police matters diverted to the governance platform,
 * newest first, one page at a time (上一页 / 下一页; the total from X-Total-Count). */
"use strict";

(() => {
  const { $, h, clear, showError, api } = JMT;
  if (!JMT.initChrome()) return;

  function place(t) {
    const where = [t.street, t.community].filter(Boolean).join(" ");
    return [where || "—", t.location ? h("div", { className: "muted" }, t.location) : null];
  }

  function row(t) {
    return h(
      "tr",
      { className: t.overdue ? "overdue-row" : null, dataset: { ticketId: t.id } },
      h("td", { className: "nowrap" }, `#${t.id}`),
      h("td", { className: "nowrap" }, t.kind_label || JMT.label("ticket_kinds", t.kind)),
      h(
        "td",
        { className: "nowrap" },
        JMT.statusBadge(t.status, "ticket_states"),
        t.overdue ? h("div", {}, h("span", { className: "tag red" }, "已超期")) : null,
        t.linked_to_id ? h("div", { className: "muted" }, `并入 #${t.linked_to_id}`) : null
      ),
      h("td", { className: "summary-cell" }, t.summary || "—"),
      h("td", {}, place(t)),
      h(
        "td",
        { className: "nowrap" },
        t.sent_at ? JMT.fmtTime(t.sent_at) : h("span", { className: "muted" }, "未推送"),
        t.send_error ? h("div", { className: "fail", title: t.send_error }, "推送失败") : null
      ),
      h(
        "td",
        { className: "nowrap" + (t.overdue ? " overdue" : "") },
        t.due_at ? JMT.fmtTime(t.due_at) : "—",
        t.resolved_at ? h("div", { className: "ok" }, "办结 " + JMT.fmtShort(t.resolved_at)) : null
      ),
      h("td", {}, t.status_note || h("span", { className: "muted" }, "—")),
      h(
        "td",
        { className: "nowrap" },
        t.case_id ? h("a", { href: "/console/cases/" + encodeURIComponent(t.case_id) }, `案件 #${t.case_id}`) : "—"
      )
    );
  }

  const PAGE_SIZE = 50;
  let offset = 0;
  let total = 0;
  const prev = h("button", { type: "button", id: "tickets-prev" }, "上一页");
  const next = h("button", { type: "button", id: "tickets-next" }, "下一页");
  const pageInfo = h("span", { id: "tickets-page", className: "muted" });
  const pager = h("div", { className: "pager", id: "tickets-pager" }, prev, pageInfo, next);
  ($("tickets-empty") || $("tickets")).insertAdjacentElement("afterend", pager);
  prev.addEventListener("click", () => turn(-1));
  next.addEventListener("click", () => turn(1));

  function turn(direction) {
    const target = offset + direction * PAGE_SIZE;
    if (target < 0 || target >= total) return;
    offset = target;
    load();
    window.scrollTo(0, 0);
  }

  function renderPager() {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const current = Math.floor(offset / PAGE_SIZE) + 1;
    pageInfo.textContent = `第 ${current} / ${pages} 页 · 共 ${total} 件`;
    prev.disabled = offset <= 0;
    next.disabled = offset + PAGE_SIZE >= total;
    pager.hidden = total <= PAGE_SIZE && offset === 0;
  }

  async function load() {
    const status = $("ticket-status").value;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
    if (status) params.set("status", status);
    try {
      const [response] = await Promise.all([
        api("/api/tickets?" + params.toString(), { raw: true }),
        JMT.vocabulary(),
      ]);
      const items = await response.json();
      total = parseInt(response.headers.get("X-Total-Count") || "", 10);
      if (isNaN(total)) total = items.length;
      if (!items.length && offset > 0 && total > 0) {
        offset = Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE; // the page emptied meanwhile
        return load();
      }
      showError($("tickets-error"), "");
      const body = clear($("tickets-body"));
      for (const t of items) body.append(row(t));
      $("tickets-empty").hidden = items.length > 0;
      const overdue = items.filter((t) => t.overdue).length;
      $("ticket-stats").textContent = `共 ${total} 件` + (overdue ? ` · 本页超期 ${overdue}` : "");
      renderPager();
    } catch (e) {
      if (e.status !== 401) showError($("tickets-error"), "工单加载失败：" + e.message);
    }
  }

  $("ticket-status").addEventListener("change", () => {
    offset = 0;
    load();
  });
  setInterval(load, 60000);
  JMT.vocabulary()
    .then((vocab) => JMT.fillOptions($("ticket-status"), vocab.ticket_states))
    .catch((e) => e.status !== 401 && showError($("tickets-error"), "词表加载失败：" + e.message));
  load();
})();
