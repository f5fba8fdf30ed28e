"""One settings object for the whole project, read from the environment and `.env`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal KEY=VALUE `.env` file (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def _env(name: str, default: str | None = None) -> str | None:
    """The environment wins over `.env`, which wins over the default."""
    if name in os.environ:
        return os.environ[name]
    return _read_dotenv(REPO_ROOT / ".env").get(name, default)


DEV_WECHAT_TOKEN = "jmt-development-token"  # development only; production must set its own


class SettingsError(RuntimeError):
    """A setting production cannot run without is missing or a placeholder."""


@dataclass(frozen=True)
class Settings:
    environment: str  # development | production
    secret_key: str | None  # signs console tokens; generated and stored in dev
    simulator_enabled: bool
    database_url: str
    rasa_url: str
    redis_url: str | None
    wechat_token: str | None
    wechat_app_id: str | None
    wechat_app_secret: str | None
    wechat_encoding_aes_key: str | None
    wechat_api_base_url: str
    dingtalk_webhook_url: str | None
    dingtalk_secret: str | None
    governance_webhook_url: str | None
    governance_secret: str | None
    action_server_url: str
    console_url: str  # links in notifications point here
    var_dir: Path = field(default=REPO_ROOT / "var")

    @classmethod
    def from_env(cls) -> Settings:
        var_dir = Path(_env("JMT_VAR_DIR") or REPO_ROOT / "var")
        environment = (_env("JMT_ENV") or "development").lower()
        development = environment == "development"
        simulator = _env("JMT_SIMULATOR")
        local = f"http://127.0.0.1:{_env('GATEWAY_PORT', '8000')}"
        return cls(
            environment=environment,
            secret_key=_env("SECRET_KEY") or None,
            simulator_enabled=development if simulator is None else simulator == "1",
            database_url=_env("DATABASE_URL") or f"sqlite:///{var_dir / 'jmt.sqlite3'}",
            rasa_url=_env("RASA_URL") or f"http://127.0.0.1:{_env('RASA_PORT', '5005')}",
            redis_url=_env("REDIS_URL") or None,
            wechat_token=_env("WECHAT_TOKEN") or (DEV_WECHAT_TOKEN if development else None),
            # Development talks to the simulator's WeChat stand-in with a made-up account.
            wechat_app_id=_env("WECHAT_APP_ID") or ("wx-jmt-development" if development else None),
            wechat_app_secret=_env("WECHAT_APP_SECRET")
            or ("jmt-development-secret" if development else None),
            wechat_encoding_aes_key=_env("WECHAT_ENCODING_AES_KEY") or None,
            wechat_api_base_url=_env("WECHAT_API_BASE_URL")
            or (
                f"http://127.0.0.1:{_env('GATEWAY_PORT', '8000')}/simulator/wechat-api"
                if development
                else "https://api.weixin.qq.com"
            ),
            # Development: the simulator's stand-ins for DingTalk and the governance platform.
            dingtalk_webhook_url=_env("DINGTALK_WEBHOOK_URL")
            or (f"{local}/simulator/dingtalk/robot/send?access_token=dev" if development else None),
            dingtalk_secret=_env("DINGTALK_SECRET")
            or ("SEC-jmt-development" if development else None),
            governance_webhook_url=_env("GOVERNANCE_WEBHOOK_URL")
            or (f"{local}/simulator/governance/tickets" if development else None),
            governance_secret=_env("GOVERNANCE_SECRET")
            or ("jmt-development-governance" if development else None),
            console_url=_env("CONSOLE_URL") or local,
            action_server_url=_env("ACTION_SERVER_URL")
            or f"http://127.0.0.1:{_env('ACTIONS_PORT', '5055')}",
            var_dir=var_dir,
        )

    @property
    def development(self) -> bool:
        return self.environment == "development"

    def check_for_production(self) -> None:
        """Refuse to serve production with missing or placeholder secrets."""
        if self.development:
            return
        missing = [
            name
            for name, value in (
                ("SECRET_KEY", self.secret_key),
                ("WECHAT_TOKEN", self.wechat_token),
                ("WECHAT_APP_ID", self.wechat_app_id),
                ("WECHAT_APP_SECRET", self.wechat_app_secret),
            )
            if not value or value in (DEV_WECHAT_TOKEN, "changeme", "change-me")
        ]
        if missing:
            raise SettingsError(f"production needs real values for: {', '.join(missing)}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
