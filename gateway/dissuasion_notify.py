"""The DingTalk text of a dissuasion task's notices (announcement and escalation).

Every task notice rings the people it names (`urgent=True`: DingTalk only @-mentions in
urgent notifications, see `integrations.notify.mentioned`): a lead is a person who may
pay a scammer within the hour. The person's phone is masked in the title and text; the
officer reads the number in the console's task. `Notification.case_id` carries the task
id (the notifier logs it as "case").
"""

from __future__ import annotations

from casework.clock import beijing
from casework.dissuasion_work import TaskNotice
from casework.vocabulary import RISK_LEVEL_LABELS
from integrations.notify import Notification


def task_url(console_url: str, task_id: int) -> str:
    return f"{console_url}/console/dissuasion/{task_id}"


def build_task_notification(notice: TaskNotice, console_url: str) -> Notification:
    level = RISK_LEVEL_LABELS.get(notice.risk_level, notice.risk_level)
    escalated = notice.kind == "escalate"
    title = (
        f"【精准劝阻】{'超时升级 ' if escalated else ''}{level} {notice.risk_type} "
        f"{notice.phone_masked}"
    )
    place = "".join(p for p in (notice.street, notice.community) if p) or "未匹配社区（反诈中心）"
    deadline = beijing(notice.deadline_at).strftime("%m-%d %H:%M")
    url = task_url(console_url, notice.task_id)
    lines = [
        f"### {title}",
        f"- 任务：#{notice.task_id}（{level}，{notice.risk_type}）",
        f"- 当事人：{notice.phone_masked}"
        + ("（已关注公众号，已推送预警）" if notice.resident_matched else ""),
        f"- 社区：{place}",
        f"- 承办：{'、'.join(notice.names) or '待指派'}",
        (
            f"- 已超过时限（{deadline}）仍未办结，请反诈中心跟进"
            if escalated
            else f"- 请于 {deadline} 前联系到本人：不接电话不放过、不见本人不放过"
        ),
        f"[打开任务]({url})",
    ]
    if notice.mobiles:
        lines.append(" ".join(f"@{mobile}" for mobile in notice.mobiles))
    return Notification(
        case_id=notice.task_id,
        title=title,
        text="\n".join(lines),
        url=url,
        urgent=True,
        mobiles=notice.mobiles,
    )
