/* 数据统计: GET /api/metrics?days=N (shape: casework/metrics.py `compute`), tiles, charts
 * drawn as inline SVG by the small functions below, tables, and the CSV export. */
"use strict";

(() => {
  const { $, h, clear, showError, api } = JMT;
  if (!JMT.initChrome()) return;

  const SVG = "http://www.w3.org/2000/svg";
  // Presentation only: the priorities themselves (order, labels) come from the vocabulary.
  const COLORS = { urgent: "#d4282f", high: "#e67300", normal: "#1f63c6", low: "#8a939f" };
  const BAR = "#1f63c6";
  let days = 30;

  // ------------------------------------------------------------------ formatting

  const pct = (ratio) => JMT.fmtPercent(ratio);
  const minutes = (m) => (m === null || m === undefined ? "—" : JMT.fmtSpan(Number(m) * 60));
  const score = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(2) + " 分");

  function tile(label, value, sub, id) {
    return h("div", { className: "tile", dataset: { metric: id } },
      h("div", { className: "label" }, label),
      h("div", { className: "value" }, value),
      h("div", { className: "sub" }, sub || "\u00a0"));
  }

  // ------------------------------------------------------------------ SVG

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function text(x, y, content, attrs = {}) {
    return svg("text", { x, y, ...attrs }, content);
  }

  /** An axis maximum ≥ value with four whole-number steps (counts have no fractions). */
  function niceMax(value) {
    const raw = Math.max(1, value / 4);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      const tick = step * power;
      if (tick >= raw && Number.isInteger(tick)) return tick * 4;
    }
    return 40 * power;
  }

  function nothing(box, message = "所选时间段内暂无数据") {
    clear(box).append(h("div", { className: "none" }, message));
  }

  /** Horizontal bars: [{label, value, title}]. */
  function hbars(box, rows) {
    if (!rows.some((r) => r.value > 0)) return nothing(box);
    const width = 420, left = 78, right = 40, rowH = 26;
    const height = rows.length * rowH + 10;
    const max = niceMax(Math.max(...rows.map((r) => r.value)));
    const scale = (width - left - right) / max;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    rows.forEach((r, i) => {
      const y = 5 + i * rowH;
      chart.append(
        text(left - 8, y + 15, r.label, { "text-anchor": "end" }),
        svg("rect", { x: left, y: y + 4, width: Math.max(r.value * scale, r.value ? 2 : 0),
          height: rowH - 10, rx: 2, fill: r.color || BAR }, svg("title", {}, r.title || `${r.label}：${r.value}`)),
        text(left + r.value * scale + 6, y + 15, r.value)
      );
    });
    clear(box).append(chart);
  }

  /** Vertical bars over days with a y axis: [{label, value, title}]. */
  function vbars(box, rows, { percent = false, colors = null } = {}) {
    const present = rows.filter((r) => r.value !== null && r.value !== undefined);
    if (percent ? !present.length : !present.some((r) => r.value > 0)) return nothing(box);
    const width = 420, height = 226, left = 36, right = 8, top = 18, bottom = 28;
    const max = percent ? 1 : niceMax(Math.max(...rows.map((r) => r.value || 0)));
    const plotW = width - left - right, plotH = height - top - bottom;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    for (let i = 0; i <= 4; i++) {
      const y = top + plotH - (plotH * i) / 4;
      const v = (max * i) / 4;
      chart.append(
        svg("line", { x1: left, x2: width - right, y1: y, y2: y, stroke: "#e3e7ee" }),
        text(left - 4, y + 4, percent ? Math.round(v * 100) + "%" : Number.isInteger(v) ? v : v.toFixed(1),
          { "text-anchor": "end" })
      );
    }
    const slot = plotW / rows.length;
    const barW = Math.max(1, Math.min(40, slot * 0.7));
    const every = Math.ceil(rows.length / 10); // at most ~10 labels under the axis
    rows.forEach((r, i) => {
      const x = left + i * slot + (slot - barW) / 2;
      const v = r.value || 0;
      const barH = (plotH * v) / max;
      chart.append(svg("rect", { x, y: top + plotH - barH, width: barW, height: barH, rx: 1,
        fill: (colors && colors[i]) || BAR }, svg("title", {}, r.title || `${r.label}：${r.value}`)));
      if (rows.length <= 8 && r.value !== null && (percent || r.value > 0)) {
        chart.append(text(x + barW / 2, top + plotH - barH - 4,
          percent ? pct(r.value) : r.value, { "text-anchor": "middle" }));
      }
      if (i % every === 0) {
        chart.append(text(x + barW / 2, height - 10, r.label, { "text-anchor": "middle" }));
      }
    });
    clear(box).append(chart);
  }

  // ------------------------------------------------------------------ tables

  function table(box, head, rows) {
    if (!rows.length) return nothing(box, "所选时间段内暂无记录");
    clear(box).append(
      h("table", { className: "small" },
        h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))))
    );
  }

  // ------------------------------------------------------------------ the page

  function render(m, vocab) {
    const since = JMT.parseTime(m.window && m.window.since);
    const until = JMT.parseTime(m.window && m.window.until);
    $("metrics-range").textContent =
      since && until ? `${JMT.fmtTime(since)} 至 ${JMT.fmtTime(until)}（北京时间）` : "";

    const t = m.timely || {};
    const f = m.first_reply_minutes || {};
    const s = m.satisfaction || {};
    const b = m.bot_resolved_share || {};
    const k = m.tickets || {};
    const d = m.dissuasion || {};
    const sp = d.stop_payments || {};
    const w = m.warnings || {};
    clear($("tiles")).append(
      tile("答复及时率", pct(t.rate),
        `及时 ${t.timely ?? 0} / 计入 ${t.counted ?? 0} 件` + (t.pending ? `，${t.pending} 件未到期` : ""), "timely"),
      tile("首次回复中位数", minutes(f.median), `共 ${f.count ?? 0} 件已答复`, "median"),
      tile("首次回复 P90", minutes(f.p90), "90% 的案件在此时间内答复", "p90"),
      tile("满意度", score(s.average),
        `评价 ${s.ratings ?? 0} 条 / 邀请 ${s.requests ?? 0} 次，回复率 ${pct(s.response_rate)}`, "satisfaction"),
      tile("机器人独立解决率", pct(b.share),
        `${b.resolved_by_bot ?? 0} / ${b.conversations ?? 0} 个会话未转人工`, "bot"),
      tile("工单办结率", pct(k.closure_rate),
        `办结 ${k.resolved ?? 0} / 新建 ${k.created ?? 0}` + (k.overdue ? `，超期 ${k.overdue}` : "") +
        (k.rejected ? `，退回 ${k.rejected}` : ""), "tickets"),
      tile("精准劝阻按时联系率", pct(d.reached_within_deadline_rate),
        `按时联系 ${d.reached_within_deadline ?? 0} / 任务 ${d.tasks ?? 0} 件，见到本人 ${d.reached_in_person ?? 0}`,
        "dissuasion"),
      tile(JMT.label("dissuasion_outcomes", "dissuaded"), `${d.dissuaded ?? 0} 件`,
        `保护金额 ${JMT.fmtYuan(d.amount_protected_yuan ?? 0)}，已被骗 ${d.defrauded ?? 0}` +
        (sp.requests ? `，止付 ${sp.requests} 笔 ${JMT.fmtYuan(sp.amount_yuan)}` : ""), "dissuaded"),
      tile("预警触达率", pct(w.reach),
        `预警 ${w.broadcasts ?? 0} 条，送达 ${w.sent ?? 0} / 目标 ${w.targeted ?? 0} 人次，` +
        `退订率 ${pct(w.opt_out_rate)}`, "warnings")
    );

    const byCategory = m.volume_by_category || {};
    hbars($("chart-category"), Object.entries(byCategory).map(([key, value]) => ({
      label: JMT.label("categories", key), value: Number(value) || 0,
    })));

    vbars($("chart-daily"), (m.volume_by_day || []).map((d) => ({
      label: String(d.day).slice(5),
      value: d.cases || 0,
      title: `${d.day}：案件 ${d.cases || 0} 件，群众消息 ${d.inbound_messages || 0} 条`,
    })));

    const priorities = vocab.priorities.map((p) => p.value); // most urgent first
    const byPriority = m.timely_by_priority || {};
    vbars($("chart-priority"), priorities.map((p) => {
      const row = byPriority[p] || {};
      return {
        label: JMT.label("priorities", p),
        value: row.rate ?? null,
        title: `${JMT.label("priorities", p)}：${pct(row.rate)}（及时 ${row.timely ?? 0} / 计入 ${row.counted ?? 0}）`,
      };
    }), { percent: true, colors: priorities.map((p) => COLORS[p]) });

    table($("table-officers"),
      ["民警", "认领", "已答复", "及时率", "首次回复中位数", "满意度", "办结"],
      (m.per_officer || []).map((o) => [
        o.display_name || o.username, o.claimed, o.answered, pct(o.timely_rate),
        minutes(o.median_first_reply_minutes),
        o.average_rating === null || o.average_rating === undefined ? "—" : Number(o.average_rating).toFixed(2),
        o.closed,
      ]));
    table($("table-communities"),
      ["社区", "案件", "及时率", "满意度", "工单", "工单办结"],
      (m.per_community || []).map((c) => [
        c.community, c.cases, pct(c.timely_rate),
        c.average_rating === null || c.average_rating === undefined ? "—" : Number(c.average_rating).toFixed(2),
        c.tickets_created, c.tickets_resolved,
      ]));
  }

  // ------------------------------------------------------------------ 每周热点

  function kindLabel(kind) {
    if (kind === "fraud_type") return JMT.label("entities", "fraud_type");
    return { category: "类别", faq_topic: "常见问题" }[kind] || kind;
  }

  function renderHot(w) {
    $("hot-fraud-title").textContent = JMT.label("entities", "fraud_type");
    $("hot-range").textContent = `${w.week}（${String(w.since).slice(0, 10)} 起一周，北京时间）· 居民来信 ${w.messages} 条`;
    const d = w.district || {};
    hbars($("chart-hot-fraud"), Object.entries(d.fraud_types || {}).slice(0, 8).map(([k, v]) => ({ label: k, value: v })));
    hbars($("chart-hot-topics"), Object.entries(d.faq_topics || {}).slice(0, 8).map(([k, v]) => ({
      label: k.replace(/^faq\//, ""), value: v,
    })));
    const words = clear($("hot-keywords"));
    for (const k of d.keywords || []) words.append(h("span", { className: "tag", title: String(k.weight) }, k.word), " ");
    if (!(d.keywords || []).length) words.append(h("span", { className: "muted" }, "—"));
    table($("table-risers"), [JMT.label("details", "location"), "类型", "内容", "本周", "上周"],
      (w.risers || []).map((r) => [r.place, kindLabel(r.kind), r.label, r.this_week, r.last_week]));
    table($("table-hot-streets"),
      [JMT.label("details", "street"), "来信", JMT.label("entities", "fraud_type"), "关键词"],
      (w.streets || []).map((g) => [
        g.place, g.messages,
        Object.entries(g.fraud_types || {}).map(([k, v]) => `${k} ${v}`).join("、") || "—",
        (g.keywords || []).slice(0, 5).map((k) => k.word).join("、") || "—",
      ]));
  }

  async function loadHot() {
    try {
      const [week] = await Promise.all([api("/api/metrics/hot-topics"), JMT.vocabulary()]);
      renderHot(week);
    } catch (e) {
      if (e.status !== 401) showError($("metrics-error"), "热点加载失败：" + e.message);
    }
  }

  async function load() {
    try {
      const [m, vocab] = await Promise.all([api("/api/metrics?days=" + days), JMT.vocabulary()]);
      showError($("metrics-error"), "");
      render(m, vocab);
    } catch (e) {
      if (e.status !== 401) showError($("metrics-error"), "统计数据加载失败：" + e.message);
    }
  }

  for (const tab of document.querySelectorAll("#days .tab")) {
    tab.addEventListener("click", () => {
      days = Number(tab.dataset.days);
      for (const t of document.querySelectorAll("#days .tab")) t.classList.toggle("active", t === tab);
      load();
    });
  }

  $("export").addEventListener("click", async () => {
    const button = $("export");
    button.disabled = true;
    try {
      const response = await api("/api/metrics.csv?days=" + days, { raw: true });
      const blob = await response.blob();
      const named = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "");
      const name = named ? named[1] : `jmt-metrics-${days}d.csv`;
      const url = URL.createObjectURL(blob);
      const link = h("a", { download: name });
      link.href = url; // a blob: URL, which h() does not accept for href on purpose
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      if (e.status !== 401) JMT.toast("导出失败：" + e.message, true);
    } finally {
      button.disabled = false;
    }
  });

  load();
  loadHot();
})();
