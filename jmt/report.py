"""`jmt report weekly`: the week's hot topics (casework.hot_topics) as Markdown or HTML.

The HTML is one self-contained file with bar charts drawn as inline SVG: no script, no
external resource, every text escaped — it can be mailed or opened offline.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from casework.cases import CATEGORY_LABELS
from casework.hot_topics import GroupTopics, HotTopicsPublic

KIND_LABELS = {"category": "类别", "faq_topic": "常见问题", "fraud_type": "诈骗类型"}
TOP_PLACES = 12  # communities listed in full; the rest are in the JSON API


def _category(key: str) -> str:
    return CATEGORY_LABELS.get(key, key)


def _period(report: HotTopicsPublic) -> str:
    last_day = report.until.date().fromordinal(report.until.date().toordinal() - 1)
    return f"{report.week}（{report.since.date()} 至 {last_day}，北京时间）"


def _pairs(table: dict[str, int], label=lambda key: key) -> str:  # noqa: ANN001
    return "、".join(f"{label(k)} {n}" for k, n in table.items()) or "—"


# ---- Markdown -------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "｜").replace("\n", " ")


def markdown(report: HotTopicsPublic) -> str:
    lines = [
        f"# 警民通 每周热点 {_period(report)}",
        "",
        f"居民来信 {report.messages} 条。",
        "",
        "## 上升最快",
        "",
    ]
    if report.risers:
        lines += ["| 地点 | 类型 | 内容 | 本周 | 上周 |", "|---|---|---|---|---|"]
        lines += [
            f"| {_md_cell(r.place)} | {KIND_LABELS.get(r.kind, r.kind)} | {_md_cell(r.label)} "
            f"| {r.this_week} | {r.last_week} |"
            for r in report.risers
        ]
    else:
        lines.append("本周没有翻倍上升的话题。")
    lines += ["", "## 全区", "", *_md_group(report.district), "", "## 各街道", ""]
    for group in report.streets:
        lines += [f"### {group.place}", "", *_md_group(group), ""]
    lines += ["## 各社区（来信最多的前 12 个）", ""]
    lines += ["| 社区 | 来信 | 类别 | 诈骗类型 | 关键词 |", "|---|---|---|---|---|"]
    for group in report.communities[:TOP_PLACES]:
        lines.append(
            f"| {_md_cell(group.place)} | {group.messages} "
            f"| {_md_cell(_pairs(group.categories, _category))} "
            f"| {_md_cell(_pairs(group.fraud_types))} "
            f"| {_md_cell('、'.join(k.word for k in group.keywords[:5]) or '—')} |"
        )
    return "\n".join(lines) + "\n"


def _md_group(group: GroupTopics) -> list[str]:
    return [
        f"- 来信：{group.messages} 条",
        f"- 类别：{_pairs(group.categories, _category)}",
        f"- 常见问题：{_pairs(group.faq_topics)}",
        f"- 诈骗类型：{_pairs(group.fraud_types)}",
        f"- 关键词：{'、'.join(k.word for k in group.keywords) or '—'}",
    ]


# ---- HTML -----------------------------------------------------------------------------------


def _bars(title: str, rows: Iterable[tuple[str, int]]) -> str:
    """A horizontal bar chart as inline SVG."""
    rows = list(rows)
    if not rows:
        return f"<h4>{html.escape(title)}</h4><p class=muted>—</p>"
    biggest = max(n for _, n in rows) or 1
    height = 22 * len(rows) + 4
    bars = []
    for i, (label, n) in enumerate(rows):
        y = 22 * i + 2
        width = max(2, round(260 * n / biggest))
        bars.append(
            f'<text x="0" y="{y + 14}" font-size="13">{html.escape(label)}</text>'
            f'<rect x="150" y="{y + 3}" width="{width}" height="14" fill="#2b6cb0"></rect>'
            f'<text x="{156 + width}" y="{y + 14}" font-size="12">{n}</text>'
        )
    return (
        f"<h4>{html.escape(title)}</h4>"
        f'<svg role="img" aria-label="{html.escape(title)}" width="460" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>'
    )


def _html_group(group: GroupTopics) -> str:
    words = "、".join(html.escape(k.word) for k in group.keywords) or "—"
    return (
        f"<section><h3>{html.escape(group.place)}（来信 {group.messages} 条）</h3>"
        + _bars("类别", ((_category(k), n) for k, n in group.categories.items()))
        + _bars("诈骗类型", group.fraud_types.items())
        + _bars("常见问题", group.faq_topics.items())
        + f"<p>关键词：{words}</p></section>"
    )


def html_page(report: HotTopicsPublic) -> str:
    risers = "".join(
        f"<tr><td>{html.escape(r.place)}</td><td>{KIND_LABELS.get(r.kind, r.kind)}</td>"
        f"<td>{html.escape(r.label)}</td><td>{r.this_week}</td><td>{r.last_week}</td></tr>"
        for r in report.risers
    )
    risers_table = (
        "<table><tr><th>地点</th><th>类型</th><th>内容</th><th>本周</th><th>上周</th></tr>"
        f"{risers}</table>"
        if risers
        else "<p>本周没有翻倍上升的话题。</p>"
    )
    streets = "".join(_html_group(group) for group in report.streets)
    communities = "".join(_html_group(group) for group in report.communities[:TOP_PLACES])
    title = f"警民通 每周热点 {_period(report)}"
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "section{border-top:1px solid #eee;margin-top:1em}.muted{color:#888}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        f"<p>居民来信 {report.messages} 条。</p>"
        f"<h2>上升最快</h2>{risers_table}"
        f"<h2>全区</h2>{_html_group(report.district)}"
        f"<h2>各街道</h2>{streets}"
        f"<h2>各社区（来信最多的前 {TOP_PLACES} 个）</h2>{communities}"
        "</body></html>\n"
    )
