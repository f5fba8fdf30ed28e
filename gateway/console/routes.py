"""Pages of the officer console and their static files.

Every page is a small HTML shell: the data comes from the JSON API (docs/console-api.md),
fetched by the page's script with the bearer token from `sessionStorage`. Selects of codes
(categories, ticket kinds and states, desks, NLU reasons) are filled from
`GET /api/vocabulary`, so no label is copied into these pages. Nothing here
reads the database or needs a login — an anonymous visitor gets empty shells whose
scripts send them to the login page.

Static files come from `gateway/console/static/`, served from a fixed allow-list (no
directory traversal, no build step, nothing from a CDN). Pages forbid inline scripts and
foreign origins through a Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
from html import escape
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

router = APIRouter(prefix="/console", include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "queue.js": "text/javascript; charset=utf-8",
    "case.js": "text/javascript; charset=utf-8",
    "tickets.js": "text/javascript; charset=utf-8",
    "metrics.js": "text/javascript; charset=utf-8",
    "nlu.js": "text/javascript; charset=utf-8",
    "dissuasion.js": "text/javascript; charset=utf-8",
    "broadcasts.js": "text/javascript; charset=utf-8",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the event stream URL carries the token
    "X-Frame-Options": "DENY",
}

NAV = (
    ("queue", "/console", "待办队列"),
    ("tickets", "/console/tickets", "工单"),
    ("dissuasion", "/console/dissuasion", "精准劝阻"),
    ("broadcasts", "/console/broadcasts", "预警推送"),
    ("metrics", "/console/metrics", "数据统计"),
    ("nlu", "/console/nlu", "语料标注"),
)


def _header(active: str) -> str:
    links = "".join(
        f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
        for key, href, label in NAV
    )
    return f"""<header class="topbar">
  <a class="brand" href="/console"><span class="badge-shield">警</span>镇海警民通 · 民警工作台</a>
  <nav>{links}</nav>
  <div class="who">
    <span id="live" class="live" hidden>实时</span>
    <span id="me"></span>
    <button id="logout" type="button" class="link">退出</button>
  </div>
</header>"""


def _page(title: str, script: str, body: str, *, active: str | None = None) -> HTMLResponse:
    header = _header(active) if active is not None else ""
    html = f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(title)} · 镇海警民通</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
<script src="/console/static/{script}" defer></script>
</head>
<body data-page="{active or "login"}">
{header}
<main>
{body}
</main>
<div id="toast" role="status" aria-live="polite" hidden></div>
</body>
</html>
"""
    return HTMLResponse(html, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


# ---------------------------------------------------------------------- pages

LOGIN = """<section class="login-card">
  <div class="login-title"><span class="badge-shield big">警</span>
    <div><h1>镇海警民通</h1><p>民警工作台 · 请登录</p></div></div>
  <form id="login-form" autocomplete="on">
    <label>用户名<input id="username" name="username" autocomplete="username" required
      autofocus></label>
    <label>密码<input id="password" name="password" type="password"
      autocomplete="current-password" required></label>
    <p id="login-error" class="error" role="alert" hidden></p>
    <button id="login-submit" type="submit" class="primary wide">登录</button>
  </form>
  <p class="hint">本系统仅限公安民警工作使用，所有操作均记录在案。</p>
</section>"""

QUEUE = """<div class="page-head">
  <h1>待办队列</h1>
  <div class="tabs" role="tablist">
    <button type="button" class="tab active" data-status="active">进行中</button>
    <button type="button" class="tab" data-status="closed">已办结</button>
  </div>
  <span id="queue-stats" class="muted"></span>
</div>
<p id="queue-error" class="error" role="alert" hidden></p>
<table class="grid" id="queue">
  <thead><tr>
    <th class="col-priority">优先级</th><th class="col-category">类别</th><th>摘要</th>
    <th class="col-place">社区/部门</th><th class="col-time">剩余时间</th>
    <th class="col-officer">处理人</th><th class="col-notify">通知</th>
  </tr></thead>
  <tbody id="queue-body"></tbody>
</table>
<p id="queue-empty" class="empty" hidden>暂无待办案件。</p>"""

CASE = """<p class="crumbs"><a href="/console">← 返回待办队列</a></p>
<p id="case-error" class="error" role="alert" hidden></p>
<div id="case" hidden>
  <div class="case-head">
    <h1 id="case-title"></h1>
    <span id="case-priority" class="prio"></span>
    <span id="case-status" class="status"></span>
    <span id="case-countdown" class="countdown"></span>
  </div>
  <div class="case-layout">
    <div class="case-main">
      <section class="card">
        <h2>案件摘要</h2>
        <p id="case-summary" class="summary"></p>
        <dl id="case-meta" class="meta"></dl>
      </section>
      <section class="card">
        <h2>采集信息</h2>
        <dl id="case-details" class="details"></dl>
      </section>
      <section class="card">
        <h2>对话记录</h2>
        <div id="transcript" class="transcript"></div>
        <form id="reply-form" class="reply">
          <div class="row">
            <label for="canned" class="muted">常用语</label>
            <select id="canned"><option value="">— 选择常用回复 —</option></select>
          </div>
          <textarea id="reply-text" rows="3" maxlength="2000"
            placeholder="回复群众（将通过微信客服消息发送）"></textarea>
          <div class="row end">
            <span id="reply-hint" class="muted"></span>
            <button id="reply-send" type="submit" class="primary">发送回复</button>
          </div>
        </form>
      </section>
    </div>
    <aside class="case-side">
      <section class="card actions">
        <h2>处置</h2>
        <p id="action-error" class="error" role="alert" hidden></p>
        <p id="closed-note" class="muted" hidden>本案件已办结，会话已交还智能助手。</p>
        <button id="claim" type="button" class="primary wide">认领</button>
        <details id="transfer-box">
          <summary>转办</summary>
          <form id="transfer-form">
            <select id="transfer-target" required><option value="">— 选择部门或民警 —</option>
            </select>
            <button type="submit">确认转办</button>
          </form>
        </details>
        <details id="category-box">
          <summary>更正类别</summary>
          <form id="category-form">
            <select id="category-target" required>
              <option value="">— 正确的类别 —</option>
            </select>
            <button type="submit">确认更正</button>
          </form>
        </details>
        <details id="divert-box">
          <summary>转治理平台</summary>
          <form id="divert-form">
            <select id="divert-kind" required>
              <option value="">— 事项类型 —</option>
            </select>
            <textarea id="divert-note" rows="2" maxlength="1000"
              placeholder="给治理中心的说明"></textarea>
            <button type="submit">转治理平台</button>
          </form>
        </details>
        <details id="close-box">
          <summary>办结</summary>
          <form id="close-form">
            <textarea id="close-resolution" rows="3" maxlength="2000" required
              placeholder="处理结果（办结后将邀请群众评价）"></textarea>
            <button id="close-submit" type="submit" class="danger">确认办结</button>
          </form>
        </details>
      </section>
      <section class="card">
        <h2>私密备注 <small class="muted">仅民警可见</small></h2>
        <ul id="notes" class="notes"></ul>
        <form id="note-form">
          <textarea id="note-text" rows="2" maxlength="2000" placeholder="添加备注"></textarea>
          <button type="submit">保存备注</button>
        </form>
      </section>
      <section class="card">
        <h2>该群众历史案件</h2>
        <ul id="history" class="plain"></ul>
      </section>
      <section class="card">
        <h2>相关工单</h2>
        <ul id="case-tickets" class="plain"></ul>
      </section>
    </aside>
  </div>
</div>"""

TICKETS = """<div class="page-head">
  <h1>治理工单</h1>
  <label class="muted">状态
    <select id="ticket-status">
      <option value="">全部</option>
    </select>
  </label>
  <span id="ticket-stats" class="muted"></span>
</div>
<p id="tickets-error" class="error" role="alert" hidden></p>
<table class="grid" id="tickets">
  <thead><tr>
    <th>编号</th><th>类型</th><th>状态</th><th>摘要</th><th>街道/社区</th>
    <th>推送时间</th><th>办理期限</th><th>平台反馈</th><th>来源案件</th>
  </tr></thead>
  <tbody id="tickets-body"></tbody>
</table>
<p id="tickets-empty" class="empty" hidden>暂无工单。</p>"""

DISSUASION = """<div class="page-head">
  <h1>精准劝阻</h1>
  <label class="muted">状态
    <select id="task-status">
      <option value="">全部</option>
    </select>
  </label>
  <span id="task-stats" class="muted"></span>
</div>
<p class="muted">不接电话不放过、不见本人不放过：“未联系上”须先有上门记录；
  超时未办结的任务自动升级到反诈专班。</p>
<p id="tasks-error" class="error" role="alert" hidden></p>
<table class="grid" id="tasks">
  <thead><tr>
    <th>编号</th><th>风险</th><th>风险类型</th><th>手机号</th><th>街道/社区</th>
    <th>承办</th><th>剩余时间</th><th>预警时间/来源</th>
  </tr></thead>
  <tbody id="tasks-body"></tbody>
</table>
<p id="tasks-empty" class="empty" hidden>暂无劝阻任务。</p>
<section id="task-panel" class="card" hidden>
  <h2 id="task-title"></h2>
  <p id="task-error" class="error" role="alert" hidden></p>
  <dl class="facts">
    <dt id="task-phone-label"></dt><dd><a id="task-phone" href="#"></a></dd>
    <dt>姓名</dt><dd id="task-name"></dd>
    <dt id="task-address-label"></dt><dd id="task-address"></dd>
    <dt>办结期限</dt><dd id="task-deadline"></dd>
    <dt>结果</dt><dd id="task-outcome"></dd>
  </dl>
  <h3>联系记录</h3>
  <ul id="task-attempts" class="plain"></ul>
  <p id="attempts-empty" class="muted" hidden>尚无联系记录。</p>
  <form id="attempt-form">
    <label>方式 <select id="attempt-channel"></select></label>
    <label><input id="attempt-reached" type="checkbox"> 已联系上本人</label>
    <label>情况 <input id="attempt-note" size="30" maxlength="500"
      placeholder="如：已讲解刷单诈骗手法"></label>
    <button type="submit">记录联系</button>
  </form>
  <form id="outcome-form">
    <label>结果 <select id="outcome-choice"></select></label>
    <label id="outcome-amount-label">保护金额（元） <input id="outcome-amount" type="number"
      min="0" step="0.01" size="10" placeholder="可不填"></label>
    <button type="submit">办结任务</button>
  </form>
</section>"""

BROADCASTS = """<div class="page-head">
  <h1>预警推送</h1>
</div>
<div class="charts two">
<section class="card">
  <h2>发布预警</h2>
  <p id="compose-error" class="error" role="alert" hidden></p>
  <form id="compose" class="stack">
    <label>主题 <select id="bc-topic" required></select></label>
    <label>标题 <input id="bc-title" required maxlength="64" size="40"
      placeholder="如：警惕冒充客服退款诈骗"></label>
    <label>正文 <textarea id="bc-text" required maxlength="600" rows="5" cols="48"
      placeholder="简明写清：什么骗局、怎么识别、遇到怎么办（96110 / 110）"></textarea></label>
    <fieldset>
      <legend>发送对象</legend>
      <label><input type="radio" name="aud-kind" value="district" checked> 全区居民</label>
      <label><input type="radio" name="aud-kind" value="streets"> 按街道</label>
      <label><input type="radio" name="aud-kind" value="communities"> 按社区</label>
      <label><input type="radio" name="aud-kind" value="reported"> 近期报告过某类问题的居民</label>
      <label><input type="radio" name="aud-kind" value="openids"> 指定居民（openid）</label>
      <div data-aud="streets" hidden><input id="aud-streets" size="40"
        placeholder="街道名称，多个用逗号分隔"></div>
      <div data-aud="communities" hidden><input id="aud-communities" size="40"
        placeholder="社区名称，多个用逗号分隔"></div>
      <div data-aud="reported" hidden><select id="aud-category"></select>
        近 <input id="aud-days" type="number" min="1" max="365" value="30" size="4"> 天</div>
      <div data-aud="openids" hidden><textarea id="aud-openids" rows="3" cols="48"
        placeholder="每行一个 openid"></textarea></div>
    </fieldset>
    <label>定时发送（北京时间，留空即立即发送）
      <input id="bc-send-at" type="datetime-local"></label>
    <div class="actions">
      <button id="bc-preview" type="button">预览</button>
      <button id="bc-send" type="submit">发布</button>
    </div>
  </form>
</section>
<section class="card" id="preview" hidden>
  <h2>微信中的样子</h2>
  <h3>模板消息（48小时内未互动的居民）</h3>
  <pre id="preview-template" class="wechat-bubble"></pre>
  <h3>客服消息 / 群发（48小时内互动过的居民）</h3>
  <pre id="preview-text" class="wechat-bubble"></pre>
</section>
</div>
<section class="card">
  <h2>已发布的预警</h2>
  <p id="list-error" class="error" role="alert" hidden></p>
  <table class="grid" id="broadcasts">
    <thead><tr><th>编号</th><th>主题</th><th>标题</th><th>状态</th><th>发送时间</th><th>发布人</th>
    </tr></thead>
    <tbody id="bc-body"></tbody>
  </table>
  <p id="bc-empty" class="empty" hidden>暂无预警。</p>
  <div class="pager"><button id="bc-prev" type="button">上一页</button>
    <span id="bc-page" class="muted"></span>
    <button id="bc-next" type="button">下一页</button></div>
</section>
<section class="card" id="bc-detail" hidden>
  <h2 id="bc-detail-title"></h2>
  <p>状态：<span id="bc-detail-status"></span></p>
  <div id="bc-figures" class="tiles"></div>
  <p id="bc-reasons" class="muted"></p>
  <p id="bc-channels" class="muted"></p>
  <div class="actions">
    <button id="bc-pause" type="button" hidden>暂停</button>
    <button id="bc-resume" type="button" hidden>继续发送</button>
    <button id="bc-cancel" type="button" hidden>取消发送</button>
  </div>
</section>"""

METRICS = """<div class="page-head">
  <h1>数据统计</h1>
  <div class="tabs" role="tablist" id="days">
    <button type="button" class="tab" data-days="7">近7天</button>
    <button type="button" class="tab active" data-days="30">近30天</button>
    <button type="button" class="tab" data-days="90">近90天</button>
  </div>
  <span id="metrics-range" class="muted"></span>
  <button id="export" type="button" class="right">导出CSV</button>
</div>
<p id="metrics-error" class="error" role="alert" hidden></p>
<div id="tiles" class="tiles"></div>
<div class="charts">
  <section class="card"><h2>各类别案件量</h2><div id="chart-category" class="chart"></div>
  </section>
  <section class="card"><h2>每日案件量</h2><div id="chart-daily" class="chart"></div></section>
  <section class="card"><h2>各优先级答复及时率</h2>
    <div id="chart-priority" class="chart"></div></section>
</div>
<div class="charts two">
  <section class="card"><h2>民警统计</h2><div id="table-officers"></div></section>
  <section class="card"><h2>社区统计</h2><div id="table-communities"></div></section>
</div>
<div class="page-head"><h2>每周热点</h2><span id="hot-range" class="muted"></span></div>
<div class="charts">
  <section class="card"><h2 id="hot-fraud-title"></h2><div id="chart-hot-fraud" class="chart">
    </div></section>
  <section class="card"><h2>常见问题</h2><div id="chart-hot-topics" class="chart"></div></section>
  <section class="card"><h2>关键词</h2><div id="hot-keywords"></div></section>
</div>
<div class="charts two">
  <section class="card"><h2>上升最快（较上周翻倍）</h2><div id="table-risers"></div></section>
  <section class="card"><h2>各街道</h2><div id="table-hot-streets"></div></section>
</div>"""

NLU = """<div class="page-head">
  <h1>语料标注</h1>
  <label class="muted">原因
    <select id="nlu-reason">
      <option value="">全部</option>
    </select>
  </label>
  <label class="muted">意图 <input id="nlu-intent" size="14" placeholder="如 report_fraud"></label>
  <label class="muted">置信度 <input id="nlu-min" type="number" min="0" max="1" step="0.05"
    size="4"> – <input id="nlu-max" type="number" min="0" max="1" step="0.05" size="4"></label>
  <label class="muted">日期 <input id="nlu-since" type="date"> – <input id="nlu-until"
    type="date"></label>
  <label class="muted">社区 <input id="nlu-community" size="8"></label>
  <span id="nlu-stats" class="muted"></span>
  <button id="nlu-export" type="button" class="right">导出训练数据 (x)</button>
</div>
<p class="muted">快捷键：j/k 上下移动 · Enter 确认预测意图 · i 选择其他意图 ·
  用鼠标选中文字后按 e 标注实体 · d 丢弃 · x 导出。文本中的手机号、身份证号、银行卡号已脱敏。</p>
<p id="nlu-error" class="error" role="alert" hidden></p>
<div id="nlu-picker" class="card" hidden>
  <label>选择意图（输入筛选，Enter 确认，Esc 取消）
    <input id="nlu-picker-input" autocomplete="off"></label>
  <ul id="nlu-picker-list" class="plain"></ul>
</div>
<div id="nlu-export-report" class="card" hidden>
  <h2>导出结果</h2>
  <ul id="nlu-export-lines" class="plain"></ul>
</div>
<table class="grid" id="nlu">
  <thead><tr>
    <th class="col-category">原因</th><th>消息（已脱敏）</th><th>预测前两名</th>
    <th>实体</th><th class="col-time">时间</th>
  </tr></thead>
  <tbody id="nlu-body"></tbody>
</table>
<p id="nlu-empty" class="empty" hidden>收件箱已清空。</p>"""


@router.get("/login", response_class=HTMLResponse)
async def login_page() -> HTMLResponse:
    return _page("登录", "login.js", LOGIN)


@router.get("", response_class=HTMLResponse)
async def queue_page() -> HTMLResponse:
    return _page("待办队列", "queue.js", QUEUE, active="queue")


@router.get("/", response_class=HTMLResponse)
async def queue_page_slash() -> RedirectResponse:
    return RedirectResponse("/console", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(case_id: int) -> HTMLResponse:
    return _page(f"案件 #{case_id}", "case.js", CASE, active="case")


@router.get("/tickets", response_class=HTMLResponse)
async def tickets_page() -> HTMLResponse:
    return _page("治理工单", "tickets.js", TICKETS, active="tickets")


@router.get("/dissuasion", response_class=HTMLResponse)
async def dissuasion_page() -> HTMLResponse:
    return _page("精准劝阻", "dissuasion.js", DISSUASION, active="dissuasion")


@router.get("/broadcasts", response_class=HTMLResponse)
async def broadcasts_page() -> HTMLResponse:
    return _page("预警推送", "broadcasts.js", BROADCASTS, active="broadcasts")


@router.get("/metrics", response_class=HTMLResponse)
async def metrics_page() -> HTMLResponse:
    return _page("数据统计", "metrics.js", METRICS, active="metrics")


@router.get("/nlu", response_class=HTMLResponse)
async def nlu_page() -> HTMLResponse:
    return _page("语料标注", "nlu.js", NLU, active="nlu")


# ---------------------------------------------------------------------- static files


@router.get("/static/{name}")
async def static_file(name: str, request: Request) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    content = (STATIC_DIR / name).read_bytes()
    etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content, media_type=media_type, headers=headers)
