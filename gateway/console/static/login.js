/* 登录: username/password → POST /api/auth/token (OAuth2 password form) → sessionStorage. */
"use strict";

(() => {
  const { $, showError } = JMT;
  const form = $("login-form");
  const submit = $("login-submit");
  const error = $("login-error");

  /** Only console paths: `next` must not send the officer to another site. */
  function nextPage() {
    const next = new URLSearchParams(location.search).get("next") || "";
    return /^\/console(\/|$|\?)/.test(next) && !next.startsWith("/console/login")
      ? next
      : "/console";
  }

  /** Trainers work in the NLU inbox, not the case queue (which they may not see). */
  async function landingPage(token) {
    const next = nextPage();
    if (next !== "/console") return next;
    try {
      const me = await fetch("/api/me", { headers: { Authorization: `Bearer ${token}` } });
      if (me.ok && (await me.json()).role === "trainer") return "/console/nlu";
    } catch (e) {
      /* fall back to the queue */
    }
    return next;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, "");
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      showError(error, "请输入用户名和密码");
      return;
    }
    submit.disabled = true;
    submit.textContent = "正在登录…";
    try {
      const response = await fetch("/api/auth/token", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ username, password, grant_type: "password" }),
        cache: "no-store",
      });
      let data = {};
      try {
        data = await response.json();
      } catch (e) {
        /* not JSON */
      }
      if (!response.ok || !data.access_token) {
        const detail = typeof data.detail === "string" ? data.detail : "";
        showError(error, detail || `登录失败（HTTP ${response.status}），请稍后再试`);
        $("password").select();
        return;
      }
      JMT.setToken(data.access_token);
      location.replace(await landingPage(data.access_token));
    } catch (e) {
      showError(error, "网络连接失败，请检查网络后重试");
    } finally {
      submit.disabled = false;
      submit.textContent = "登录";
    }
  });
})();
