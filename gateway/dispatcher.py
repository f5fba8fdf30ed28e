"""Background work for officers: route and announce new cases, run the ticket loop.

Cases are created by the action server (bot hand-offs) and by the gateway (bot down,
tickets coming back, a bot turn whose worker died: `intake.recover_stalled_turns`, run
first in each pass). Each pass finds cases nobody has announced yet, routes them to an
officer (and the duty commander where needed) and notifies them through DingTalk — the
group robot (@-mentioning the commanders when urgent) and, when configured, a personal
work notification to each officer routing considered (`personal`); re-notifies the
commanders, once, of an urgent case still unclaimed after its response target
(`casework.case_notices`); sends
pending tickets to the governance platform; brings overdue tickets back to officers; and
does the dissuasion tasks' work (the resident's WeChat warning, escalation past the
deadline, the DingTalk notices).
Cases and tickets are claimed with an owner and an expiry (`casework.dispatch`), so
several gateway workers never double up and a dead worker's claims are taken over once
they expire. A failed send records when to try again and the pass moves on: nothing in
a pass sleeps (DingTalk is tried once per pass, `DingTalkRobot(retries=0)`). `clock` is
injectable so tests move time (a ten-minute outage) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from casework import (
    case_notices,
    claims,
    db,
    dingtalk_replies,
    dispatch,
    dissuasion_work,
    intake,
    retention,
)
from casework.cases import CATEGORY_LABELS, RESPONSE_TARGETS
from casework.clock import utcnow
from casework.privacy import mask_pii
from gateway.background import BackgroundLoop
from gateway.dissuasion_notify import build_task_notification
from gateway.service import BOT_UNAVAILABLE
from integrations.governance import GovernanceClient, GovernanceError
from integrations.notify import Notification, Notifier, NotifyError

logger = logging.getLogger(__name__)
RETENTION_CHECK_SECONDS = 600  # how often a worker asks whether today's purge is due
PRIORITY_LABELS = {"urgent": "紧急", "high": "高", "normal": "普通", "low": "低"}
# Dissuasion batches one pass works through at most while they come full: a burst of
# leads drains at 50 notices a pass, and other work waits at most 5 batches.
DISSUASION_BATCHES = 5


CaseAbout = dispatch.RoutedCase | case_notices.CaseFacts  # what a case message needs


@dataclass(frozen=True)
class Announcement:
    case_id: int
    notification: Notification


def _minutes(priority: str) -> int:
    return int(RESPONSE_TARGETS[priority].total_seconds() // 60)


def _place(case: CaseAbout) -> str:
    return "".join(p for p in (case.street, case.community) if p) or (case.location or "未定位")


def build_notification(
    case: CaseAbout,
    assignee_names: list[str],
    mobiles: list[str],
    console_url: str,
    *,
    user_ids: tuple[str, ...] = (),
) -> Notification:
    """A new case's announcement: to the group (with @-mentions when urgent), or — with
    `user_ids` — the personal work notification of those officers. Either ends with how
    to answer from DingTalk (`dingtalk_replies.reply_hint`)."""
    urgent = case.priority == "urgent"
    personal = bool(user_ids)
    label = CATEGORY_LABELS.get(case.category, case.category)
    title = f"{'【紧急】' if urgent else ''}{label}案件 #{case.id}"
    lines = [
        f"### {title}",
        f"- 优先级：{PRIORITY_LABELS[case.priority]}（{_minutes(case.priority)} 分钟内首次回复）",
        f"- 地点：{_place(case)}",
        f"- 承办：{'、'.join(assignee_names) or '待指派'}",
        f"- 摘要：{mask_pii(case.summary)[:200]}",  # masked before cut: no half numbers
        f"[打开案件]({console_url}/console/cases/{case.id})",
    ]
    if urgent and mobiles and not personal:
        lines.append(" ".join(f"@{m}" for m in mobiles))
    lines.append(dingtalk_replies.reply_hint(case.id, quote=not personal))
    return Notification(
        case_id=case.id,
        title=title,
        text="\n".join(lines),
        url=f"{console_url}/console/cases/{case.id}",
        urgent=urgent,
        mobiles=tuple(mobiles) if urgent and not personal else (),
        user_ids=user_ids,
    )


def build_escalation(
    case: CaseAbout,
    commander_names: list[str],
    mobiles: list[str],
    console_url: str,
    *,
    user_ids: tuple[str, ...] = (),
) -> Notification:
    """An urgent case still unclaimed after its response target, re-notified to the
    commanders: in the group with their @-mentions, or personally (`user_ids`)."""
    personal = bool(user_ids)
    label = CATEGORY_LABELS.get(case.category, case.category)
    title = f"【超时未认领】{label}案件 #{case.id}"
    lines = [
        f"### {title}",
        f"- 紧急案件已超过 {_minutes(case.priority)} 分钟无人认领，请指挥长协调处置",
        f"- 地点：{_place(case)}",
        f"- 摘要：{mask_pii(case.summary)[:200]}",
        f"[打开案件]({console_url}/console/cases/{case.id})",
    ]
    if commander_names:
        lines.insert(2, f"- 通知：{'、'.join(commander_names)}")
    if mobiles and not personal:
        lines.append(" ".join(f"@{m}" for m in mobiles))
    lines.append(dingtalk_replies.reply_hint(case.id, quote=not personal))
    return Notification(
        case_id=case.id,
        title=title,
        text="\n".join(lines),
        url=f"{console_url}/console/cases/{case.id}",
        urgent=True,
        mobiles=() if personal else tuple(mobiles),
        user_ids=user_ids,
    )


def build_case_notice(notice: case_notices.DueNotice, console_url: str) -> Notification:
    """The message of a personal announcement or of an escalation (group or personal)."""
    if notice.kind == case_notices.ESCALATE:
        return build_escalation(
            notice.case,
            list(notice.names),
            list(notice.mobiles),
            console_url,
            user_ids=notice.user_ids,
        )
    return build_notification(
        notice.case, list(notice.names), [], console_url, user_ids=notice.user_ids
    )


async def _notify(notifier: Notifier, notification: Notification) -> tuple[str | None, bool]:
    """Send one notification off the event loop: (None, False) when delivered, else the
    error's text and whether retrying cannot help (`NotifyError.permanent`)."""
    try:
        await asyncio.to_thread(notifier.send, notification)
    except NotifyError as failure:
        return str(failure) or type(failure).__name__, failure.permanent
    return None, False


class Dispatcher(BackgroundLoop):
    name = "dispatcher"

    def __init__(
        self,
        *,
        database_url: str | None,
        notifier: Notifier | None,
        governance: GovernanceClient | None,
        console_url: str,
        personal: Notifier | None = None,
        poll_seconds: float = 1.0,
        retention_days: int = 0,
        tracker_url: str | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(poll_seconds=poll_seconds)
        self.retention_days = retention_days  # 0: no automatic purge (tests)
        self.tracker_url = tracker_url  # Rasa's tracker store, purged by the same rule
        self.owner = owner or claims.worker_id()
        self.clock = clock
        self._next_retention_check = 0.0
        self.database_url = database_url
        self.notifier = notifier
        self.personal = personal  # DingTalk work notifications to officers (issue 12)
        self.governance = governance
        self.console_url = console_url.rstrip("/")

    async def run_once(self) -> int:
        await asyncio.to_thread(self._recover_stalled_turns)  # before routing: its cases
        announcements = await asyncio.to_thread(self._route_new_cases)
        for announcement in announcements:
            await self._announce(announcement)
        await self._case_notices()
        await self._send_tickets()
        await asyncio.to_thread(self._return_overdue_tickets)
        await self._dissuasion()
        if self.retention_days and time.monotonic() >= self._next_retention_check:
            self._next_retention_check = time.monotonic() + RETENTION_CHECK_SECONDS
            await asyncio.to_thread(self._purge_if_due)
        return 0  # always wait a poll interval: cases come from other processes too

    def _purge_if_due(self) -> None:
        """Nothing is kept for ever: once a day one worker anonymises what is past
        RETENTION_DAYS (casework/retention.py)."""
        with db.session_scope(self.database_url) as session:
            report = retention.purge_if_due(
                session=session,
                owner=self.owner,
                retention_days=self.retention_days,
                tracker_url=self.tracker_url,
            )
        if report is not None:
            logger.info("retention: %s", "; ".join(report.lines()))

    # ---------------------------------------------------------------- cases

    def _recover_stalled_turns(self) -> None:
        """Messages whose gateway worker died mid-turn: the fallback answer and a case."""
        with db.session_scope(self.database_url) as session:
            recovered = intake.recover_stalled_turns(
                session=session, owner=self.owner, now=self.clock(), fallback=BOT_UNAVAILABLE
            )
        for turn in recovered:
            logger.warning(
                "message %s from %s: its worker stopped mid-turn; %s",
                turn.message_id,
                turn.openid,
                "fallback queued, case opened" if turn.answered else "an officer owns it now",
            )

    def _route_new_cases(self) -> list[Announcement]:
        with db.session_scope(self.database_url) as session:
            routed = dispatch.route_new_cases(
                session=session,
                can_notify=self.notifier is not None,
                personal=self.personal is not None,
                owner=self.owner,
                now=self.clock(),
            )
        return [
            Announcement(
                case.id,
                build_notification(case, list(case.names), list(case.mobiles), self.console_url),
            )
            for case in routed
        ]

    async def _announce(self, announcement: Announcement) -> None:
        assert self.notifier is not None
        error, permanent = await _notify(self.notifier, announcement.notification)
        outcome = await asyncio.to_thread(
            self._record_announcement, announcement.case_id, error, permanent
        )
        if outcome == "lost":
            logger.warning(
                "case %s: announcement claim taken over; not recorded", announcement.case_id
            )
        elif error is not None:
            log = logger.error if outcome == "failed" else logger.warning
            log("notification for case %s failed (%s): %s", announcement.case_id, outcome, error)

    def _record_announcement(self, case_id: int, error: str | None, permanent: bool) -> str:
        with db.session_scope(self.database_url) as session:
            return dispatch.record_announcement(
                session=session,
                case_id=case_id,
                error=error,
                permanent=permanent,
                owner=self.owner,
                now=self.clock(),
            )

    # ---------------------------------------------------------------- personal, escalation

    async def _case_notices(self) -> None:
        """Escalate urgent cases unclaimed past their target (once each), then send the
        personal work notifications and escalation messages that are due."""
        await asyncio.to_thread(self._escalate)
        due = await asyncio.to_thread(self._case_notices_due)
        for notice in due:
            notifier = self.personal if notice.channel == case_notices.PERSONAL else self.notifier
            assert notifier is not None  # a channel without one was marked failed
            error, permanent = await _notify(notifier, build_case_notice(notice, self.console_url))
            outcome = await asyncio.to_thread(
                self._record_case_notice, notice.notice_id, error, permanent
            )
            if error is not None or outcome == "lost":
                logger.warning(
                    "case %s: %s %s notice %s: %s",
                    notice.case.id,
                    notice.channel,
                    notice.kind,
                    outcome,
                    error or "claim taken over; not recorded",
                )

    def _escalate(self) -> None:
        with db.session_scope(self.database_url) as session:
            escalated = case_notices.escalate_unclaimed(
                session=session,
                now=self.clock(),
                personal=self.personal is not None,
                group=self.notifier is not None,
            )
        if escalated:
            logger.warning(
                "urgent cases %s unclaimed past their target: commanders told", escalated
            )

    def _case_notices_due(self) -> list[case_notices.DueNotice]:
        with db.session_scope(self.database_url) as session:
            return case_notices.notices_due(
                session=session,
                personal=self.personal is not None,
                group=self.notifier is not None,
                owner=self.owner,
                now=self.clock(),
            )

    def _record_case_notice(self, notice_id: int, error: str | None, permanent: bool) -> str:
        with db.session_scope(self.database_url) as session:
            return case_notices.record_notice(
                session=session,
                notice_id=notice_id,
                error=error,
                permanent=permanent,
                owner=self.owner,
                now=self.clock(),
            )

    # ---------------------------------------------------------------- dissuasion tasks

    async def _dissuasion(self) -> None:
        """Precision dissuasion (casework/dissuasion_work.py): warn matched residents in
        WeChat, escalate overdue tasks to the 反诈 desk, and send the tasks' DingTalk
        notices — each once, with any number of workers."""
        for _ in range(DISSUASION_BATCHES):  # a CSV of 2,000 leads is not 200 passes
            busy = await asyncio.to_thread(self._warn_and_escalate)
            notices = await asyncio.to_thread(self._task_notices)
            await self._send_task_notices(notices)
            if not busy and len(notices) < claims.BATCH:
                return

    async def _send_task_notices(self, notices: list[dissuasion_work.TaskNotice]) -> None:
        for notice in notices:  # none without a notifier: they were marked failed
            assert self.notifier is not None
            notification = build_task_notification(notice, self.console_url)
            error, permanent = await _notify(self.notifier, notification)
            outcome = await asyncio.to_thread(
                self._record_task_notice, notice.notice_id, error, permanent
            )
            if error is not None or outcome == "lost":
                logger.warning(
                    "dissuasion task %s: %s notice %s: %s",
                    notice.task_id,
                    notice.kind,
                    outcome,
                    error or "claim taken over; not recorded",
                )

    def _warn_and_escalate(self) -> bool:
        """True when either took a full batch (there may be more)."""
        with db.session_scope(self.database_url) as session:
            warned = dissuasion_work.warn_residents(session=session, now=self.clock())
        with db.session_scope(self.database_url) as session:
            escalated = dissuasion_work.escalate_overdue(session=session, now=self.clock())
        if warned:
            logger.info("dissuasion tasks %s: the residents' warnings queued", warned)
        if escalated:
            logger.warning("dissuasion tasks %s past their deadline: escalated to 反诈", escalated)
        return max(len(warned), len(escalated)) >= claims.BATCH

    def _task_notices(self) -> list[dissuasion_work.TaskNotice]:
        with db.session_scope(self.database_url) as session:
            return dissuasion_work.notices_due(
                session=session,
                can_notify=self.notifier is not None,
                owner=self.owner,
                now=self.clock(),
            )

    def _record_task_notice(self, notice_id: int, error: str | None, permanent: bool) -> str:
        with db.session_scope(self.database_url) as session:
            return dissuasion_work.record_notice(
                session=session,
                notice_id=notice_id,
                error=error,
                permanent=permanent,
                owner=self.owner,
                now=self.clock(),
            )

    # ---------------------------------------------------------------- tickets

    async def _send_tickets(self) -> None:
        if self.governance is None:
            return
        pending = await asyncio.to_thread(self._pending_tickets)
        for ticket_id, body in pending:
            try:
                await asyncio.to_thread(self.governance.send_ticket, body)
                error, permanent = None, False
            except GovernanceError as failure:
                error, permanent = str(failure), failure.permanent
            await asyncio.to_thread(self._ticket_sent, ticket_id, error, permanent)

    def _pending_tickets(self) -> list[tuple[int, dict]]:
        with db.session_scope(self.database_url) as session:
            return dispatch.tickets_to_send(session=session, owner=self.owner, now=self.clock())

    def _ticket_sent(self, ticket_id: int, error: str | None, permanent: bool) -> None:
        with db.session_scope(self.database_url) as session:
            outcome = dispatch.record_ticket_sent(
                session=session,
                ticket_id=ticket_id,
                error=error,
                permanent=permanent,
                owner=self.owner,
                now=self.clock(),
            )
        if outcome == "lost":
            logger.warning("ticket %s: sending claim taken over; not recorded", ticket_id)

    def _return_overdue_tickets(self) -> None:
        with db.session_scope(self.database_url) as session:
            for ticket_id in dispatch.return_overdue_tickets(session=session):
                logger.warning("ticket %s overdue: back to officers", ticket_id)
