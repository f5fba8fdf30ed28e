"""SQLAlchemy models of the domain layer (SQLAlchemy 1.4, used in the 2.0 style)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Integer, String, Text
from sqlalchemy.orm import declarative_base

Base: Any = declarative_base()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Case(Base):
    """A conversation handed to officers: what happened, how urgent, what was collected."""

    __tablename__ = "cases"

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
