/* 治理工单: GET /api/tickets — non-police matters diverted to the governance platform. */
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

  async function load() {
    const status = $("ticket-status").value;
    try {
      const [items] = await Promise.all([
        api("/api/tickets" + (status ? "?status=" + encodeURIComponent(status) : "")),
        JMT.vocabulary(),
      ]);
      showError($("tickets-error"), "");
      const body = clear($("tickets-body"));
      for (const t of items) body.append(row(t));
      $("tickets-empty").hidden = items.length > 0;
      const overdue = items.filter((t) => t.overdue).length;
      $("ticket-stats").textContent = `共 ${items.length} 件` + (overdue ? ` · 超期 ${overdue}` : "");
    } catch (e) {
      if (e.status !== 401) showError($("tickets-error"), "工单加载失败：" + e.message);
    }
  }

  $("ticket-status").addEventListener("change", load);
  setInterval(load, 60000);
  JMT.vocabulary()
    .then((vocab) => JMT.fillOptions($("ticket-status"), vocab.ticket_states))
    .catch((e) => e.status !== 401 && showError($("tickets-error"), "词表加载失败：" + e.message));
  load();
})();
