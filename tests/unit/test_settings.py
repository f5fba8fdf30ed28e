"""Settings: production fails closed on every development default, naming each one;
development still starts; `.env` is read by python-dotenv; `.env.example` lists every
setting the code reads."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from casework import accounts, db, demo, posture, settings
from casework.models import User
from casework.settings import DEVELOPMENT_DEFAULTS, REPO_ROOT, Settings, SettingsError
from gateway.app import create_app

PRODUCTION = {
    "JMT_ENV": "production",
    "SECRET_KEY": "k" * 40,
    "DATABASE_URL": "postgresql://jmt:pw@db.internal:5432/jmt",
    "WECHAT_TOKEN": "a-real-wechat-token",
    "WECHAT_APP_ID": "wx1234567890abcdef",
    "WECHAT_APP_SECRET": "a-real-app-secret",
    "WECHAT_MODE": "plain",
    "DINGTALK_WEBHOOK_URL": "https://oapi.dingtalk.com/robot/send?access_token=x",
    "DINGTALK_SECRET": "SEC-real-dingtalk",
    "GOVERNANCE_WEBHOOK_URL": "https://governance.example.org/tickets",
    "GOVERNANCE_SECRET": "outgoing-ticket-secret",
    "GOVERNANCE_CALLBACK_SECRET": "incoming-callback-secret",
    "DISSUASION_SECRET": "incoming-dissuasion-secret",
    "RASA_TOKEN": "rasa-token-0123456789",
    "ACTIONS_TOKEN": "actions-token-0123456789",
    "METRICS_TOKEN": "metrics-token-0123456789",
    "WECHAT_WARNING_TEMPLATE_ID": "Zx9-real-warning-template-id",
}
READ_BY_SETTINGS = sorted(
    set(
        re.findall(
            r"_env\(\s*[\"']([A-Z_]+)[\"']", (REPO_ROOT / "casework/settings.py").read_text()
        )
    )
)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting leaks in from the machine: an empty environment and an empty `.env`."""
    for name in READ_BY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("JMT_VAR_DIR", str(tmp_path / "var"))
    settings._dotenv.cache_clear()
    return tmp_path


def production(monkeypatch: pytest.MonkeyPatch, **changes: str | None) -> Settings:
    for name, value in {**PRODUCTION, **changes}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return Settings.from_env()


def refusal(monkeypatch: pytest.MonkeyPatch, **changes: str | None) -> str:
    with pytest.raises(SettingsError) as refused:
        production(monkeypatch, **changes).check_for_production()
    message = str(refused.value)
    assert "JMT_ENV=development" in message  # the way out for local use is always named
    return message


def test_a_complete_production_configuration_starts(monkeypatch):
    production(monkeypatch).check_for_production()


def test_production_may_leave_dingtalk_replies_off(monkeypatch):
    """Without DINGTALK_APP_SECRET the gateway starts; only /api/dingtalk/callback is off
    (503). With its own secret it starts too."""
    assert production(monkeypatch).dingtalk_app_secret is None
    production(monkeypatch, DINGTALK_APP_SECRET="robot-app-secret-0123").check_for_production()


def test_unset_jmt_env_means_production(monkeypatch):
    message = refusal(monkeypatch, JMT_ENV=None, DATABASE_URL=None)
    assert "JMT_ENV=production" in message and "DATABASE_URL" in message


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"JMT_SIMULATOR": "1"}, "JMT_SIMULATOR"),
        ({"SECRET_KEY": None}, "SECRET_KEY is missing"),
        ({"SECRET_KEY": "short-secret-31-bytes-long-xxxx"}, "SECRET_KEY is shorter than 32"),
        ({"DINGTALK_SECRET": None}, "DINGTALK_SECRET is missing"),
        ({"RASA_TOKEN": None}, "RASA_TOKEN is missing"),
        ({"ACTIONS_TOKEN": None}, "ACTIONS_TOKEN is missing"),
        ({"METRICS_TOKEN": None}, "METRICS_TOKEN is missing"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL='VERBOSE' is unknown"),
        ({"GOVERNANCE_SECRET": None}, "GOVERNANCE_WEBHOOK_URL is set without GOVERNANCE_SECRET"),
        ({"GOVERNANCE_CALLBACK_SECRET": None}, "GOVERNANCE_CALLBACK_SECRET is missing"),
        ({"GOVERNANCE_CALLBACK_SECRET": "outgoing-ticket-secret"}, "equals GOVERNANCE_SECRET"),
        ({"DISSUASION_SECRET": None}, "DISSUASION_SECRET is missing"),
        ({"DISSUASION_SECRET": "incoming-callback-secret"}, "DISSUASION_SECRET equals a"),
        ({"DINGTALK_APP_SECRET": "SEC-real-dingtalk"}, "DINGTALK_APP_SECRET equals DINGTALK_"),
        ({"DINGTALK_APP_SECRET": "incoming-dissuasion-secret"}, "equals DISSUASION_SECRET"),
        ({"DINGTALK_APP_SECRET": "replace-me"}, "DINGTALK_APP_SECRET is the .env.example"),
        ({"DATABASE_URL": "sqlite:////srv/jmt.sqlite3"}, "DATABASE_URL is SQLite"),
        ({"DATABASE_URL": None}, "DATABASE_URL is SQLite"),  # the default
        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS must be a positive"),
        ({"WECHAT_MODE": "secure"}, "WECHAT_MODE='secure' is unknown"),
        ({"WECHAT_MODE": "safe"}, "needs WECHAT_ENCODING_AES_KEY"),
        ({"WECHAT_TOKEN": None}, "WECHAT_TOKEN is missing"),
        ({"WECHAT_APP_SECRET": None}, "WECHAT_APP_SECRET is missing"),
        ({"RASA_TOKEN": "replace-with-openssl-rand-hex-32"}, "RASA_TOKEN is the .env.example"),
        ({"WECHAT_WARNING_TEMPLATE_ID": None}, "WECHAT_WARNING_TEMPLATE_ID is missing"),
        ({"WECHAT_WARNING_TEMPLATE_ID": "  "}, "WECHAT_WARNING_TEMPLATE_ID is missing"),
        (
            {"WECHAT_WARNING_TEMPLATE_ID": "SIMULATED-warning-template"},
            "WECHAT_WARNING_TEMPLATE_ID is a development placeholder",
        ),
        (
            {"WECHAT_WARNING_TEMPLATE_ID": "replace-with-the-template-id"},
            "WECHAT_WARNING_TEMPLATE_ID is a development placeholder",
        ),
        (
            {"DINGTALK_WEBHOOK_URL": "http://10.0.0.1/simulator/dingtalk/robot/send"},
            "DINGTALK_WEBHOOK_URL points at the development simulator",
        ),
    ],
)
def test_production_refuses_each_wrong_setting(monkeypatch, changes, named):
    assert named in refusal(monkeypatch, **changes)


@pytest.mark.parametrize(
    "name",
    [
        "SECRET_KEY",
        "WECHAT_TOKEN",
        "WECHAT_APP_ID",
        "WECHAT_APP_SECRET",
        "DINGTALK_SECRET",
        "GOVERNANCE_SECRET",
        "GOVERNANCE_CALLBACK_SECRET",
        "DISSUASION_SECRET",
        "DINGTALK_APP_SECRET",
        "RASA_TOKEN",
        "ACTIONS_TOKEN",
        "METRICS_TOKEN",
    ],
)
def test_production_refuses_every_development_default(monkeypatch, name):
    for value in sorted(DEVELOPMENT_DEFAULTS):
        assert f"{name} is a development placeholder" in refusal(monkeypatch, **{name: value})


def test_one_refusal_names_every_wrong_setting(monkeypatch):
    message = refusal(
        monkeypatch,
        JMT_SIMULATOR="1",
        SECRET_KEY="too-short",
        DINGTALK_SECRET=None,
        DATABASE_URL="sqlite:///x.db",
        RASA_TOKEN=None,
    )
    for named in ("JMT_SIMULATOR", "SECRET_KEY", "DINGTALK_SECRET", "DATABASE_URL", "RASA_TOKEN"):
        assert named in message
    assert "5 setting(s) must change" in message


def test_development_starts_with_generated_secrets(monkeypatch, isolated):
    monkeypatch.setenv("JMT_ENV", "development")
    dev = Settings.from_env()
    dev.check_for_production()  # development defaults are fine in development
    assert dev.simulator_enabled and dev.database_url.startswith("sqlite")
    assert dev.rasa_token and dev.actions_token and dev.rasa_token != dev.actions_token
    assert (isolated / "var" / "rasa-token").read_text() == dev.rasa_token
    again = Settings.from_env()  # every local process agrees on the same generated tokens
    assert (again.rasa_token, again.actions_token) == (dev.rasa_token, dev.actions_token)


def test_development_still_refuses_an_unknown_wechat_mode(monkeypatch):
    monkeypatch.setenv("JMT_ENV", "development")
    monkeypatch.setenv("WECHAT_MODE", "aes")
    with pytest.raises(SettingsError, match="WECHAT_MODE='aes' is unknown"):
        Settings.from_env().check_for_production()


def test_dotenv_values_lose_their_inline_comments(monkeypatch, isolated):
    (isolated / ".env").write_text(
        "JMT_ENV=development\n"
        "RASA_HOST=10.1.2.3   # the Rasa host of a two-machine deployment\n"
        'SECRET_KEY="quoted # not a comment"\n'
        "export ACTIONS_HOST=10.1.2.4 # exported form\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ACTIONS_TOKEN", "from-the-environment")  # the environment wins
    read = Settings.from_env()
    assert read.rasa_host == "10.1.2.3"
    assert read.secret_key == "quoted # not a comment"
    assert read.actions_host == "10.1.2.4"
    assert read.actions_token == "from-the-environment"


def test_env_example_lists_every_setting_the_code_reads():
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"(?m)^#?\s*([A-Z][A-Z0-9_]+)=", example))
    assert len(READ_BY_SETTINGS) > 20  # the pattern above really finds the settings
    assert sorted(set(READ_BY_SETTINGS) - listed) == []
    endpoints = [
        line.partition("#")[0]  # not the comments' "${VAR}"
        for name in ("endpoints.yml", "endpoints.production.yml")
        for line in (REPO_ROOT / "bot" / name).read_text(encoding="utf-8").splitlines()
    ]
    substituted = set(re.findall(r"\$\{([A-Z_]+)\}", "\n".join(endpoints)))
    assert {"ACTIONS_TOKEN", "RASA_DB_PASSWORD"} <= substituted
    assert sorted(substituted - listed) == []
    for line in example.splitlines():  # no real-looking secret next to a secret's name
        name, _, value = line.lstrip("#").partition("=")
        if any(word in name for word in ("SECRET", "TOKEN", "PASSWORD")) and value:
            assert value.startswith("replace-"), line


def test_the_launcher_refuses_production_defaults_before_starting_anything(tmp_path):
    """`python -m jmt.launch` with JMT_ENV unset, as a server started by hand."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in READ_BY_SETTINGS and name not in ("JMT_ENV", "JMT_SIMULATOR")
    }
    env.update({"JMT_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(REPO_ROOT)})
    done = subprocess.run(
        [sys.executable, "-m", "jmt.launch"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    for named in ("DATABASE_URL is SQLite", "SECRET_KEY is missing", "RASA_TOKEN is missing"):
        assert named in done.stderr
    assert "JMT_ENV=development" in done.stderr
    assert "DEVELOPMENT MODE" not in done.stderr + done.stdout
    assert not (tmp_path / "var").exists()  # refused before creating anything


# ---- the database half of the posture: demo accounts (gateway startup in production)


def test_production_database_refuses_demo_accounts(database_url):
    with db.session_scope(database_url) as session:
        posture.check_production_database(session=session)  # empty: fine
        accounts.create_user(
            session=session, username="zhang", password="a-long-real-password", role="officer"
        )
        posture.check_production_database(session=session)  # a real account: fine
        demo.load(session=session)
        with pytest.raises(SettingsError, match="demo accounts exist.*commander"):
            posture.check_production_database(session=session)


def test_production_database_refuses_the_demo_password_and_allows_disabled_demo(database_url):
    with db.session_scope(database_url) as session:
        demo.load(session=session)
        session.execute(update(User).values(active=False))  # disabled: cannot log in
        posture.check_production_database(session=session)
        accounts.create_user(
            session=session, username="li", password=demo.DEMO_PASSWORD, role="officer"
        )
        with pytest.raises(SettingsError, match=r"published demo password \(li\)"):
            posture.check_production_database(session=session)


def test_gateway_refuses_to_start_in_production_with_demo_accounts(monkeypatch, database_url):
    with db.session_scope(database_url) as session:
        demo.load(session=session)
    prod = dataclasses.replace(production(monkeypatch), database_url=database_url)
    if database_url.startswith("sqlite"):  # refused before the database is even opened
        with pytest.raises(SettingsError, match="DATABASE_URL is SQLite"):
            create_app(prod, start_outbox=False)
        return
    app = create_app(prod, start_outbox=False, probe_actions=False)
    with pytest.raises(SettingsError, match="demo accounts exist"):
        with TestClient(app):
            pass


def test_rasa_tracker_store_for_retention(monkeypatch, isolated):
    """Retention reaches Rasa's tracker store where the endpoints files put it."""
    assert production(monkeypatch).rasa_tracker_url is None
    monkeypatch.setenv("RASA_TRACKER_DB", "var/rasa-tracker.sqlite3")
    assert production(monkeypatch).rasa_tracker_url == (
        f"sqlite:///{isolated / 'var' / 'rasa-tracker.sqlite3'}"
    )
    for name, value in {
        "RASA_DB_HOST": "db.internal",
        "RASA_DB_PORT": "6432",
        "RASA_DB_NAME": "rasa",
        "RASA_DB_USER": "rasa",
        "RASA_DB_PASSWORD": "p@ss/word",
    }.items():
        monkeypatch.setenv(name, value)
    assert production(monkeypatch).rasa_tracker_url == (
        "postgresql://rasa:p%40ss%2Fword@db.internal:6432/rasa"
    )


def test_development_fills_in_the_simulated_warning_template(monkeypatch):
    """Development runs on the stand-in's template id; production must name the real one
    (refused above), and the gateway refuses to start without it."""
    monkeypatch.setenv("JMT_ENV", "development")
    assert Settings.from_env().wechat_warning_template_id == settings.DEV_WARNING_TEMPLATE_ID
    with pytest.raises(SettingsError, match="WECHAT_WARNING_TEMPLATE_ID is missing"):
        create_app(production(monkeypatch, WECHAT_WARNING_TEMPLATE_ID=None))
