"""Values shared by every gateway worker (`casework.shared`), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from casework import db, shared
from casework.clock import utcnow
from integrations.wechat import SqlTokenStorage


def test_write_twice_updates_and_expiry_hides_the_value(database_url):
    soon = utcnow() + timedelta(minutes=5)
    with db.session_scope() as session:
        shared.write(session=session, key="k", value="one", expires_at=soon)
    with db.session_scope() as session:  # a second worker refreshing the same key
        shared.write(session=session, key="k", value="two", expires_at=soon)
    with db.session_scope() as session:
        assert shared.read(session=session, key="k") == "two"
        assert shared.read(session=session, key="k", now=soon + timedelta(seconds=1)) is None
        assert shared.read(session=session, key="missing") is None
        shared.remove(session=session, key="k")
    with db.session_scope() as session:
        assert shared.read(session=session, key="k") is None


def test_wechat_token_storage_goes_through_the_domain_layer(database_url):
    storage = SqlTokenStorage(database_url)
    storage.set("wx_access_token", "token-1", ttl=7200)
    storage.set("wx_access_token", "token-2", ttl=7200)
    assert storage.get("wx_access_token") == "token-2"
    storage.delete("wx_access_token")
    assert storage.get("wx_access_token", "gone") == "gone"
