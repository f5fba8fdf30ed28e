/* 待办队列: GET /api/cases — one page at a time (most urgent first, as the API orders
 * them), filtered and searched on the server, live countdowns and unread badges,
 * re-fetched on every `case` or `message` event; a case that was not there before flashes.
 *
 * Built here with h() and attached to the page's existing elements (the markup is not
 * ours): the filter bar (我的 / 待认领 / 紧急 / 分类 / 社区, labels from /api/vocabulary), the
 * search box, the pager (上一页 / 下一页 with the total from X-Total-Count), the alert for a
 * new urgent case (a banner, a WebAudio tone and a browser notification, with a mute
 * remembered in localStorage) and the keyboard shortcuts (desktop). On narrow screens the
 * same rows are laid out as cards by console.css (the queue12 section).
 *
 * Test hooks: <body data-urgent-alerts="N" data-last-urgent-case="ID"> count the alerts
 * (audio cannot be asserted); <body data-alert-sound="played|muted|unavailable">.
 */
"use strict";

(() => {
  const { $, h, clear, showError, api } = JMT;
  if (!JMT.initChrome()) return;

  const PAGE_SIZE = 50;
  const MUTE_KEY = "jmtQueueMuted";
  const FLASH_MS = 4000; // as long as the `flash` animation in console.css
  const NARROW = window.matchMedia("(max-width: 600px)");

  const body = $("queue-body");
  const table = $("queue");
  // What the officer asked for; kept in the address bar so 返回待办队列 / reload keep it.
  const query = new URLSearchParams(location.search);
  const filters = {
    status: query.get("status") === "closed" ? "closed" : "active",
    mine: query.get("mine") === "1",
    unclaimed: query.get("unclaimed") === "1",
    urgent: query.get("urgent") === "1",
    category: query.get("category") || "",
    community: query.get("community") || "",
    q: query.get("q") || "",
  };
  let offset = Math.max(0, parseInt(query.get("offset") || "0", 10) || 0);
  let total = 0;

  let known = null; // ids shown before the latest fetch; null before the first one
  const arrived = new Map(); // id → when it first appeared (re-renders keep it flashing)
  let rows = []; // [{item, tr, cell, deadline}] for the countdown ticker and the keyboard
  let selected = -1; // the row j/k moved to
  let loading = false;
  let again = false;

  // ------------------------------------------------------------------ cells

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

  function unreadBadge(item) {
    const n = Number(item.unread) || 0;
    if (!n) return null;
    return h(
      "span",
      { className: "unread-badge", title: `群众有 ${n} 条新消息未读`, dataset: { unread: n } },
      n > 99 ? "99+" : String(n)
    );
  }

  function tick() {
    for (const row of rows) {
      const [text, cls] = JMT.countdownText(row.item, row.deadline);
      row.cell.textContent = text;
      row.cell.className = "nowrap countdown " + cls;
      row.tr.classList.toggle("overdue-row", cls === "overdue" && !row.item.first_reply_at);
    }
  }

  // ------------------------------------------------------------------ the list

  function render(items, fetchedAt) {
    clear(body);
    rows = [];
    const fresh = new Set();
    for (const item of items) {
      const href = "/console/cases/" + encodeURIComponent(item.id);
      const cell = h("td", { className: "nowrap countdown" });
      const tr = h(
        "tr",
        {
          className: "clickable" + (item.unread ? " has-unread" : ""),
          dataset: { caseId: item.id, priority: item.priority },
        },
        h("td", {}, JMT.priorityBadge(item.priority)),
        h("td", { className: "nowrap" }, item.category_label || item.category || "—"),
        h(
          "td",
          { className: "summary-cell" },
          h("a", { href }, item.summary || "（无摘要）"),
          unreadBadge(item),
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
      rows.push({ item, tr, cell, href, deadline: JMT.deadline(item, fetchedAt) });
      body.appendChild(tr);
    }
    known = fresh;
    tick();
    select(Math.min(selected, rows.length - 1), false);
    const filtered = isFiltered();
    $("queue-empty").hidden = items.length > 0;
    $("queue-empty").textContent = filtered
      ? "没有符合条件的案件。"
      : filters.status === "closed" ? "暂无已办结案件。" : "暂无待办案件。";
    const urgent = items.filter((i) => i.priority === "urgent").length;
    const overdue = items.filter((i) => i.overdue).length;
    const open = items.filter((i) => i.status === "open").length;
    const unread = items.filter((i) => i.unread).length;
    $("queue-stats").textContent =
      filters.status === "closed"
        ? `共 ${total} 件`
        : `共 ${total} 件 · ${JMT.label("case_statuses", "open")} ${open} · ` +
          `${JMT.label("priorities", "urgent")} ${urgent} · 超时 ${overdue}` +
          (unread ? ` · 有新消息 ${unread}` : "");
    document.title =
      (open && filters.status !== "closed" ? `(${open}) ` : "") + "待办队列 · 镇海警民通";
    renderPager();
  }

  function isFiltered() {
    return filters.mine || filters.unclaimed || filters.urgent || Boolean(
      filters.category || filters.community || filters.q.trim()
    );
  }

  function params() {
    const p = new URLSearchParams({ status: filters.status });
    for (const key of ["mine", "unclaimed", "urgent"]) if (filters[key]) p.set(key, "true");
    for (const key of ["category", "community"]) if (filters[key]) p.set(key, filters[key]);
    if (filters.q.trim()) p.set("q", filters.q.trim());
    p.set("limit", String(PAGE_SIZE));
    p.set("offset", String(offset));
    return p;
  }

  /** The address bar mirrors the filters (defaults left out: plain /console stays plain). */
  function remember() {
    const p = new URLSearchParams();
    if (filters.status !== "active") p.set("status", filters.status);
    for (const key of ["mine", "unclaimed", "urgent"]) if (filters[key]) p.set(key, "1");
    for (const key of ["category", "community"]) if (filters[key]) p.set(key, filters[key]);
    if (filters.q.trim()) p.set("q", filters.q.trim());
    if (offset) p.set("offset", String(offset));
    const search = p.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }

  async function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      const fetchedAt = Date.now();
      const [response] = await Promise.all([
        api("/api/cases?" + params().toString(), { raw: true }),
        JMT.vocabulary(), // the badges' labels
      ]);
      const items = await response.json();
      total = parseInt(response.headers.get("X-Total-Count") || "", 10);
      if (isNaN(total)) total = items.length;
      if (!items.length && offset > 0 && total > 0) {
        // The page emptied under us (cases closed meanwhile): show the last one there is.
        offset = Math.max(0, Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE);
        again = true;
        return;
      }
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

  /** Filters changed: back to the first page, forget what was flashing. */
  function reload() {
    offset = 0;
    known = null;
    arrived.clear();
    selected = -1;
    remember();
    syncControls();
    load();
  }

  // ------------------------------------------------------------------ filter bar

  const toggles = {}; // mine | unclaimed | urgent → its button
  const categorySelect = h("select", { id: "queue-category", "aria-label": "category" });
  const communitySelect = h("select", { id: "queue-community", "aria-label": "community" });
  const search = h("input", {
    id: "queue-search",
    type: "search",
    placeholder: "搜索摘要或群众原话（按 / 键）",
    maxlength: "100",
    autocomplete: "off",
  });
  const muteButton = h("button", { type: "button", id: "queue-mute", className: "link" });
  const notifyButton = h(
    "button",
    { type: "button", id: "queue-notify", className: "link", hidden: true },
    "开启桌面通知"
  );
  const helpButton = h(
    "button",
    { type: "button", id: "queue-help-open", className: "link", title: "键盘快捷键（?）" },
    "快捷键"
  );
  const filterBar = h("div", { className: "queue-filters", id: "queue-filters" });

  function buildFilterBar(vocab) {
    const labels = Object.fromEntries((vocab.queue_filters || []).map((t) => [t.value, t.label]));
    for (const key of ["mine", "unclaimed", "urgent"]) {
      toggles[key] = h(
        "button",
        {
          type: "button",
          className: "chip",
          dataset: { filter: key },
          "aria-pressed": "false",
          onclick: () => toggle(key),
        },
        labels[key] || key
      );
    }
    categorySelect.setAttribute("aria-label", labels.category || "category");
    categorySelect.append(h("option", { value: "" }, labels.category || "—"));
    JMT.fillOptions(categorySelect, vocab.categories || []);
    communitySelect.setAttribute("aria-label", labels.community || "community");
    communitySelect.append(h("option", { value: "" }, labels.community || "—"));
    const streets = new Map();
    for (const term of vocab.communities || []) {
      if (!streets.has(term.street)) streets.set(term.street, []);
      streets.get(term.street).push(term);
    }
    for (const [street, terms] of streets) {
      communitySelect.append(JMT.fillOptions(h("optgroup", { label: street }), terms));
    }
    const listed = [...communitySelect.options].some((o) => o.value === filters.community);
    if (filters.community && !listed) {
      communitySelect.append(h("option", { value: filters.community }, filters.community));
    }
    clear(filterBar).append(
      h("div", { className: "chips" }, toggles.mine, toggles.unclaimed, toggles.urgent),
      categorySelect,
      communitySelect,
      h("form", { className: "queue-search", role: "search", onsubmit: onSearch }, search),
      h("span", { className: "queue-tools" }, muteButton, notifyButton, helpButton)
    );
    syncControls();
  }

  function syncControls() {
    for (const [key, button] of Object.entries(toggles)) {
      button.classList.toggle("active", filters[key]);
      button.setAttribute("aria-pressed", String(filters[key]));
    }
    categorySelect.value = filters.category;
    communitySelect.value = filters.community;
    if (document.activeElement !== search) search.value = filters.q;
    for (const tab of document.querySelectorAll(".tab[data-status]")) {
      tab.classList.toggle("active", tab.dataset.status === filters.status);
    }
    muteButton.textContent = muted() ? "紧急提醒：已静音" : "紧急提醒：开";
    muteButton.setAttribute("aria-pressed", String(muted()));
    notifyButton.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  function toggle(key) {
    filters[key] = !filters[key];
    reload();
  }

  function onSearch(event) {
    event.preventDefault();
    filters.q = search.value;
    reload();
  }

  const searchAsYouType = JMT.debounce(() => {
    if (filters.q === search.value) return;
    filters.q = search.value;
    reload();
  }, 400);
  search.addEventListener("input", searchAsYouType);
  categorySelect.addEventListener("change", () => {
    filters.category = categorySelect.value;
    reload();
  });
  communitySelect.addEventListener("change", () => {
    filters.community = communitySelect.value;
    reload();
  });

  // ------------------------------------------------------------------ pager

  const prev = h("button", { type: "button", id: "queue-prev" }, "上一页");
  const next = h("button", { type: "button", id: "queue-next" }, "下一页");
  const pageInfo = h("span", { id: "queue-page", className: "muted" });
  const pager = h("div", { className: "pager", id: "queue-pager" }, prev, pageInfo, next);
  prev.addEventListener("click", () => turn(-1));
  next.addEventListener("click", () => turn(1));

  function turn(direction) {
    const target = offset + direction * PAGE_SIZE;
    if (target < 0 || target >= total) return;
    offset = target;
    known = null;
    selected = -1;
    remember();
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

  // ------------------------------------------------------------------ a new urgent case

  // Urgent cases the officer has already been told about (or that were there on arrival).
  const urgentSeen = new Set();
  let audio = null;

  function muted() {
    try {
      return localStorage.getItem(MUTE_KEY) === "1";
    } catch (e) {
      return false;
    }
  }

  function setMuted(value) {
    try {
      if (value) localStorage.setItem(MUTE_KEY, "1");
      else localStorage.removeItem(MUTE_KEY);
    } catch (e) {
      /* private mode: the toggle holds for this page only */
    }
    syncControls();
  }

  /** Browsers let a page make sound only after a gesture: the context starts on the first. */
  function unlockAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) audio = new Context();
    if (audio.state === "suspended") audio.resume().catch(() => {});
  }

  /** Two short tones (WebAudio: no file, no CDN). */
  function chime() {
    if (!audio) unlockAudio();
    if (!audio) return "unavailable";
    const start = audio.currentTime + 0.02;
    [880, 660, 880].forEach((frequency, i) => {
      const oscillator = audio.createOscillator();
      const gain = audio.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = frequency;
      const at = start + i * 0.22;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.3, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.2);
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start(at);
      oscillator.stop(at + 0.21);
    });
    return "played";
  }

  function desktopNotice(caseId) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const notice = new Notification("新的紧急案件 #" + caseId, {
        body: "请尽快认领并答复群众。",
        tag: "jmt-urgent-" + caseId,
        requireInteraction: true,
      });
      notice.onclick = () => {
        window.focus();
        location.href = "/console/cases/" + encodeURIComponent(caseId);
      };
    } catch (e) {
      /* some browsers only notify from a service worker: the banner and tone remain */
    }
  }

  const banner = h("div", {
    id: "queue-alert",
    className: "queue-alert",
    role: "alert",
    hidden: true,
  });

  function alertUrgent(caseId) {
    const count = (parseInt(document.body.dataset.urgentAlerts || "0", 10) || 0) + 1;
    document.body.dataset.urgentAlerts = String(count);
    document.body.dataset.lastUrgentCase = String(caseId);
    clear(banner).append(
      h("strong", {}, JMT.label("priorities", "urgent")),
      " 新案件 ",
      h("a", { href: "/console/cases/" + encodeURIComponent(caseId) }, "#" + caseId),
      "，请尽快认领。",
      h(
        "button",
        { type: "button", className: "link", onclick: () => (banner.hidden = true) },
        "知道了"
      )
    );
    banner.hidden = false;
    if (muted()) {
      document.body.dataset.alertSound = "muted";
      return;
    }
    document.body.dataset.alertSound = chime();
    desktopNotice(caseId);
  }

  let seeded = null; // the urgent cases already there when the page opened
  function seedUrgent() {
    if (!seeded) {
      seeded = api("/api/cases?status=active&urgent=true&limit=200")
        .then((items) => items.forEach((item) => urgentSeen.add(item.id)))
        .catch(() => (seeded = null));
    }
    return seeded;
  }

  async function onCase(change) {
    refresh();
    if (!change || change.priority !== "urgent" || change.status !== "open") return;
    await seedUrgent();
    if (urgentSeen.has(change.id)) return;
    urgentSeen.add(change.id);
    alertUrgent(change.id);
  }

  muteButton.addEventListener("click", () => {
    unlockAudio();
    setMuted(!muted());
  });
  notifyButton.addEventListener("click", () => {
    unlockAudio();
    if ("Notification" in window) Notification.requestPermission().then(syncControls, syncControls);
  });
  for (const gesture of ["pointerdown", "keydown"]) {
    window.addEventListener(gesture, unlockAudio, { once: true, capture: true });
  }

  // ------------------------------------------------------------------ keyboard (desktop)

  function select(index, scroll = true) {
    rows.forEach((row) => row.tr.classList.remove("kbd-selected"));
    selected = rows.length ? Math.max(-1, Math.min(index, rows.length - 1)) : -1;
    if (selected < 0) return;
    const tr = rows[selected].tr;
    tr.classList.add("kbd-selected");
    if (scroll) tr.scrollIntoView({ block: "nearest" });
  }

  const helpItems = [
    ["j", "下一条"],
    ["k", "上一条"],
    ["Enter", "打开选中的案件"],
    ["/", "搜索"],
    ["u", "只看待认领（再按取消）"],
    ["?", "显示 / 关闭本说明"],
    ["Esc", "关闭本说明"],
  ];
  const help = h(
    "div",
    {
      id: "queue-help",
      className: "queue-help",
      role: "dialog",
      "aria-label": "键盘快捷键",
      hidden: true,
    },
    h(
      "div",
      { className: "card" },
      h("h2", {}, "键盘快捷键"),
      h(
        "dl",
        {},
        helpItems.map(([key, text]) => [h("dt", {}, h("kbd", {}, key)), h("dd", {}, text)])
      ),
      h("button", { type: "button", onclick: () => (help.hidden = true) }, "关闭")
    )
  );
  helpButton.addEventListener("click", () => (help.hidden = !help.hidden));

  function typing(target) {
    return Boolean(
      target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))
    );
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      if (!help.hidden) help.hidden = true;
      else if (document.activeElement === search) search.blur();
      return;
    }
    if (typing(event.target) || NARROW.matches) return;
    if (event.key === "Enter" && event.target.closest && event.target.closest("a, button")) return;
    const actions = {
      j: () => select(selected + 1),
      k: () => select(selected < 0 ? 0 : selected - 1),
      Enter: () => selected >= 0 && (location.href = rows[selected].href),
      "/": () => search.focus(),
      u: () => toggle("unclaimed"),
      "?": () => (help.hidden = !help.hidden),
    };
    const action = actions[event.key];
    if (!action) return;
    if (event.key === "Enter" && selected < 0) return; // nothing chosen: leave Enter alone
    event.preventDefault();
    action();
  });

  // ------------------------------------------------------------------ start

  const head = document.querySelector(".page-head");
  (head || table).insertAdjacentElement(head ? "afterend" : "beforebegin", filterBar);
  filterBar.insertAdjacentElement("afterend", banner);
  ($("queue-empty") || table).insertAdjacentElement("afterend", pager);
  document.body.append(help);
  document.body.dataset.urgentAlerts = "0";
  syncControls();

  for (const tab of document.querySelectorAll(".tab[data-status]")) {
    tab.addEventListener("click", () => {
      filters.status = tab.dataset.status === "closed" ? "closed" : "active";
      reload();
    });
  }

  JMT.vocabulary()
    .then(buildFilterBar)
    .catch((e) => e.status !== 401 && showError($("queue-error"), "词表加载失败：" + e.message));
  const refresh = JMT.debounce(load, 250);
  JMT.live({ case: onCase, message: refresh }, refresh);
  seedUrgent();
  setInterval(tick, 1000);
  setInterval(load, 60000); // a safety net should an event be missed
  load();
})();
