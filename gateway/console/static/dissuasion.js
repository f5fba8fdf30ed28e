/* 精准劝阻: GET /api/dissuasion/tasks (scoped by the server), one task's detail with the
 * number to call, its contact attempts and the outcome (POST …/attempts, …/outcome).
 * 不接电话不放过、不见本人不放过: 未联系上 is refused by the server without a visit.
 * The list comes a page at a time (limit/offset; the total in X-Total-Count), with
 * 上一页/下一页 under the table. */
"use strict";

(() => {
  const { $, h, clear, showError, api } = JMT;
  if (!JMT.initChrome()) return;

  let selected = null; // the task id whose detail is open
  let fetchedAt = Date.now();
  const PAGE_SIZE = 50; // the server's default page
  let offset = 0; // the first task of the page shown

  const totalOf = (response) => Number(response.headers.get("X-Total-Count") || 0);

  // 上一页 · 第 n / m 页 · 下一页, under the table (built here: the markup is the template's).
  const prev = h("button", { type: "button", id: "tasks-prev" }, "上一页");
  const next = h("button", { type: "button", id: "tasks-next" }, "下一页");
  const pageInfo = h("span", { id: "tasks-page", className: "muted" });
  const pager = h("div", { id: "tasks-pager", className: "pager", hidden: true }, prev, pageInfo, next);
  $("tasks-empty").after(pager);
  prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE_SIZE); load(); });
  next.addEventListener("click", () => { offset += PAGE_SIZE; load(); });

  function showPager(total, shown) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const current = Math.floor(offset / PAGE_SIZE) + 1;
    pager.hidden = total === 0;
    pageInfo.textContent = total
      ? `第 ${current} / ${pages} 页 · 第 ${offset + 1}–${offset + shown} 件，共 ${total} 件`
      : "";
    prev.disabled = offset === 0;
    next.disabled = offset + shown >= total;
  }

  const riskLabel = (code) => JMT.label("risk_levels", code);
  const outcomeLabel = (code) => JMT.label("dissuasion_outcomes", code);

  function countdown(task) {
    if (task.status === "closed") return [outcomeLabel(task.outcome) || "已办结", "ok"];
    if (typeof task.seconds_left !== "number") return ["—", ""];
    const left = task.seconds_left - (Date.now() - fetchedAt) / 1000;
    if (left <= 0) return ["已超时 " + JMT.fmtDuration(-left), "overdue"];
    return [JMT.fmtDuration(left), left < 600 ? "soon" : ""];
  }

  function row(task) {
    const [left, cls] = countdown(task);
    const where = [task.street, task.community].filter(Boolean).join(" ") || "未定位";
    return h(
      "tr",
      {
        className: (task.overdue && task.status === "open" ? "overdue-row " : "") +
          (task.id === selected ? "selected" : ""),
        dataset: { taskId: task.id },
      },
      h("td", { className: "nowrap" }, `#${task.id}`),
      h("td", { className: "nowrap" },
        h("span", { className: "tag " + (task.risk_level === "high" ? "red" : "") },
          riskLabel(task.risk_level))),
      h("td", {}, task.risk_type,
        task.risk_type_original ? h("div", { className: "muted" }, task.risk_type_original) : null),
      h("td", { className: "nowrap" }, task.phone_masked, task.name ? h("div", { className: "muted" }, task.name) : null),
      h("td", {}, where),
      h("td", { className: "nowrap" }, JMT.officerName(task.assignee) || task.desk || "—"),
      h("td", { className: "nowrap " + cls, dataset: { role: "countdown" } }, left),
      h("td", { className: "nowrap" }, JMT.fmtTime(task.warned_at), h("div", { className: "muted" }, task.source))
    );
  }

  async function load() {
    const status = $("task-status").value;
    const query = (filter, limit, from) =>
      "/api/dissuasion/tasks?" + new URLSearchParams({ status: filter || "all", limit, offset: from });
    try {
      const [page, openPage] = await Promise.all([
        api(query(status, PAGE_SIZE, offset), { raw: true }),
        api(query("open", 1, 0), { raw: true }), // only its X-Total-Count: 待劝阻 in all
        JMT.vocabulary(),
      ]);
      const tasks = await page.json();
      const total = totalOf(page);
      if (tasks.length === 0 && offset > 0 && total > 0) {
        // the last page emptied (tasks closed or filtered away): show the last one left
        offset = Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE;
        return load();
      }
      fetchedAt = Date.now();
      showError($("tasks-error"), "");
      const body = clear($("tasks-body"));
      for (const task of tasks) body.append(row(task));
      $("tasks-empty").hidden = tasks.length > 0;
      showPager(total, tasks.length);
      const overdue = tasks.filter((t) => t.status === "open" && t.overdue).length;
      $("task-stats").textContent =
        `共 ${total} 件 · ${JMT.label("dissuasion_statuses", "open")} ${totalOf(openPage)}` + (overdue ? ` · 本页超时 ${overdue}` : "");
      if (selected !== null) await show(selected);
    } catch (e) {
      if (e.status !== 401) showError($("tasks-error"), "劝阻任务加载失败：" + e.message);
    }
  }

  function attemptLine(a) {
    return h("li", { dataset: { attemptId: a.id } },
      h("span", { className: "nowrap" }, JMT.fmtTime(a.at)), " ",
      h("strong", {}, JMT.label("contact_channels", a.channel)), " ",
      h("span", { className: a.reached ? "ok" : "fail" }, a.reached ? "已联系上" : "未能联系上"),
      a.note ? " — " + a.note : "",
      a.officer ? h("span", { className: "muted" }, "（" + JMT.officerName(a.officer) + "）") : null);
  }

  async function show(taskId) {
    selected = taskId;
    let task;
    try {
      task = await api("/api/dissuasion/tasks/" + encodeURIComponent(taskId));
    } catch (e) {
      if (e.status !== 401) showError($("task-error"), "任务加载失败：" + e.message);
      return;
    }
    $("task-panel").hidden = false;
    showError($("task-error"), "");
    $("task-title").textContent =
      `劝阻任务 #${task.id} · ${riskLabel(task.risk_level)} · ${task.risk_type}`;
    $("task-phone").textContent = task.phone;
    $("task-phone").href = "tel:" + task.phone.replace(/[^0-9+]/g, "");
    $("task-name").textContent = task.name || "—";
    $("task-address").textContent = task.address || "—";
    $("task-deadline").textContent = JMT.fmtTime(task.deadline_at);
    $("task-outcome").textContent = task.status === "closed"
      ? outcomeLabel(task.outcome) + (task.amount_protected ? `（保护金额 ${JMT.fmtYuan(task.amount_protected)}）` : "")
      : JMT.label("dissuasion_statuses", "open");
    const list = clear($("task-attempts"));
    for (const a of task.attempts) list.append(attemptLine(a));
    $("attempts-empty").hidden = task.attempts.length > 0;
    const open = task.status === "open";
    $("attempt-form").hidden = !open;
    $("outcome-form").hidden = !open;
    for (const tr of document.querySelectorAll("#tasks-body tr")) {
      tr.classList.toggle("selected", Number(tr.dataset.taskId) === task.id);
    }
  }

  $("tasks-body").addEventListener("click", (event) => {
    const tr = event.target.closest("tr[data-task-id]");
    if (tr) show(Number(tr.dataset.taskId));
  });

  $("attempt-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`/api/dissuasion/tasks/${encodeURIComponent(selected)}/attempts`, {
        method: "POST",
        body: {
          channel: $("attempt-channel").value,
          reached: $("attempt-reached").checked,
          note: $("attempt-note").value,
        },
      });
      $("attempt-note").value = "";
      $("attempt-reached").checked = false;
      JMT.toast("已记录联系情况");
      await load();
    } catch (e) {
      if (e.status !== 401) showError($("task-error"), "记录失败：" + e.message);
    }
  });

  $("outcome-choice").addEventListener("change", () => {
    $("outcome-amount-label").hidden = $("outcome-choice").value !== "dissuaded";
  });

  $("outcome-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const outcome = $("outcome-choice").value;
    const body = { outcome };
    const amount = $("outcome-amount").value.trim();
    if (outcome === "dissuaded" && amount) body.amount_protected = amount;
    try {
      await api(`/api/dissuasion/tasks/${encodeURIComponent(selected)}/outcome`, {
        method: "POST",
        body,
      });
      JMT.toast("任务已办结：" + outcomeLabel(outcome));
      await load();
    } catch (e) {
      if (e.status !== 401) showError($("task-error"), "办结失败：" + e.message);
    }
  });

  JMT.vocabulary()
    .then((vocab) => {
      JMT.fillOptions($("task-status"), vocab.dissuasion_statuses);
      JMT.fillOptions($("attempt-channel"), vocab.contact_channels);
      $("task-phone-label").textContent = JMT.label("entities", "phone");
      $("task-address-label").textContent = JMT.label("entities", "address");
      JMT.fillOptions($("outcome-choice"), vocab.dissuasion_outcomes);
    })
    .catch((e) => e.status !== 401 && showError($("tasks-error"), "词表加载失败：" + e.message));
  $("task-status").addEventListener("change", () => { offset = 0; load(); });
  setInterval(load, 30000);
  load();
})();
