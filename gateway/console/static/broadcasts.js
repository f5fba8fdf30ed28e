/* 预警推送: compose a warning with its WeChat preview (GET /api/broadcasts/preview), send
 * it now or at a Beijing time (POST /api/broadcasts), and follow each broadcast's figures
 * (GET /api/broadcasts, …/{id}; pause / resume / cancel). Officers may only address their
 * own community: the server refuses anything else (403) and this page says why.
 * Drafts (草稿): 存为草稿 keeps a composed warning unsent ("draft": true); 编辑草稿 loads it
 * back into the form, where 存为草稿 saves it again (PUT) and 发布 sends it now or at the
 * time given (PUT, then POST …/send). */
"use strict";

(() => {
  const { $, h, clear, showError, api } = JMT;
  if (!JMT.initChrome()) return;

  const PAGE = 20;
  let offset = 0;
  let selected = null;
  let editing = null; // the id of the draft loaded into the form, if any

  // Built here (the page markup is the template's): 存为草稿 beside 发布, the note shown
  // while a draft is being edited, and 编辑草稿 beside the detail's buttons.
  const saveDraft = h("button", { type: "button", id: "bc-save-draft" }, "存为草稿");
  $("bc-send").after(saveDraft);
  const stopEditing = h("button", { type: "button", id: "bc-stop-editing" }, "放弃修改");
  const editingText = h("span", { id: "bc-editing-text" });
  const editingNote = h("p", { id: "bc-editing", className: "muted", hidden: true },
    editingText, " ", stopEditing);
  $("compose").prepend(editingNote);
  const editDraft = h("button", { type: "button", id: "bc-edit", hidden: true }, "编辑草稿");
  $("bc-cancel").before(editDraft);

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

  function composed() {
    const body = {
      topic: $("bc-topic").value,
      title: $("bc-title").value.trim(),
      text: $("bc-text").value.trim(),
      audience: audience(),
    };
    const at = beijingIso($("bc-send-at").value);
    if (at) body.send_at = at;
    return body;
  }

  function resetForm() {
    editing = null;
    editingNote.hidden = true;
    $("compose").reset();
    $("preview").hidden = true;
    showKind();
  }

  async function submit(asDraft) {
    if (!$("compose").reportValidity()) return;
    const body = composed();
    try {
      let made;
      if (editing !== null) {
        made = await api(`/api/broadcasts/${encodeURIComponent(editing)}`, { method: "PUT", body });
        if (!asDraft) {
          made = await api(`/api/broadcasts/${encodeURIComponent(editing)}/send`, {
            method: "POST", body: body.send_at ? { send_at: body.send_at } : {},
          });
        }
      } else {
        made = await api("/api/broadcasts", { method: "POST", body: { ...body, draft: asDraft } });
      }
      showError($("compose-error"), "");
      JMT.toast(asDraft ? `草稿 #${made.id} 已保存`
        : `预警 #${made.id} 已${body.send_at ? "定时" : "提交发送"}`);
      resetForm();
      offset = 0;
      selected = made.id;
      await load();
    } catch (e) {
      if (e.status !== 401) showError($("compose-error"), (asDraft ? "保存失败：" : "发布失败：") + e.message);
    }
  }

  async function send(event) {
    event.preventDefault();
    await submit(false);
  }

  /** An ISO time as the `datetime-local` value in Beijing time ("" when past). */
  function beijingLocal(iso) {
    const at = JMT.parseTime(iso);
    if (!at || at.getTime() <= Date.now()) return "";
    return new Date(at.getTime() + 8 * 3600 * 1000).toISOString().slice(0, 16);
  }

  async function edit(id) {
    let b;
    try {
      b = await api(`/api/broadcasts/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 401) showError($("list-error"), "草稿加载失败：" + e.message);
      return;
    }
    if (b.status !== "draft") return;
    const a = b.audience;
    const kind = a.district ? "district" : a.reported ? "reported"
      : a.streets.length ? "streets" : a.openids.length ? "openids" : "communities";
    const radio = document.querySelector(`input[name="aud-kind"][value="${kind}"]`);
    if (radio.disabled) return; // an officer cannot edit beyond her community
    $("bc-topic").value = b.topic;
    $("bc-title").value = b.title;
    $("bc-text").value = b.text;
    radio.checked = true;
    $("aud-streets").value = a.streets.join("，");
    if (!$("aud-communities").readOnly) $("aud-communities").value = a.communities.join("，");
    $("aud-openids").value = a.openids.join("\n");
    if (a.reported) {
      $("aud-category").value = a.reported.category;
      $("aud-days").value = a.reported.days;
    }
    $("bc-send-at").value = beijingLocal(b.send_at);
    showKind();
    editing = b.id;
    editingText.textContent = `正在编辑草稿 #${b.id}：存为草稿保存修改，发布即发送。`;
    editingNote.hidden = false;
    $("bc-title").focus();
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
    $("bc-cancel").hidden = !["draft", "scheduled", "sending", "paused"].includes(b.status);
    $("bc-cancel").textContent = b.status === "draft" ? "删除草稿" : "取消发送";
    editDraft.hidden = b.status !== "draft";
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
  $("bc-cancel").addEventListener("click", async () => {
    const discarded = selected;
    await act("cancel");
    if (editing === discarded) resetForm();
  });
  saveDraft.addEventListener("click", () => submit(true));
  stopEditing.addEventListener("click", resetForm);
  editDraft.addEventListener("click", () => edit(selected));

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
