"""The shared vocabulary: every code the console shows, with its Chinese label, in one place.

Categories, priorities (with their response targets), case statuses and hand-off
reasons, notification and message delivery states, desks, roles, ticket kinds and states,
the trainers' inbox reasons and entities, and the names of the details an intake collects.
Codes come from the module that owns them (`casework.cases`, `casework.accounts`,
`casework.tickets`, `casework.nlu_inbox`); labels that used to live only in the console's
HTML and JavaScript are defined here. `GET /api/vocabulary` serves `vocabulary()` and the
console builds its selects and badges from it, so a new category or state is added in
Python once and never re-typed in JS. The intent → category mapping stays in
`bot/triage.yml` (`casework.triage`).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel

from casework import accounts, cases, gazetteer, nlu_inbox, tickets

PRIORITY_LABELS = {"urgent": "紧急", "high": "高", "normal": "普通", "low": "低"}

CASE_STATUS_LABELS = {"open": "待认领", "claimed": "处理中", "closed": "已办结"}

# Why a conversation was handed to an officer (Case.reason), set by actions and gateway.
CASE_REASON_LABELS = {
    "money_lost": "已转账受骗",
    "resident_request": "群众要求民警处理",
    "dissuaded": "已劝阻（记录备查）",
    "dog_bite": "犬只伤人",
    "emergency": "紧急警情",
    "fallback": "机器人无法解答",
    "bot_unavailable": "机器人服务不可用",
    "ticket_rejected": "治理平台退回",
    "ticket_overdue": "治理平台超期未办结",
    "ticket_not_sent": "工单无法送达治理平台",
    "dissuasion_defrauded": "精准劝阻：已被骗",
}

ROLE_LABELS = {"officer": "民警", "commander": "指挥长", "trainer": "训练师", "admin": "管理员"}

# A ticket's life: sent by the ticket worker, then moved by the platform's callbacks;
# 'linked' joins a duplicate report to the open ticket of the same place.
TICKET_STATE_LABELS = {
    "pending": "待推送",
    "sent": "已推送",
    "accepted": "已受理",
    "in_progress": "处理中",
    "resolved": "已办结",
    "rejected": "已退回",
    "linked": "已合并",
    "failed": "无法送达",  # the dispatcher gave up sending; the ticket came back as a case
}

# An outbound message's delivery (Message.status) and a case's DingTalk notification.
MESSAGE_STATUS_LABELS = {
    "queued": "排队发送",
    "sending": "发送中",
    "sent": "已发送",
    "failed": "发送失败",
}
NOTIFY_STATUS_LABELS = {"pending": "发送中", "sent": "已通知", "failed": "通知失败"}

ENTITY_LABELS = {
    "address": "地址",
    "time": "时间",
    "amount": "金额",
    "phone": "电话",
    "bank_account": "银行账户",
    "fraud_type": "诈骗类型",
    "platform": "平台",
    "injury": "伤情",
    "legal_topic": "法律问题",
}

# The details an intake collects (Case.details keys), in the order an officer reads them.
DETAIL_LABELS = {
    "money_lost": "是否已转账",
    "amount_yuan": "涉案金额",
    "amount": "金额（原话）",
    "event_time_iso": "发生时间",
    "event_time": "时间（原话）",
    "payment_method": "支付方式",
    "scammer_phones": "对方号码",
    "scammer_accounts": "对方账户",
    "scammer_contact": "对方联系方式",
    "fraud_type": "诈骗类型",
    "platform": "平台",
    "dissuaded": "是否已劝阻",
    "location": "地点",
    "street": "街道",
    "community": "社区",
    "noise_source": "噪音来源",
    "noise_ongoing": "是否仍在持续",
    "dog_incident": "犬只情况",
    "bitten": "是否有人被咬",
    "injury": "伤情",
    "legal_topic": "法律问题",
    "wants_officer": "要求民警联系",
    "ticket_id": "工单号",
    "note": "说明",
    "first_message": "群众原话",
    "victim_phone": "当事人电话",
    "dissuasion_task_id": "劝阻任务",
    "lead_source": "预警来源",
    "lead_external_id": "预警编号",
    "risk_level": "风险等级",
    "warned_at": "预警时间",
}

# ---- precision dissuasion (精准劝阻, issue 11). Risk types are the municipal platform's
# own words, so code and label are the same; any other type is accepted as 其他 and the
# platform's wording is kept beside it (`DissuasionLead.risk_type_original`).
OTHER_RISK_TYPE = "其他"
RISK_TYPES = ("刷单返利", "冒充公检法", "虚假投资理财", "贷款", "冒充客服", OTHER_RISK_TYPE)
RISK_LEVEL_LABELS = {"high": "高风险", "medium": "中风险", "low": "低风险"}  # most urgent first
DISSUASION_STATUS_LABELS = {"open": "待劝阻", "closed": "已办结"}
DISSUASION_OUTCOME_LABELS = {
    "dissuaded": "劝阻成功",
    "defrauded": "已被骗",
    "unreachable": "未联系上",
}
CONTACT_CHANNEL_LABELS = {"phone": "电话", "wechat": "微信", "visit": "上门"}
# ---- warnings (预警推送, issue 11): the topics a resident may choose, and a broadcast's
# and a delivery's states and channels
WARNING_TOPIC_LABELS = {
    "fraud": "电诈预警",
    "weather": "灾害天气",
    "traffic": "交通安全",
    "health": "公共卫生",
    "community": "社区通知",
}
BROADCAST_STATUS_LABELS = {
    "draft": "草稿",
    "scheduled": "待发送",
    "sending": "发送中",
    "paused": "已暂停",
    "cancelled": "已取消",
    "done": "已完成",
}
DELIVERY_STATUS_LABELS = {
    "pending": "待发送",
    "sending": "发送中",
    "sent": "已发送",
    "failed": "发送失败",
    "opted_out": "已退订",
    "skipped": "未发送",
}
DELIVERY_CHANNEL_LABELS = {
    "template": "模板消息",
    "customer_service": "客服消息",
    "mass_tag": "按标签群发",
}

# ---- the queue's filter bar (queue12, issue 12): its buttons and selects' placeholders
QUEUE_FILTER_LABELS = {
    "mine": "我的",
    "unclaimed": "待认领",
    "urgent": "紧急",
    "category": "分类",
    "community": "社区",
}


class Term(BaseModel):
    """One code and what the console shows for it."""

    value: str
    label: str


class CategoryTerm(Term):
    desk: str | None  # the desk the category needs; None: the community officer


class PriorityTerm(Term):
    response_target_seconds: int  # the first reply within this counts as timely


class TicketStateTerm(Term):
    open: bool  # still waiting for the platform (can become overdue)


class RiskLevelTerm(Term):
    deadline_seconds: int  # a task of this level must be worked within this


class CommunityTerm(Term):
    street: str  # the street or town it belongs to


class VocabularyPublic(BaseModel):
    categories: list[CategoryTerm]
    priorities: list[PriorityTerm]  # most urgent first
    case_statuses: list[Term]
    case_reasons: list[Term]
    notify_statuses: list[Term]
    message_statuses: list[Term]
    desks: list[Term]
    roles: list[Term]
    ticket_kinds: list[Term]
    ticket_states: list[TicketStateTerm]
    ticket_target_seconds: int
    nlu_reasons: list[Term]
    entities: list[Term]
    details: list[Term]
    risk_types: list[Term]
    risk_levels: list[RiskLevelTerm]
    dissuasion_statuses: list[Term]
    dissuasion_outcomes: list[Term]
    contact_channels: list[Term]
    warning_topics: list[Term]
    broadcast_statuses: list[Term]
    delivery_statuses: list[Term]
    delivery_channels: list[Term]
    queue_filters: list[Term]
    communities: list[CommunityTerm]  # the district's communities, street by street


def _terms(labels: dict[str, str], order: tuple[str, ...] | None = None) -> list[Term]:
    return [Term(value=code, label=labels[code]) for code in (order or tuple(labels))]


@lru_cache(maxsize=1)
def vocabulary() -> VocabularyPublic:
    """Built once per process: every piece is a module constant."""
    from casework.dissuasion import DEADLINES  # imports this module: not at the top

    return VocabularyPublic(
        categories=[
            CategoryTerm(
                value=code, label=cases.CATEGORY_LABELS[code], desk=cases.DESK_BY_CATEGORY[code]
            )
            for code in cases.CATEGORIES
        ],
        priorities=[
            PriorityTerm(
                value=code,
                label=PRIORITY_LABELS[code],
                response_target_seconds=int(cases.RESPONSE_TARGETS[code].total_seconds()),
            )
            for code in cases.PRIORITIES
        ],
        case_statuses=_terms(CASE_STATUS_LABELS),
        case_reasons=_terms(CASE_REASON_LABELS),
        notify_statuses=_terms(NOTIFY_STATUS_LABELS),
        message_statuses=_terms(MESSAGE_STATUS_LABELS),
        desks=[Term(value=desk, label=desk) for desk in accounts.DESKS],
        roles=_terms(ROLE_LABELS, accounts.ROLES),
        ticket_kinds=_terms(tickets.KIND_LABELS),
        ticket_states=[
            TicketStateTerm(value=code, label=label, open=code in cases.OPEN_TICKET_STATES)
            for code, label in TICKET_STATE_LABELS.items()
        ],
        ticket_target_seconds=int(cases.TICKET_TARGET.total_seconds()),
        nlu_reasons=_terms(nlu_inbox.REASON_LABELS, nlu_inbox.REASONS),
        entities=_terms(ENTITY_LABELS, nlu_inbox.ENTITY_NAMES),
        details=_terms(DETAIL_LABELS),
        risk_types=[Term(value=code, label=code) for code in RISK_TYPES],
        risk_levels=[
            RiskLevelTerm(
                value=code, label=label, deadline_seconds=int(DEADLINES[code].total_seconds())
            )
            for code, label in RISK_LEVEL_LABELS.items()
        ],
        dissuasion_statuses=_terms(DISSUASION_STATUS_LABELS),
        dissuasion_outcomes=_terms(DISSUASION_OUTCOME_LABELS),
        contact_channels=_terms(CONTACT_CHANNEL_LABELS),
        warning_topics=_terms(WARNING_TOPIC_LABELS),
        broadcast_statuses=_terms(BROADCAST_STATUS_LABELS),
        delivery_statuses=_terms(DELIVERY_STATUS_LABELS),
        delivery_channels=_terms(DELIVERY_CHANNEL_LABELS),
        queue_filters=_terms(QUEUE_FILTER_LABELS),
        communities=[
            CommunityTerm(value=community, label=community, street=street)
            for street, names in gazetteer.STREETS.items()
            for community in names
        ],
    )
