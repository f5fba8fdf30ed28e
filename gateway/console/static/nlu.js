/* 语料标注: the trainers' NLU inbox (GET /api/nlu/inbox, POST .../annotate, .../discard,
 * POST /api/nlu/export). Keyboard first:
 *   j / k    next / previous message
 *   Enter    confirm the predicted intent (with the marked entities)
 *   i        pick another intent: type to filter, ↑/↓, Enter picks, Esc cancels
 *   e        mark the text selected with the mouse as an entity (asks which one)
 *   d        discard the message
 *   x        export annotated examples to nlu_data/ and show the report
 * Texts are masked by the server; entity offsets refer to the masked text shown here.
 */
"use strict";

(() => {
  const { $, h, clear, showError, api, toast } = JMT;
  if (!JMT.initChrome()) return;

  // Entity names and labels come from the vocabulary (GET /api/vocabulary `entities`).
  let ENTITIES = [];
  const entityLabel = (name) => JMT.label("entities", name);

  let items = [];
  let intents = [];
  let current = 0;
  let busy = false;
  let pickerMatches = [];
  let pickerIndex = 0;

  // Offsets: the server counts characters (code points, like Python and Rasa); JavaScript
  // strings count UTF-16 units, so an emoji before an entity would shift it. Convert.
  function codePoints(text, utf16) {
    return Array.from(text.slice(0, utf16)).length;
  }

  function textSpan(text, start, end) {
    return Array.from(text).slice(start, end).join("");
  }

  // ------------------------------------------------------------------ data

  function query() {
    const params = new URLSearchParams();
    const add = (key, id) => {
      const value = $(id).value.trim();
      if (value) params.set(key, value);
    };
    add("reason", "nlu-reason");
    add("intent", "nlu-intent");
    add("min_confidence", "nlu-min");
    add("max_confidence", "nlu-max");
    add("since", "nlu-since");
    add("until", "nlu-until");
    add("community", "nlu-community");
    params.set("limit", "200");
    return params.toString();
  }

  function startingEntities(item) {
    return (item.entities || [])
      .filter((e) => ENTITIES.includes(e.entity) && Number.isInteger(e.start) && Number.isInteger(e.end))
      .map((e) => ({ entity: e.entity, start: e.start, end: e.end }));
  }

  async function load() {
    try {
      const answer = await api("/api/nlu/inbox?" + query());
      showError($("nlu-error"), "");
      items = answer.items.map((item) => ({ ...item, marked: startingEntities(item) }));
      current = Math.min(current, Math.max(items.length - 1, 0));
      $("nlu-stats").textContent = `待标注 ${answer.total} 条` +
        (answer.total > items.length ? `（显示前 ${items.length} 条）` : "");
      render();
    } catch (e) {
      if (e.status !== 401) showError($("nlu-error"), "收件箱加载失败：" + e.message);
    }
  }

  async function loadIntents() {
    try {
      intents = (await api("/api/nlu/intents")).intents;
    } catch (e) {
      if (e.status !== 401) showError($("nlu-error"), "意图列表加载失败：" + e.message);
    }
  }

  // ------------------------------------------------------------------ rendering

  function pct(value) {
    return value === null || value === undefined ? "—" : JMT.fmtPercent(value, 0);
  }

  function entityChips(item, index) {
    return item.marked.map((e, at) =>
      h(
        "div",
        { className: "nowrap" },
        h("span", { className: "tag" }, entityLabel(e.entity)),
        " ",
        textSpan(item.text, e.start, e.end),
        " ",
        h(
          "button",
          {
            type: "button",
            className: "link",
            title: "删除该实体",
            onclick: () => {
              items[index].marked.splice(at, 1);
              render();
            },
          },
          "×"
        )
      )
    );
  }

  function row(item, index) {
    const selected = index === current;
    const tr = h(
      "tr",
      {
        className: "clickable",
        dataset: { messageId: item.id },
        "aria-selected": selected ? "true" : "false",
        onclick: () => {
          // a click ending a text selection must not re-render (that would drop the selection)
          const selection = window.getSelection();
          if (selection && !selection.isCollapsed) return;
          if (index !== current) select(index);
        },
      },
      h(
        "td",
        { className: "nowrap" },
        (item.reason_labels || item.reasons).map((label) => h("div", {}, h("span", { className: "tag" }, label)))
      ),
      h("td", { className: "summary-cell" }, h("span", { className: "nlu-text" }, item.text)),
      h(
        "td",
        { className: "nowrap" },
        (item.top2 || []).map((r, at) =>
          h("div", { className: at === 0 ? null : "muted" }, `${r.name} ${pct(r.confidence)}`)
        )
      ),
      h("td", {}, entityChips(item, index)),
      h("td", { className: "nowrap" }, JMT.fmtShort(item.created_at), item.community ? h("div", { className: "muted" }, item.community) : null)
    );
    if (selected) {
      tr.style.background = "#eef4ff";
      tr.style.outline = "2px solid #2f6fd6";
    }
    return tr;
  }

  function render() {
    const body = clear($("nlu-body"));
    items.forEach((item, index) => body.append(row(item, index)));
    $("nlu-empty").hidden = items.length > 0;
    const selected = body.children[current];
    if (selected && selected.scrollIntoView) selected.scrollIntoView({ block: "nearest" });
  }

  function select(index) {
    if (!items.length) return;
    current = Math.max(0, Math.min(items.length - 1, index));
    render();
  }

  // ------------------------------------------------------------------ actions

  function done(index) {
    items.splice(index, 1);
    current = Math.min(current, Math.max(items.length - 1, 0));
    render();
    $("nlu-stats").textContent = `剩余 ${items.length} 条`;
  }

  async function annotate(intent) {
    const item = items[current];
    if (!item || busy) return;
    busy = true;
    try {
      await api(`/api/nlu/inbox/${encodeURIComponent(item.id)}/annotate`, {
        method: "POST",
        body: { intent, entities: item.marked },
      });
      toast(`已标注为 ${intent}`);
      done(items.indexOf(item));
    } catch (e) {
      if (e.status !== 401) toast("标注失败：" + e.message, true);
    } finally {
      busy = false;
    }
  }

  async function discard() {
    const item = items[current];
    if (!item || busy) return;
    busy = true;
    try {
      await api(`/api/nlu/inbox/${encodeURIComponent(item.id)}/discard`, { method: "POST" });
      toast("已丢弃");
      done(items.indexOf(item));
    } catch (e) {
      if (e.status !== 401) toast("丢弃失败：" + e.message, true);
    } finally {
      busy = false;
    }
  }

  async function exportData() {
    if (busy) return;
    busy = true;
    try {
      const report = await api("/api/nlu/export", { method: "POST" });
      const lines = clear($("nlu-export-lines"));
      lines.append(h("li", {}, `写入 ${report.count} 条：${report.files.join("，") || "无文件变更"}`));
      for (const d of report.duplicates) lines.append(h("li", { className: "muted" }, `重复（未写入）#${d.message_id} ${d.intent}：${d.text}`));
      for (const d of report.heldout) lines.append(h("li", { className: "error" }, `属于留出测试集，拒绝导出 #${d.message_id}：${d.text}`));
      for (const c of report.conflicts) {
        const others = c.with.map((o) => `${o.intent}「${o.text}」（${o.source}）`).join("；");
        lines.append(h("li", { className: "error" }, `冲突，留在收件箱 #${c.message_id} ${c.intent}：${c.text} ⇄ ${others}`));
      }
      $("nlu-export-report").hidden = false;
      toast(`导出完成：${report.count} 条` + (report.conflicts.length ? `，${report.conflicts.length} 条冲突` : ""));
    } catch (e) {
      if (e.status !== 401) toast("导出失败：" + e.message, true);
    } finally {
      busy = false;
    }
  }

  /** The mouse selection inside a message text → [row index, start, end] or null. */
  function selectedSpan() {
    const selection = window.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    const holder = range.startContainer.parentElement && range.startContainer.parentElement.closest(".nlu-text");
    if (!holder || range.endContainer !== range.startContainer) return null;
    const tr = holder.closest("tr");
    const index = Array.prototype.indexOf.call($("nlu-body").children, tr);
    if (index < 0) return null;
    const text = items[index].text;
    let start = range.startOffset;
    let end = range.endOffset;
    while (start < end && /\s/.test(text[start])) start += 1;
    while (end > start && /\s/.test(text[end - 1])) end -= 1;
    if (start >= end) return null;
    return [index, codePoints(text, start), codePoints(text, end)];
  }

  function markEntity() {
    const span = selectedSpan();
    if (!span) {
      toast("请先用鼠标在消息文本中选中要标注的文字", true);
      return;
    }
    const [index, start, end] = span;
    current = index;
    const choices = ENTITIES.map((name, at) => `${at + 1} ${name}（${entityLabel(name)}）`).join("\n");
    const answer = window.prompt(`「${textSpan(items[index].text, start, end)}」是哪种实体？输入序号或名称：\n${choices}`, "");
    if (answer === null) return;
    const value = answer.trim();
    const entity = /^\d+$/.test(value) ? ENTITIES[Number(value) - 1] : ENTITIES.find((n) => n === value || entityLabel(n) === value);
    if (!entity) {
      toast("未知实体：" + value, true);
      return;
    }
    const marked = items[index].marked.filter((e) => e.end <= start || e.start >= end);
    marked.push({ entity, start, end });
    marked.sort((a, b) => a.start - b.start);
    items[index].marked = marked;
    window.getSelection().removeAllRanges();
    render();
  }

  // ------------------------------------------------------------------ intent picker

  function openPicker() {
    if (!items[current]) return;
    $("nlu-picker").hidden = false;
    const input = $("nlu-picker-input");
    input.value = "";
    filterPicker();
    input.focus();
  }

  function closePicker() {
    $("nlu-picker").hidden = true;
    $("nlu-picker-input").blur();
  }

  function filterPicker() {
    const needle = $("nlu-picker-input").value.trim().toLowerCase();
    pickerMatches = intents.filter((i) => !needle || i.name.toLowerCase().includes(needle) || i.category.toLowerCase().includes(needle));
    pickerIndex = 0;
    renderPicker();
  }

  function renderPicker() {
    const list = clear($("nlu-picker-list"));
    pickerMatches.slice(0, 30).forEach((i, at) => {
      const li = h(
        "li",
        { className: "clickable", dataset: { intent: i.name }, onclick: () => pick(i.name) },
        i.name,
        " ",
        h("span", { className: "muted" }, i.category)
      );
      if (at === pickerIndex) li.style.background = "#eef4ff";
      list.append(li);
    });
    if (!pickerMatches.length) list.append(h("li", { className: "muted" }, "没有匹配的意图"));
  }

  function pick(name) {
    closePicker();
    annotate(name);
  }

  $("nlu-picker-input").addEventListener("input", filterPicker);
  $("nlu-picker-input").addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      closePicker();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const last = Math.min(pickerMatches.length, 30) - 1;
      pickerIndex = Math.max(0, Math.min(last, pickerIndex + (event.key === "ArrowDown" ? 1 : -1)));
      renderPicker();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const chosen = pickerMatches[pickerIndex];
      if (chosen) pick(chosen.name);
    }
  });

  // ------------------------------------------------------------------ keyboard

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA")) return;
    if (!$("nlu-picker").hidden) return;
    const item = items[current];
    switch (event.key) {
      case "j":
        select(current + 1);
        break;
      case "k":
        select(current - 1);
        break;
      case "Enter":
        if (!item) return;
        if (target && target.tagName === "BUTTON") return;
        if (!item.intent || item.intent === "nlu_fallback") openPicker();
        else annotate(item.intent);
        break;
      case "i":
        openPicker();
        break;
      case "e":
        markEntity();
        break;
      case "d":
        discard();
        break;
      case "x":
        exportData();
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  for (const id of ["nlu-reason", "nlu-intent", "nlu-min", "nlu-max", "nlu-since", "nlu-until", "nlu-community"]) {
    $(id).addEventListener("change", () => {
      current = 0;
      load();
    });
  }
  $("nlu-export").addEventListener("click", exportData);

  loadIntents();
  JMT.vocabulary()
    .then((vocab) => {
      ENTITIES = vocab.entities.map((e) => e.value);
      JMT.fillOptions($("nlu-reason"), vocab.nlu_reasons);
    })
    .catch((e) => e.status !== 401 && showError($("nlu-error"), "词表加载失败：" + e.message))
    .finally(load);
})();
