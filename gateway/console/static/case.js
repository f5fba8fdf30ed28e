/* 案件详情: GET /api/cases/{id}; claim, reply, note, transfer, divert, close.
 * Re-fetched when the event stream reports a change to this case or a resident message. */
"use strict";

(() => {
  const { $, h, clear, showError, api, toast } = JMT;
  if (!JMT.initChrome()) return;

  const caseId = Number(location.pathname.split("/").filter(Boolean).pop());
  const base = "/api/cases/" + encodeURIComponent(caseId);
  let current = null;
  let deadline = null;
  let myId = null;

  // Collected details are shown in the vocabulary's order (GET /api/vocabulary `details`);
  // keys it does not know follow, under their own names.
  let detailOrder = [];
  // The gateway already marks other kinds in the content ("[位置] …", "[图片]").
  const MSG_TYPES = { voice: "［语音转文字］" };

  // ------------------------------------------------------------------ rendering

  function plain(value) {
    if (value === true) return "是";
    if (value === false) return "否";
    if (Array.isArray(value)) return value.map(plain).join("、");
    if (value && typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function detailValue(key, value, details) {
    if (key === "amount_yuan") return h("span", { className: "money" }, JMT.fmtYuan(value) || plain(value));
    if (key === "amount" && details.amount_yuan === undefined && JMT.fmtYuan(value)) {
      return h("span", { className: "money" }, JMT.fmtYuan(value));
    }
    if (key === "event_time_iso") {
      const date = JMT.parseTime(value);
      return date ? JMT.fmtTime(date) : plain(value);
    }
    return plain(value);
  }

  function mapLink(lat, lng, name) {
    const la = Number(lat);
    const ln = Number(lng);
    if (lat === null || lng === null || !Number.isFinite(la) || !Number.isFinite(ln)) return null;
    const href =
      `https://uri.amap.com/marker?position=${ln},${la}` +
      (name ? "&name=" + encodeURIComponent(name) : "");
    return h("a", { href, target: "_blank", rel: "noopener noreferrer", className: "map-link" },
      `在高德地图中查看（${la.toFixed(5)}, ${ln.toFixed(5)}）`);
  }

  function renderDetails(c) {
    const list = clear($("case-details"));
    const details = c.details || {};
    const shown = new Set();
    const row = (label, ...value) => list.append(h("dt", {}, label), h("dd", {}, ...value));
    for (const { value: key, label } of detailOrder) {
      if (!(key in details)) continue;
      const value = details[key];
      shown.add(key);
      if (value === null || value === "" || (Array.isArray(value) && !value.length)) continue;
      if (key === "amount" && details.amount_yuan !== undefined &&
          String(value) === String(details.amount_yuan)) continue;
      row(label, detailValue(key, value, details));
    }
    for (const [key, value] of Object.entries(details)) {
      if (shown.has(key) || value === null || value === "") continue;
      row(key, plain(value));
    }
    const conv = c.conversation || {};
    const place = c.location || conv.location_label;
    const link = mapLink(conv.location_lat, conv.location_lng, conv.location_label || c.location);
    if (place || link) {
      row("定位", place ? h("div", {}, place) : null, link);
    }
    if (!list.children.length) list.append(h("dd", { className: "muted" }, "（暂无采集信息）"));
  }

  function renderMeta(c) {
    const list = clear($("case-meta"));
    const row = (label, ...value) => list.append(h("dt", {}, label), h("dd", {}, ...value));
    row("接报时间", JMT.fmtTime(c.created_at, { seconds: true }));
    row("转人工原因", JMT.label("case_reasons", c.reason));
    const where = [c.street, c.community].filter(Boolean).join(" ");
    row("所属社区", where || "未定位");
    row("承办部门", c.desk || "社区民警");
    row("指派民警", JMT.officerName(c.assigned_to) || "—");
    row("处理人", JMT.officerName(c.claimed_by) || h("span", { className: "muted" }, JMT.label("case_statuses", "open")));
    row("首次答复", c.first_reply_at ? JMT.fmtTime(c.first_reply_at, { seconds: true }) : "尚未答复");
    if (c.notify_status === "failed") {
      row("通知", h("span", { className: "fail" }, JMT.label("notify_statuses", "failed")),
        c.notify_error ? h("div", { className: "muted" }, c.notify_error) : null);
    } else if (c.notify_status) {
      row("通知", JMT.label("notify_statuses", c.notify_status));
    }
    if (c.status === "closed") {
      row("办结时间", JMT.fmtTime(c.closed_at));
      row("处理结果", c.resolution || "—");
      row("群众评价", c.rating ? "★".repeat(c.rating) + "☆".repeat(5 - c.rating) + `（${c.rating}分）`
        : h("span", { className: "muted" }, "等待群众评价"));
    }
  }

  function sender(m) {
    if (m.direction === "in") return { who: "群众", cls: "in" };
    const s = m.sender || "bot";
    if (s === "system") return { who: "系统", cls: "out system" };
    if (s.startsWith("officer:")) return { who: s.slice("officer:".length) || "民警", cls: "out officer" };
    return { who: "智能助手", cls: "out" };
  }

  function renderTranscript(c) {
    const box = $("transcript");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    clear(box);
    const messages = c.transcript || [];
    if (!messages.length) box.append(h("p", { className: "muted" }, "（暂无对话）"));
    for (const m of messages) {
      let { who, cls } = sender(m);
      if (m.msg_type === "event") cls = "system";
      if (m.status === "failed") cls += " failed";
      const kind = MSG_TYPES[m.msg_type];
      const bits = [who, JMT.fmtShort(m.created_at)];
      if (m.direction === "out" && JMT.hasLabel("message_statuses", m.status)) {
        bits.push(JMT.label("message_statuses", m.status));
      }
      box.append(
        h("div", { className: "msg " + cls, dataset: { messageId: m.id } },
          h("span", { className: "by" }, bits.join(" · ")),
          h("div", { className: "bubble" }, kind || null, m.content || ""))
      );
    }
    if (atBottom || !box.dataset.seen) box.scrollTop = box.scrollHeight;
    box.dataset.seen = "1";
  }

  function renderNotes(c) {
    const list = clear($("notes"));
    for (const n of c.notes || []) {
      list.append(h("li", {}, h("span", { className: "by" }, `${n.author} · ${JMT.fmtShort(n.created_at)}`), n.text));
    }
    if (!list.children.length) list.append(h("li", { className: "none" }, "暂无备注"));
  }

  function renderHistory(c) {
    const list = clear($("history"));
    for (const other of c.history || []) {
      list.append(
        h("li", {},
          h("span", { className: "by" },
            `#${other.id} · ${other.category_label} · ${JMT.label("case_statuses", other.status)}` +
            ` · ${JMT.fmtTime(other.created_at)}`),
          h("a", { href: "/console/cases/" + encodeURIComponent(other.id) }, other.summary || "（无摘要）"))
      );
    }
    if (!list.children.length) list.append(h("li", { className: "none" }, "无其他案件"));
  }

  function renderTickets(c) {
    const list = clear($("case-tickets"));
    for (const t of c.tickets || []) {
      list.append(
        h("li", {},
          h("span", { className: "by" },
            `工单 #${t.id} · ${t.kind_label || JMT.label("ticket_kinds", t.kind)} · ${JMT.fmtTime(t.created_at)}`),
          JMT.statusBadge(t.status, "ticket_states"), " ",
          t.overdue ? h("span", { className: "tag red" }, "已超期") : null,
          t.status_note ? h("div", { className: "muted" }, "平台反馈：" + t.status_note) : null)
      );
    }
    if (!list.children.length) list.append(h("li", { className: "none" }, "无相关工单"));
  }

  function renderActions(c) {
    const closed = c.status === "closed";
    const holder = c.claimed_by;
    const mine = holder && holder.id === myId;
    const claim = $("claim");
    claim.hidden = closed;
    claim.disabled = Boolean(mine);
    claim.textContent = mine ? "已由我处理" : holder ? `认领（当前：${JMT.officerName(holder)}）` : "认领";
    for (const id of ["transfer-box", "category-box", "divert-box", "close-box"]) {
      $(id).hidden = closed;
    }
    $("closed-note").hidden = !closed;
    $("reply-form").hidden = closed;
    $("reply-hint").textContent = holder && !mine ? `该案件由 ${JMT.officerName(holder)} 处理` :
      !holder ? "发送回复即视为认领" : "";
  }

  function tick() {
    if (!current) return;
    const [text, cls] = JMT.countdownText(current, deadline);
    const waiting = current.status !== "closed" && !current.first_reply_at && deadline;
    const shown = current.status === "closed" ? "" : text; // the status badge says 已办结
    $("case-countdown").textContent = waiting && cls !== "overdue" ? "答复剩余 " + text : shown;
    $("case-countdown").className = "countdown " + cls;
  }

  function render(c, fetchedAt) {
    current = c;
    deadline = JMT.deadline(c, fetchedAt);
    document.title = `案件 #${c.id} ${c.category_label || ""} · 镇海警民通`;
    $("case-title").textContent = `案件 #${c.id} · ${c.category_label || c.category}`;
    const prio = $("case-priority");
    prio.replaceWith(Object.assign(JMT.priorityBadge(c.priority), { id: "case-priority" }));
    const st = $("case-status");
    st.replaceWith(Object.assign(JMT.statusBadge(c.status), { id: "case-status" }));
    $("case-summary").textContent = c.summary || "（无摘要）";
    renderMeta(c);
    renderDetails(c);
    renderTranscript(c);
    renderNotes(c);
    renderHistory(c);
    renderTickets(c);
    renderActions(c);
    tick();
    $("case").hidden = false;
  }

  async function load() {
    try {
      const fetchedAt = Date.now();
      const c = await api(base);
      showError($("case-error"), "");
      render(c, fetchedAt);
    } catch (e) {
      if (e.status === 401) return;
      showError($("case-error"), (e.status === 404 ? "" : "案件加载失败：") + e.message);
    }
  }

  // ------------------------------------------------------------------ actions

  /** Run an action with its button disabled; errors (e.g. 409) go to the action box. */
  async function act(button, work, errorBox = $("action-error")) {
    showError(errorBox, "");
    button.disabled = true;
    try {
      await work();
    } catch (e) {
      if (e.status !== 401) {
        showError(errorBox, e.message);
        toast(e.message, true);
      }
    } finally {
      button.disabled = false;
      if (current) renderActions(current);
    }
  }

  $("claim").addEventListener("click", () =>
    act($("claim"), async () => {
      const fetchedAt = Date.now();
      const c = await api(base + "/claim", { method: "POST" });
      toast("认领成功，请及时答复群众");
      if (c && c.transcript) render(c, fetchedAt);
      else await load();
    })
  );

  $("canned").addEventListener("change", (event) => {
    const text = event.target.value;
    if (!text) return;
    const box = $("reply-text");
    box.value = box.value.trim() ? box.value.replace(/\s*$/, "\n") + text : text;
    event.target.value = "";
    box.focus();
  });

  $("reply-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("reply-form").requestSubmit();
    }
  });

  $("reply-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("reply-text").value.trim();
    if (!text) {
      showError($("action-error"), "请输入回复内容");
      return;
    }
    act($("reply-send"), async () => {
      await api(base + "/reply", { method: "POST", body: { text } });
      $("reply-text").value = "";
      toast("回复已发送");
      await load();
    });
  });

  $("note-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("note-text").value.trim();
    if (!text) return;
    act(event.submitter || $("note-form").querySelector("button"), async () => {
      await api(base + "/notes", { method: "POST", body: { text } });
      $("note-text").value = "";
      toast("备注已保存");
      await load();
    });
  });

  $("transfer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const select = $("transfer-target");
    const [kind, value] = select.value.split(":");
    if (!value) return;
    const body = kind === "desk" ? { desk: value } : { officer_id: Number(value) };
    const label = select.options[select.selectedIndex].textContent;
    act(event.submitter || select, async () => {
      await api(base + "/transfer", { method: "POST", body });
      select.value = "";
      $("transfer-box").open = false;
      toast("已转办：" + label);
      await load();
    });
  });

  // A wrong category is corrected here; the trainers' inbox picks the message up.
  $("category-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const select = $("category-target");
    if (!select.value) return;
    const label = select.options[select.selectedIndex].textContent;
    act(event.submitter || select, async () => {
      await api(base + "/category", { method: "POST", body: { category: select.value } });
      select.value = "";
      $("category-box").open = false;
      toast("类别已更正为：" + label);
      await load();
    });
  });

  $("divert-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const kind = $("divert-kind").value;
    if (!kind) return;
    const note = $("divert-note").value.trim();
    act(event.submitter || $("divert-kind"), async () => {
      const result = await api(base + "/divert", { method: "POST", body: { kind, note } });
      $("divert-note").value = "";
      toast(`已转治理平台（工单 #${result.ticket_id}），案件已办结`);
      await load();
    });
  });

  $("close-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const resolution = $("close-resolution").value.trim();
    if (!resolution) {
      showError($("action-error"), "请填写处理结果");
      return;
    }
    act($("close-submit"), async () => {
      await api(base + "/close", { method: "POST", body: { resolution } });
      $("close-resolution").value = "";
      toast("案件已办结，已邀请群众评价");
      await load();
    });
  });

  // ------------------------------------------------------------------ start

  async function fillSelects(vocab) {
    const [replies, officers] = await Promise.all([
      api("/api/canned-replies").catch(() => []),
      api("/api/officers").catch(() => []),
    ]);
    const canned = $("canned");
    for (const text of replies) canned.append(h("option", { value: text }, text));
    JMT.fillOptions($("category-target"), vocab.categories);
    JMT.fillOptions($("divert-kind"), vocab.ticket_kinds);
    const target = $("transfer-target");
    target.append(h("optgroup", { label: "转部门" },
      vocab.desks.map((d) => h("option", { value: "desk:" + d.value }, d.label + "部门"))));
    const people = officers.filter((o) => o.id !== myId);
    if (people.length) {
      target.append(h("optgroup", { label: "转民警" },
        people.map((o) => h("option", { value: "officer:" + o.id },
          o.name + ([o.desk, o.community].filter(Boolean).length
            ? `（${[o.desk, o.community].filter(Boolean).join("·")}）` : "")))));
    }
  }

  if (!Number.isInteger(caseId) || caseId <= 0) {
    showError($("case-error"), "案件编号无效");
    return;
  }
  const refresh = JMT.debounce(load, 250);
  let ready = false; // the vocabulary and the first load are in
  JMT.live(
    {
      case: (data) => data.id === caseId && refresh(),
      message: (data) => data.case_id === caseId && refresh(),
    },
    () => ready && refresh(),
  );
  setInterval(tick, 1000);
  // The vocabulary first: the selects and every label on the page come from it.
  Promise.all([JMT.me().then((user) => (myId = user.id)), JMT.vocabulary()])
    .then(([, vocab]) => {
      detailOrder = vocab.details;
      fillSelects(vocab);
      ready = true;
      load();
    })
    .catch((e) => {
      if (e.status !== 401) showError($("case-error"), "页面加载失败：" + e.message);
    });
})();
