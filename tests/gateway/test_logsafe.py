"""Access logs never carry tokens, tickets or WeChat signatures (casework/logsafe.py)."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
import uvicorn
from uvicorn.logging import AccessFormatter

from casework import logsafe
from gateway.app import create_app
from tests.gateway.conftest import gateway_settings

SECRETS = ("tk-SECRET-1", "sig-SECRET-2", "msig-SECRET-3", "at-SECRET-4", "o-SECRET-openid")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/events?ticket=abc", "/api/events?ticket=***"),
        (
            "/wechat?signature=s1&timestamp=1700000000&nonce=42&openid=o-1",
            "/wechat?signature=***&timestamp=1700000000&nonce=42&openid=***",
        ),
        (
            "/wechat?msg_signature=m&encrypt_type=aes&Signature=s",
            "/wechat?msg_signature=***&encrypt_type=aes&Signature=***",
        ),
        ("/x?access%5Ftoken=t&page=2", "/x?access%5Ftoken=***&page=2"),
        ("https://api.example/send?access_token=t", "https://api.example/send?access_token=***"),
        ("/api/cases?status=open", "/api/cases?status=open"),
        ("/api/cases", "/api/cases"),
        ("/x?token", "/x?token"),  # a bare name carries no value
    ],
)
def test_redact_query(path, expected):
    assert logsafe.redact_query(path) == expected


def test_a_uvicorn_access_record_is_redacted_before_formatting():
    # the shape uvicorn's h11/httptools protocols log: client, method, path, version, status
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.5:51234", "GET", "/api/events?ticket=tk-SECRET-1", "1.1", 200),
        None,
    )
    assert logsafe.RedactSecrets().filter(record) is True
    line = AccessFormatter(use_colors=False).format(record)
    assert "tk-SECRET-1" not in line
    assert '"GET /api/events?ticket=*** HTTP/1.1" 200' in line


def test_httpx_request_records_are_redacted():
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: %s %s "%s %d %s"',
        (
            "POST",
            httpx.URL("https://api.weixin.qq.com/cgi-bin/x?access_token=at-SECRET-4"),
            "HTTP/1.1",
            200,
            "OK",
        ),
        None,
    )
    logsafe.RedactSecrets().filter(record)
    assert "at-SECRET-4" not in record.getMessage()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_the_gateway_under_uvicorn_writes_no_secret_to_its_access_log(
    sqlite_url, monkeypatch, rasa
):
    settings = gateway_settings(sqlite_url, monkeypatch)
    access = logging.getLogger("uvicorn.access")
    collect = Collect()
    collect.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    access.addHandler(collect)
    app = create_app(settings, start_outbox=False, rasa=rasa, probe_actions=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        httpx.get(f"{base}/api/events", params={"ticket": "tk-SECRET-1"})
        httpx.post(
            f"{base}/wechat",
            params={
                "signature": "sig-SECRET-2",
                "msg_signature": "msig-SECRET-3",
                "timestamp": "1700000000",
                "nonce": "777",
                "openid": "o-SECRET-openid",
            },
            content=b"<xml/>",
        )
        httpx.get(f"{base}/api/conversations", params={"access_token": "at-SECRET-4"})
        deadline = time.time() + 10
        while len(collect.lines) < 3 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        access.removeHandler(collect)
    assert len(collect.lines) >= 3, collect.lines
    log = "\n".join(collect.lines)
    assert not [secret for secret in SECRETS if secret in log], log
    assert "/api/events?ticket=*** HTTP/1.1" in log
    assert "timestamp=1700000000&nonce=777" in log  # kept: they grant nothing alone
