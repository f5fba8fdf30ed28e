"""Settings of personal DingTalk work notifications (issue 12): off unless
DINGTALK_APP_KEY is set; development talks to the simulator's stand-in; production with
an app key needs its agent id and secret and refuses the development placeholders."""

from __future__ import annotations

import pytest

from casework.settings import DEV_DINGTALK_APP_KEY, Settings
from tests.unit.test_settings import isolated, production, refusal  # noqa: F401 (fixture)

APP = {"DINGTALK_APP_KEY": "dingabcdef123456", "DINGTALK_AGENT_ID": "2233445566"}


def test_production_without_an_app_key_has_no_personal_notifications(monkeypatch):
    configured = production(monkeypatch)
    configured.check_for_production()
    assert configured.dingtalk_app_key is None
    assert configured.dingtalk_api_url == "https://oapi.dingtalk.com"


def test_production_with_the_app_starts(monkeypatch):
    configured = production(monkeypatch, DINGTALK_APP_SECRET="robot-app-secret-0123", **APP)
    configured.check_for_production()
    assert (configured.dingtalk_app_key, configured.dingtalk_agent_id) == (
        "dingabcdef123456",
        "2233445566",
    )


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"DINGTALK_APP_SECRET": None}, "DINGTALK_APP_KEY is set without DINGTALK_APP_SECRET"),
        ({"DINGTALK_AGENT_ID": None}, "DINGTALK_APP_KEY is set without DINGTALK_AGENT_ID"),
        ({"DINGTALK_APP_KEY": DEV_DINGTALK_APP_KEY}, "DINGTALK_APP_KEY is a development"),
        (
            {"DINGTALK_API_URL": "http://10.0.0.1:8000/simulator/dingtalk"},
            "DINGTALK_API_URL points at the development simulator",
        ),
    ],
)
def test_production_refuses_a_half_configured_app(monkeypatch, changes, named):
    values = {"DINGTALK_APP_SECRET": "robot-app-secret-0123", **APP, **changes}
    assert named in refusal(monkeypatch, **values)


def test_development_uses_the_simulators_stand_in(monkeypatch):
    monkeypatch.setenv("JMT_ENV", "development")
    monkeypatch.setenv("GATEWAY_PORT", "8123")
    configured = Settings.from_env()
    assert configured.dingtalk_api_url == "http://127.0.0.1:8123/simulator/dingtalk"
    assert configured.dingtalk_app_key == DEV_DINGTALK_APP_KEY
    assert configured.dingtalk_agent_id and configured.dingtalk_app_secret
    assert configured.problems() == []
