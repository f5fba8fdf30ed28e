/* 预警推送: compose a warning with its WeChat preview (GET /api/broadcasts/preview), send
 * it now or at a Beijing time (POST /api/broadcasts), and follow each broadcast's figures
 * (GET /api/broadcasts, …/{id}; pause / resume / cancel). Officers may only address their
 * own community: the server refuses anything else (403) and this page says why. */
"use strict";

(() => {
  const { $, h, clear, showError, api } = JMT;
  if (!JMT.initChrome()) return;

  const PAGE = 20;
  let offset = 0;
  let selected = null;

  const names = (text) => text.split(/[，,、\s]+/).map((s) => s.trim()).filter(Boolean);

  /** A `datetime-local` value read as Beijing time (whatever the browser's zone). */
  function beijingIso(local) {
    return local ? `${local}:00+08:00` : null;
  }

  function audience() {
    const kind = document.querySelector('input[name="aud-kind"]:checked').value;
    if (kind === "district") return { district: true };
    if (kind === "streets") return { streets: names($("aud-streets").value) };
    if (kind === "communities") return { communities: names($("aud-communities").value) };
    if (kind === "openids") return { openids: names($("aud-openids").value) };
    return { reported: { category: $("aud-category").value, days: Number($("aud-days").value) } };
  }

  function showKind() {
    const kind = document.querySelector('input[name="aud-kind"]:checked').value;
    for (const box of document.querySelectorAll("[data-aud]")) box.hidden = box.dataset.aud !== kind;
  }

  async function preview() {
    const params = new URLSearchParams({
      topic: $("bc-topic").value, title: $("bc-title").value.trim(), text: $("bc-text").value.trim(),
    });
    try {
      const shown = await api("/api/broadcasts/preview?" + params.toString());
      showError($("compose-error"), "");
      $("preview-template").textContent = shown.template;
      $("preview-text").textContent = shown.text;
      $("preview").hidden = false;
    } catch (e) {
      if (e.status !== 401) showError($("compose-error"), "预览失败：" + e.message);
    }
  }

  async function send(event) {
    event.preventDefault();
    const body = {
      topic: $("bc-topic").value,
      title: $("bc-title").value.trim(),
      text: $("bc-text").value.trim(),
      audience: audience(),
    };
    const at = beijingIso($("bc-send-at").value);
    if (at) body.send_at = at;
    try {
      const made = await api("/api/broadcasts", { method: "POST", body });
      showError($("compose-error"), "");
      JMT.toast(`预警 #${made.id} 已${made.status === "scheduled" ? "定时" : "提交发送"}`);
      $("compose").reset();
      $("preview").hidden = true;
      showKind();
      offset = 0;
      selected = made.id;
      await load();
    } catch (e) {
      if (e.status !== 401) showError($("compose-error"), "发布失败：" + e.message);
    }
  }

  function row(b) {
    return h("tr", { dataset: { broadcastId: b.id }, className: b.id === selected ? "selected" : null },
      h("td", { className: "nowrap" }, `#${b.id}`),
      h("td", { className: "nowrap" }, b.topic_label || JMT.label("warning_topics", b.topic)),
      h("td", {}, b.title),
      h("td", { className: "nowrap" }, JMT.statusBadge(b.status, "broadcast_statuses"),
        b.pause_reason ? h("div", { className: "fail" }, b.pause_reason) : null),
      h("td", { className: "nowrap" }, JMT.fmtTime(b.send_at)),
      h("td", { className: "nowrap" }, JMT.officerName(b.created_by) || "—"));
  }

  async function load() {
    try {
      const [page] = await Promise.all([
        api(`/api/broadcasts?limit=${PAGE}&offset=${offset}`), JMT.vocabulary(),
      ]);
      showError($("list-error"), "");
      const body = clear($("bc-body"));
      for (const b of page.items) body.append(row(b));
      $("bc-empty").hidden = page.items.length > 0;
      $("bc-page").textContent = page.total
        ? `第 ${offset + 1}–${offset + page.items.length} 条，共 ${page.total} 条` : "";
      $("bc-prev").disabled = offset === 0;
      $("bc-next").disabled = offset + page.items.length >= page.total;
      if (selected !== null) await show(selected);
    } catch (e) {
      if (e.status !== 401) showError($("list-error"), "预警列表加载失败：" + e.message);
    }
  }

  function figure(label, value, metric) {
    return h("div", { className: "tile", dataset: { metric } },
      h("div", { className: "label" }, label), h("div", { className: "value" }, String(value ?? 0)));
  }

  async function show(id) {
    selected = id;
    let b;
    try {
      b = await api(`/api/broadcasts/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 401) showError($("list-error"), "预警详情加载失败：" + e.message);
      return;
    }
    $("bc-detail").hidden = false;
    $("bc-detail-title").textContent = `#${b.id} ${b.title}`;
    $("bc-detail-status").textContent = JMT.label("broadcast_statuses", b.status) +
      (b.pause_reason ? `（${b.pause_reason}）` : "");
    clear($("bc-figures")).append(
      figure("目标居民", b.targeted, "targeted"),
      // the delivery states' own labels (已发送, 发送失败, 已退订 …) from the vocabulary
      ...["sent", "failed", "opted_out", "skipped", "pending"].map((state) =>
        figure(JMT.label("delivery_statuses", state), b[state], state)),
      figure("24小时内回复", b.replies_24h, "replies"));
    const reasons = Object.entries(b.failed_by_reason || {});
    $("bc-reasons").textContent = reasons.length
      ? "失败原因：" + reasons.map(([r, n]) => `${r} ${n}`).join("、") : "";
    const channels = Object.entries(b.by_channel || {});
    $("bc-channels").textContent = channels.length
      ? "发送方式：" + channels.map(([c, n]) => `${JMT.label("delivery_channels", c)} ${n}`).join("、") : "";
    $("bc-pause").hidden = !["scheduled", "sending"].includes(b.status);
    $("bc-resume").hidden = b.status !== "paused";
    $("bc-cancel").hidden = !["scheduled", "sending", "paused"].includes(b.status);
    for (const tr of document.querySelectorAll("#bc-body tr")) {
      tr.classList.toggle("selected", Number(tr.dataset.broadcastId) === b.id);
    }
  }

  async function act(action) {
    try {
      await api(`/api/broadcasts/${encodeURIComponent(selected)}/${action}`, { method: "POST" });
      await load();
    } catch (e) {
      if (e.status !== 401) showError($("list-error"), "操作失败：" + e.message);
    }
  }

  $("bc-body").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-broadcast-id]");
    if (tr) show(Number(tr.dataset.broadcastId));
  });
  for (const radio of document.querySelectorAll('input[name="aud-kind"]')) radio.addEventListener("change", showKind);
  $("bc-preview").addEventListener("click", preview);
  $("compose").addEventListener("submit", send);
  $("bc-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  $("bc-next").addEventListener("click", () => { offset += PAGE; load(); });
  $("bc-pause").addEventListener("click", () => act("pause"));
  $("bc-resume").addEventListener("click", () => act("resume"));
  $("bc-cancel").addEventListener("click", () => act("cancel"));

  Promise.all([JMT.vocabulary(), JMT.me()])
    .then(([vocab, user]) => {
      JMT.fillOptions($("bc-topic"), vocab.warning_topics);
      JMT.fillOptions($("aud-category"), vocab.categories);
      if (user.role === "officer") {
        // Officers address their own community only (the server enforces it).
        $("aud-communities").value = user.community || "";
        $("aud-communities").readOnly = true;
        for (const radio of document.querySelectorAll('input[name="aud-kind"]')) {
          radio.disabled = radio.value !== "communities";
        }
        document.querySelector('input[name="aud-kind"][value="communities"]').checked = true;
      }
      showKind();
    })
    .catch((e) => e.status !== 401 && showError($("compose-error"), "词表加载失败：" + e.message));
  setInterval(load, 15000);
  load();
})();
