/* 登录: username/password → POST /api/auth/session (OAuth2 password form) → the browser
 * keeps the HttpOnly session cookie; this script stores nothing. */
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
  function landingPage(user) {
    const next = nextPage();
    if (next === "/console" && user && user.role === "trainer") return "/console/nlu";
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
      const response = await fetch("/api/auth/session", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ username, password, grant_type: "password" }),
        cache: "no-store",
        credentials: "same-origin",
      });
      let data = {};
      try {
        data = await response.json();
      } catch (e) {
        /* not JSON */
      }
      if (!response.ok || !data.csrf_token) {
        const detail = typeof data.detail === "string" ? data.detail : "";
        showError(error, detail || `登录失败（HTTP ${response.status}），请稍后再试`);
        $("password").select();
        return;
      }
      location.replace(landingPage(data.user));
    } catch (e) {
      showError(error, "网络连接失败，请检查网络后重试");
    } finally {
      submit.disabled = false;
      submit.textContent = "登录";
    }
  });
})();
