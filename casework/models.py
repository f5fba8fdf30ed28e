"""SQLAlchemy models of the domain layer (SQLAlchemy 1.4, used in the 2.0 style)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import declarative_base

from casework.clock import utcnow as utcnow  # re-exported: older modules import it here

Base: Any = declarative_base()


class Case(Base):
    """A conversation handed to officers: what happened, how urgent, what was collected."""

    __tablename__ = "cases"
    # One open case per resident and category (revision 0006): open_case merges into it.
    __table_args__ = (
        Index(
            "uq_cases_open_sender_category",
            "sender_id",
            "category",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
            sqlite_where=text("status <> 'closed'"),
        ),
    )

    id = Column(Integer, primary_key=True)
    sender_id = Column(String(128), nullable=False, index=True)  # the resident's WeChat openid
    category = Column(String(32), nullable=False, index=True)  # a triage category
    priority = Column(String(16), nullable=False, index=True)  # urgent | high | normal | low
    status = Column(String(16), nullable=False, default="open", index=True)
    reason = Column(String(32), nullable=False)  # why the bot handed over
    desk = Column(String(16), nullable=True)  # 反诈, 法制, ... or None for the community officer
    summary = Column(Text, nullable=False)
    location = Column(Text, nullable=True)
    details = Column(JSON, nullable=False, default=dict)  # slots the intake collected
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow)
    # ---- routing and handling (revision 0003)
    street = Column(String(64), nullable=True)
    community = Column(String(64), nullable=True, index=True)
    assigned_to_id = Column(Integer, ForeignKey("users.id"), nullable=True)  # routed officer
    claimed_by_id = Column(Integer, ForeignKey("users.id"), nullable=True)  # who works on it
    claimed_at = Column(DateTime(timezone=True), nullable=True)
    due_at = Column(DateTime(timezone=True), nullable=True)  # first reply target (priority)
    first_reply_at = Column(DateTime(timezone=True), nullable=True)
    closed_at = Column(DateTime(timezone=True), nullable=True)
    resolution = Column(Text, nullable=True)
    rating = Column(Integer, nullable=True)  # 1–5 from the resident after closing
    rating_requested_at = Column(DateTime(timezone=True), nullable=True)
    original_category = Column(String(32), nullable=True)  # set when an officer corrects it
    notify_status = Column(String(16), nullable=True)  # pending | sent | failed
    notify_error = Column(Text, nullable=True)
    redacted_at = Column(DateTime(timezone=True), nullable=True)  # retention (revision 0005)
    # ---- the DingTalk announcement's claim and patient retries (revision 0006)
    notify_claimed_by = Column(String(128), nullable=True)  # host:pid of the worker
    notify_claim_expires_at = Column(DateTime(timezone=True), nullable=True)
    notify_attempts = Column(Integer, nullable=False, default=0, server_default="0")
    notify_next_attempt_at = Column(DateTime(timezone=True), nullable=True)
    notify_first_attempt_at = Column(DateTime(timezone=True), nullable=True)
    # ---- revision 0012: an urgent case unclaimed past its target re-notified, once
    escalated_at = Column(DateTime(timezone=True), nullable=True)


class CaseNotice(Base):
    """A DingTalk message about a case besides its group announcement (revision 0012): a
    personal work notification to one officer (announce or escalate), or the escalation's
    group message. Sent once by one worker: claimed with an owner and an expiry."""

    __tablename__ = "case_notices"
    __table_args__ = (
        UniqueConstraint(
            "case_id", "kind", "channel", "recipient", name="uq_case_notices_recipient"
        ),
    )

    id = Column(Integer, primary_key=True)
    case_id = Column(Integer, ForeignKey("cases.id"), nullable=False)
    kind = Column(String(16), nullable=False)  # announce | escalate
    channel = Column(String(16), nullable=False)  # personal | group
    recipient = Column(String(64), nullable=False)  # the DingTalk user id; '' for the group
    user_id = Column(Integer, ForeignKey("users.id"), nullable=True)  # the officer (personal)
    status = Column(String(16), nullable=False, default="pending", index=True)
    attempts = Column(Integer, nullable=False, default=0)
    claimed_by = Column(String(128), nullable=True)
    claim_expires_at = Column(DateTime(timezone=True), nullable=True)
    next_attempt_at = Column(DateTime(timezone=True), nullable=True)
    first_attempt_at = Column(DateTime(timezone=True), nullable=True)
    error = Column(Text, nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    sent_at = Column(DateTime(timezone=True), nullable=True)


class CaseNote(Base):
    """An officer's private note on a case (never sent to the resident)."""

    __tablename__ = "case_notes"

    id = Column(Integer, primary_key=True)
    case_id = Column(Integer, ForeignKey("cases.id"), nullable=False, index=True)
    author_id = Column(Integer, ForeignKey("users.id"), nullable=False)
    text = Column(Text, nullable=False)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class CaseRead(Base):
    """How far one officer has read one case (revision 0013): the queue's unread counts."""

    __tablename__ = "case_reads"
    __table_args__ = (UniqueConstraint("case_id", "user_id", name="uq_case_reads_case_user"),)

    id = Column(Integer, primary_key=True)
    case_id = Column(Integer, ForeignKey("cases.id"), nullable=False)
    user_id = Column(Integer, ForeignKey("users.id"), nullable=False, index=True)
    last_read_message_id = Column(Integer, nullable=False, default=0, server_default="0")
    read_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class AuditEntry(Base):
    """Every officer action: who did what to which record, when."""

    __tablename__ = "audit_log"

    id = Column(Integer, primary_key=True)
    actor_id = Column(Integer, ForeignKey("users.id"), nullable=True)  # None: the system
    action = Column(String(32), nullable=False, index=True)
    target_type = Column(String(16), nullable=False)
    target_id = Column(Integer, nullable=True)
    detail = Column(JSON, nullable=False, default=dict)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)
    client_ip = Column(String(64), nullable=True)  # revision 0005


class Ticket(Base):
    """A non-police matter diverted to the governance platform, tracked until closed."""

    __tablename__ = "tickets"

    id = Column(Integer, primary_key=True)
    sender_id = Column(String(128), nullable=False, index=True)
    kind = Column(String(32), nullable=False, index=True)  # noise | dog | dispute
    status = Column(String(16), nullable=False, default="pending", index=True)
    summary = Column(Text, nullable=False)
    location = Column(Text, nullable=True)
    details = Column(JSON, nullable=False, default=dict)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow)
    # ---- the governance platform loop (revision 0003)
    street = Column(String(64), nullable=True)
    community = Column(String(64), nullable=True, index=True)
    case_id = Column(Integer, ForeignKey("cases.id"), nullable=True)  # diverted from a case
    linked_to_id = Column(Integer, ForeignKey("tickets.id"), nullable=True)  # duplicate of
    sent_at = Column(DateTime(timezone=True), nullable=True)
    send_attempts = Column(Integer, nullable=False, default=0)
    send_error = Column(Text, nullable=True)
    status_note = Column(Text, nullable=True)  # the platform's last remark
    due_at = Column(DateTime(timezone=True), nullable=True)
    resolved_at = Column(DateTime(timezone=True), nullable=True)
    redacted_at = Column(DateTime(timezone=True), nullable=True)  # retention (revision 0005)
    # ---- sending claims and patient retries (revision 0006)
    claimed_by = Column(String(128), nullable=True)  # host:pid of the sending worker
    claim_expires_at = Column(DateTime(timezone=True), nullable=True)
    next_attempt_at = Column(DateTime(timezone=True), nullable=True)  # None: now
    first_attempt_at = Column(DateTime(timezone=True), nullable=True)


class Resident(Base):
    """A WeChat user of the official account, known by their openid."""

    __tablename__ = "residents"

    id = Column(Integer, primary_key=True)
    openid = Column(String(128), nullable=False, unique=True)
    subscribed = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_seen_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    # ---- targeted warnings and dissuasion matching (revision 0008): the registered
    # mobile (digits only, given with consent) and the resident's community.
    mobile = Column(String(20), nullable=True, index=True)
    mobile_consent_at = Column(DateTime(timezone=True), nullable=True)
    community = Column(String(64), nullable=True, index=True)


class Conversation(Base):
    """A resident's thread with the account. Exactly one owner: the bot or an officer."""

    __tablename__ = "conversations"

    id = Column(Integer, primary_key=True)
    resident_id = Column(Integer, ForeignKey("residents.id"), nullable=False, unique=True)
    openid = Column(String(128), nullable=False, unique=True)
    owner = Column(String(16), nullable=False, default="bot")  # bot | officer
    officer_id = Column(Integer, ForeignKey("users.id"), nullable=True)
    location_label = Column(Text, nullable=True)  # the last location the resident shared
    location_lat = Column(Float, nullable=True)
    location_lng = Column(Float, nullable=True)
    awaiting_rating_case_id = Column(Integer, ForeignKey("cases.id"), nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow)


class Message(Base):
    """Every message, both directions, stored before anything else happens to it."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_messages_dedupe_key"),
        # the stalled-turn sweep reads only turns in progress: a small partial index
        Index(
            "ix_messages_turn_claim",
            "claim_expires_at",
            postgresql_where=text("status = 'received'"),
            sqlite_where=text("status = 'received'"),
        ),
    )

    id = Column(Integer, primary_key=True)
    conversation_id = Column(Integer, ForeignKey("conversations.id"), nullable=False, index=True)
    direction = Column(String(8), nullable=False)  # in | out
    msg_type = Column(String(16), nullable=False)  # text, voice, location, image, link, event ...
    # Inbound only: WeChat's MsgId, or FromUserName:CreateTime:Event for events. Retries of
    # the same message carry the same key, so the unique constraint makes storing idempotent.
    dedupe_key = Column(String(200), nullable=True)
    content = Column(Text, nullable=False, default="")  # what a person reads
    media = Column(JSON, nullable=False, default=dict)  # recognition, location, media id, url ...
    raw = Column(Text, nullable=True)  # no longer written (issue 8: raw XML is not kept)
    status = Column(String(16), nullable=False, default="received")
    intent = Column(String(100), nullable=True)
    confidence = Column(Float, nullable=True)
    reply = Column(Text, nullable=True)  # inbound: the passive reply given (repeated on retries)
    sender = Column(String(32), nullable=True)  # outbound: bot | officer:<name> | system
    delivery = Column(String(16), nullable=True)  # outbound: passive | outbox
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)
    redacted_at = Column(DateTime(timezone=True), nullable=True)  # retention (revision 0005)
    # ---- inbound: the bot turn's claim (revision 0007). The worker that stored a message
    # for the bot owns its turn until it expires; a worker that died mid-turn is found by
    # `intake.recover_stalled_turns` (status still 'received', claim expired).
    claimed_by = Column(String(128), nullable=True)
    claim_expires_at = Column(DateTime(timezone=True), nullable=True)


class OutboxItem(Base):
    """A customer-service message waiting to be delivered through the WeChat API."""

    __tablename__ = "outbox"

    id = Column(Integer, primary_key=True)
    message_id = Column(Integer, ForeignKey("messages.id"), nullable=False)
    openid = Column(String(128), nullable=False, index=True)
    text = Column(Text, nullable=False)
    status = Column(String(16), nullable=False, default="pending", index=True)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)
    last_error = Column(Text, nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    sent_at = Column(DateTime(timezone=True), nullable=True)
    # ---- claims with an owner and an expiry (revision 0006)
    claimed_by = Column(String(128), nullable=True)  # host:pid of the sending worker
    claim_expires_at = Column(DateTime(timezone=True), nullable=True)


class User(Base):
    """An officer, commander, trainer or admin of the console."""

    __tablename__ = "users"
    __table_args__ = (
        Index(
            "uq_users_dingtalk_id",
            "dingtalk_id",
            unique=True,
            postgresql_where=text("dingtalk_id IS NOT NULL"),
            sqlite_where=text("dingtalk_id IS NOT NULL"),
        ),
    )

    id = Column(Integer, primary_key=True)
    username = Column(String(64), nullable=False, unique=True)
    password_hash = Column(String(255), nullable=False)
    role = Column(String(16), nullable=False)  # officer | commander | trainer | admin
    community = Column(String(64), nullable=True)
    desk = Column(String(16), nullable=True)
    active = Column(Boolean, nullable=False, default=True)
    failed_logins = Column(Integer, nullable=False, default=0)
    locked_until = Column(DateTime(timezone=True), nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    # ---- revision 0003
    display_name = Column(String(64), nullable=True)  # 张警官
    mobile = Column(String(20), nullable=True)  # for DingTalk @-mentions on urgent cases
    on_duty = Column(Boolean, nullable=False, default=False)  # the duty commander
    # ---- revision 0010: the officer's DingTalk user id (staffId), unique when set
    dingtalk_id = Column(String(64), nullable=True)
    # ---- revision 0011: bearer tokens issued before this are refused (logout everywhere)
    tokens_valid_after = Column(DateTime(timezone=True), nullable=True)


class ConsoleSession(Base):
    """A browser's sign-in to the console (revision 0011): the cookie holds a random
    token, the table only its SHA-256 (`casework/sessions.py`)."""

    __tablename__ = "console_sessions"

    id = Column(String(64), primary_key=True)
    user_id = Column(Integer, ForeignKey("users.id"), nullable=False, index=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_seen_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    expires_at = Column(DateTime(timezone=True), nullable=False, index=True)
    revoked_at = Column(DateTime(timezone=True), nullable=True)
    client_ip = Column(String(64), nullable=True)
    user_agent = Column(String(255), nullable=True)


class SharedValue(Base):
    """Small values shared by every gateway worker, e.g. the WeChat access token."""

    __tablename__ = "shared_values"

    key = Column(String(128), primary_key=True)
    value = Column(Text, nullable=False)
    expires_at = Column(DateTime(timezone=True), nullable=True)


class SeenNonce(Base):
    """A signed request accepted within its timestamp window (revision 0005).

    The same nonce with the same body is a retry; with another body it is a replay."""

    __tablename__ = "seen_nonces"

    scope = Column(String(32), primary_key=True)  # wechat | governance | dissuasion ...
    nonce_key = Column(String(255), primary_key=True)
    body_hash = Column(String(64), nullable=False)
    expires_at = Column(DateTime(timezone=True), nullable=False, index=True)


class LoginAttempt(Base):
    """Failed logins per (username, client IP) and per client IP (revision 0005)."""

    __tablename__ = "login_attempts"

    key = Column(String(200), primary_key=True)
    failures = Column(Integer, nullable=False, default=0)
    window_started_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    locked_until = Column(DateTime(timezone=True), nullable=True)


# ------------------------------------------------------------------ precision dissuasion
# (revision 0008). A lead from the municipal warning platform becomes exactly one task.


class DissuasionLead(Base):
    """A warning lead about a potential fraud victim, as the platform sent it."""

    __tablename__ = "dissuasion_leads"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_dissuasion_leads_ext"),)

    id = Column(Integer, primary_key=True)
    source = Column(String(64), nullable=False)  # 96110, 市反诈中心预警平台 ...
    external_id = Column(String(128), nullable=False)  # the platform's id: idempotence
    phone = Column(String(20), nullable=False, index=True)  # normalised digits
    name = Column(String(64), nullable=True)
    address = Column(Text, nullable=True)
    risk_type = Column(String(32), nullable=False)  # a vocabulary code, or 其他
    risk_type_original = Column(String(64), nullable=True)  # what the platform said for 其他
    risk_level = Column(String(8), nullable=False)  # high | medium | low
    warned_at = Column(DateTime(timezone=True), nullable=False)
    received_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    channel = Column(String(16), nullable=False, default="webhook")  # webhook | upload


class DissuasionTask(Base):
    """The work one lead asks for: reach the person before they pay, record the outcome."""

    __tablename__ = "dissuasion_tasks"

    id = Column(Integer, primary_key=True)
    lead_id = Column(Integer, ForeignKey("dissuasion_leads.id"), nullable=False, unique=True)
    resident_id = Column(Integer, ForeignKey("residents.id"), nullable=True)  # matched mobile
    street = Column(String(64), nullable=True)
    community = Column(String(64), nullable=True, index=True)
    assignee_id = Column(Integer, ForeignKey("users.id"), nullable=True, index=True)
    desk = Column(String(16), nullable=True)  # 反诈 when the desk holds it (or escalated)
    status = Column(String(16), nullable=False, default="open", index=True)  # open | closed
    deadline_at = Column(DateTime(timezone=True), nullable=False, index=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    outcome = Column(String(16), nullable=True)  # dissuaded | defrauded | unreachable
    amount_protected_fen = Column(BigInteger, nullable=True)  # 分 (exact); shown in 元
    closed_at = Column(DateTime(timezone=True), nullable=True)
    closed_by_id = Column(Integer, ForeignKey("users.id"), nullable=True)
    case_id = Column(Integer, ForeignKey("cases.id"), nullable=True)  # defrauded: the case
    escalated_at = Column(DateTime(timezone=True), nullable=True)  # past the deadline, once
    resident_warned_at = Column(DateTime(timezone=True), nullable=True)  # WeChat warning queued


class DissuasionAttempt(Base):
    """One try to reach the person: phone, WeChat or a visit (不见本人不放过)."""

    __tablename__ = "dissuasion_attempts"

    id = Column(Integer, primary_key=True)
    task_id = Column(Integer, ForeignKey("dissuasion_tasks.id"), nullable=False, index=True)
    channel = Column(String(16), nullable=False)  # phone | wechat | visit
    reached = Column(Boolean, nullable=False)
    note = Column(Text, nullable=False, default="")
    officer_id = Column(Integer, ForeignKey("users.id"), nullable=True)
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class DissuasionNotice(Base):
    """A DingTalk notice about a task (its announcement, its escalation), sent once by one
    worker: claimed with an owner and an expiry, retried patiently like case notices."""

    __tablename__ = "dissuasion_notices"
    __table_args__ = (UniqueConstraint("task_id", "kind", name="uq_dissuasion_notices_kind"),)

    id = Column(Integer, primary_key=True)
    task_id = Column(Integer, ForeignKey("dissuasion_tasks.id"), nullable=False)
    kind = Column(String(16), nullable=False)  # announce | escalate
    status = Column(String(16), nullable=False, default="pending", index=True)
    attempts = Column(Integer, nullable=False, default=0)
    claimed_by = Column(String(128), nullable=True)
    claim_expires_at = Column(DateTime(timezone=True), nullable=True)
    next_attempt_at = Column(DateTime(timezone=True), nullable=True)
    first_attempt_at = Column(DateTime(timezone=True), nullable=True)
    error = Column(Text, nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    sent_at = Column(DateTime(timezone=True), nullable=True)


class StopPayment(Base):
    """紧急止付: a stop-payment request to a bank on a fraud case, and what it achieved."""

    __tablename__ = "stop_payments"

    id = Column(Integer, primary_key=True)
    case_id = Column(Integer, ForeignKey("cases.id"), nullable=False, index=True)
    bank = Column(String(64), nullable=False)
    account = Column(String(64), nullable=False)  # digits; masked whenever shown
    amount_fen = Column(BigInteger, nullable=False)  # asked to stop
    requested_at = Column(DateTime(timezone=True), nullable=False)
    frozen_fen = Column(BigInteger, nullable=True)
    recovered_fen = Column(BigInteger, nullable=True)
    result_at = Column(DateTime(timezone=True), nullable=True)
    requested_by_id = Column(Integer, ForeignKey("users.id"), nullable=True)
    result_by_id = Column(Integer, ForeignKey("users.id"), nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


# ------------------------------------------------------------------ warnings (预警推送)
# (revision 0009). A resident's warning preferences, and broadcasts delivered at most once
# per resident through a claimed, throttled queue.


class WarningPreference(Base):
    """What a resident wants to be warned about, and whether they left (退订).

    `topics` is None until the resident chooses (then every topic reaches them), else the
    chosen codes as ",fraud,weather," so one LIKE finds a topic on every backend."""

    __tablename__ = "warning_preferences"

    resident_id = Column(Integer, ForeignKey("residents.id"), primary_key=True)
    topics = Column(String(200), nullable=True)
    warnings_opted_out_at = Column(DateTime(timezone=True), nullable=True)  # 退订
    consent_text = Column(Text, nullable=True)  # what the resident agreed to, last
    consent_at = Column(DateTime(timezone=True), nullable=True)  # when
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class WarningConsent(Base):
    """Every change of a resident's warning preferences: what they agreed to, when."""

    __tablename__ = "warning_consents"

    id = Column(Integer, primary_key=True)
    resident_id = Column(Integer, ForeignKey("residents.id"), nullable=False, index=True)
    action = Column(String(16), nullable=False)  # topics | opt_out | opt_in
    topics = Column(String(200), nullable=True)  # the topics after the change
    text = Column(Text, nullable=False)  # the wording the resident agreed to
    source = Column(String(32), nullable=False, default="wechat")  # wechat | console ...
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow)


class Broadcast(Base):
    """A warning (预警) to many residents: composed once, sent by the background loop."""

    __tablename__ = "broadcasts"

    id = Column(Integer, primary_key=True)
    topic = Column(String(16), nullable=False)  # vocabulary.WARNING_TOPIC_LABELS
    title = Column(String(64), nullable=False)
    text = Column(Text, nullable=False)
    audience = Column(JSON, nullable=False, default=dict)
    community = Column(String(64), nullable=True, index=True)  # an audience of one community
    send_at = Column(DateTime(timezone=True), nullable=False, index=True)
    status = Column(String(16), nullable=False, default="scheduled", index=True)
    created_by_id = Column(Integer, ForeignKey("users.id"), nullable=True)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    started_at = Column(DateTime(timezone=True), nullable=True)
    finished_at = Column(DateTime(timezone=True), nullable=True)
    pause_reason = Column(Text, nullable=True)  # e.g. the template quota ran out (45009)
    figures = Column(JSON, nullable=False, default=dict)  # mass-send jobs' results ...
    # the audience is resolved once, by the worker that claimed the start
    claimed_by = Column(String(128), nullable=True)
    claim_expires_at = Column(DateTime(timezone=True), nullable=True)


class BroadcastDelivery(Base):
    """One resident's copy of a broadcast: at most one per (broadcast, resident)."""

    __tablename__ = "broadcast_deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "resident_id", name="uq_broadcast_deliveries_resident"),
        Index("ix_broadcast_deliveries_queue", "broadcast_id", "status"),
    )

    id = Column(Integer, primary_key=True)
    broadcast_id = Column(Integer, ForeignKey("broadcasts.id"), nullable=False)
    resident_id = Column(Integer, ForeignKey("residents.id"), nullable=False, index=True)
    community = Column(String(64), nullable=True)  # the resident's, when the audience was resolved
    channel = Column(String(16), nullable=True)  # template | customer_service | mass_tag
    status = Column(String(16), nullable=False, default="pending")
    error = Column(Text, nullable=True)
    wechat_msgid = Column(String(64), nullable=True, index=True)
    claimed_by = Column(String(128), nullable=True)
    claim_expires_at = Column(DateTime(timezone=True), nullable=True)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime(timezone=True), nullable=True)
    sent_at = Column(DateTime(timezone=True), nullable=True)
