"""One settings object for the whole project, read from the environment and `.env`.

`.env` is parsed by python-dotenv (quotes, inline comments, `export` prefixes), and the
environment wins over it. `.env.example` lists every setting with a comment.

`JMT_ENV` decides the posture: `development` (what `make run` and `make test` set) fills
in local stand-ins and generated secrets; anything else is production, which fails
closed (`check_for_production`) on every development default.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from dotenv import dotenv_values

REPO_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=4)
def _dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def _env(name: str, default: str | None = None) -> str | None:
    """The environment wins over `.env`, which wins over the default."""
    if name in os.environ:
        return os.environ[name]
    return _dotenv(REPO_ROOT / ".env").get(name, default)


def development_secret(var_dir: Path, name: str) -> str:
    """A random secret generated once into `var/` and reused (development only), so every
    local process (Rasa, the action server, gateway workers) agrees without configuration."""
    path = var_dir / name
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:  # O_EXCL: two processes starting at once end up with the same secret
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value)
    return value


DEV_WECHAT_TOKEN = "jmt-development-token"  # development only; production must set its own
DEV_DINGTALK_APP_KEY = "ding-jmt-development"  # the simulator's app (development only)
DEV_WARNING_TEMPLATE_ID = "SIMULATED-warning-template"  # the stand-in accepts any template id
# Every value development fills in by itself; production refuses each of them.
DEVELOPMENT_DEFAULTS = frozenset(
    {
        DEV_WECHAT_TOKEN,
        "wx-jmt-development",
        "jmt-development-secret",
        "SEC-jmt-development",
        "jmt-development-governance",
        "jmt-development-governance-callback",
        "jmt-development-dissuasion",
        "jmt-development-dingtalk-app",
        "changeme",
        "change-me",
    }
)
WECHAT_MODES = ("plain", "compat", "safe")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    governance_secret: str | None  # signs the tickets we send
    governance_callback_secret: str | None  # verifies the platform's status callbacks
    action_server_url: str
    console_url: str  # links in notifications point here
    var_dir: Path = field(default=REPO_ROOT / "var")
    # ---- secure by default (issue 8)
    rasa_token: str | None = None  # Rasa's HTTP API token (`rasa run --auth-token`)
    rasa_host: str = "127.0.0.1"  # where Rasa listens
    actions_host: str = "127.0.0.1"  # where the action server listens
    actions_token: str | None = None  # shared secret Rasa sends the action server
    wechat_mode: str = "plain"  # plain | compat | safe (WeChat's 消息加解密方式)
    retention_days: int = 180  # residents' words and closed cases are anonymised after this
    # ---- operations (issue 10)
    log_level: str = "INFO"  # LOG_LEVEL, every process (casework/logconfig.py)
    metrics_token: str | None = None  # bearer token of GET /metrics; required in production
    # Several Rasa replicas (RASA_URLS, comma-separated); empty: RASA_URL alone. The
    # launcher's live list ($JMT_VAR_DIR/rasa-urls.json) replaces it while that file exists.
    rasa_urls: tuple[str, ...] = ()
    # ---- scale-out (issue 10): what `make run` (jmt/launch.py) starts
    gateway_workers: int = 1  # uvicorn processes sharing the gateway's port
    rasa_replicas: int = 1  # `rasa run` processes on RASA_PORT, RASA_PORT+1, ...
    rasa_drain_seconds: float = 10.0  # a promotion stops an old Rasa this long after the switch
    rasa_model: str | None = None  # the model `make run` starts with (default: LIVE, else newest)
    # ---- precision dissuasion (issue 11)
    dissuasion_secret: str | None = None  # verifies the warning platform's signed leads
    # ---- warnings (预警推送, issue 11)
    wechat_warning_template_id: str | None = None  # the 预警通知 template of the 公众号
    broadcast_rate_per_second: float = 20.0  # sends per second, all gateway workers together
    broadcast_mass_send: bool = False  # whole-district warnings by community user tag
    # ---- replies from DingTalk (issue 12)
    dingtalk_app_secret: str | None = None  # verifies the enterprise robot's outgoing callback
    # ---- personal work notifications (工作通知, issue 12): the same enterprise-internal
    # app; its AppSecret is DINGTALK_APP_SECRET. No app key: group notifications only.
    dingtalk_app_key: str | None = None
    dingtalk_agent_id: str | None = None  # the app's AgentId
    dingtalk_api_url: str = "https://oapi.dingtalk.com"  # gettoken, asyncsend_v2
    # ---- console sessions (issue 12): the browser's HttpOnly cookie
    session_idle_minutes: int = 120  # signed out after this long without a request
    session_max_hours: int = 12  # signed out this long after signing in, whatever happens

    @classmethod
    def from_env(cls) -> Settings:
        var_dir = Path(_env("JMT_VAR_DIR") or REPO_ROOT / "var")
        # Unset means production: a server started by hand fails closed, never open.
        environment = (_env("JMT_ENV") or "production").strip().lower()
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
            governance_callback_secret=_env("GOVERNANCE_CALLBACK_SECRET")
            or ("jmt-development-governance-callback" if development else None),
            console_url=_env("CONSOLE_URL") or local,
            action_server_url=_env("ACTION_SERVER_URL")
            or f"http://127.0.0.1:{_env('ACTIONS_PORT', '5055')}",
            var_dir=var_dir,
            rasa_token=_env("RASA_TOKEN")
            or (development_secret(var_dir, "rasa-token") if development else None),
            rasa_host=_env("RASA_HOST") or "127.0.0.1",
            actions_host=_env("ACTIONS_HOST") or "127.0.0.1",
            actions_token=_env("ACTIONS_TOKEN")
            or (development_secret(var_dir, "actions-token") if development else None),
            wechat_mode=(
                _env("WECHAT_MODE") or ("compat" if _env("WECHAT_ENCODING_AES_KEY") else "plain")
            )
            .strip()
            .lower(),
            retention_days=int(_env("RETENTION_DAYS") or 180),
            log_level=(_env("LOG_LEVEL") or "INFO").strip().upper(),
            metrics_token=_env("METRICS_TOKEN") or None,
            rasa_urls=tuple(
                url.strip().rstrip("/")
                for url in (_env("RASA_URLS") or "").split(",")
                if url.strip()
            ),
            gateway_workers=int(_env("GATEWAY_WORKERS") or 1),
            rasa_replicas=int(_env("RASA_REPLICAS") or 1),
            rasa_drain_seconds=float(_env("RASA_DRAIN_SECONDS") or 10),
            rasa_model=_env("RASA_MODEL") or None,
            dissuasion_secret=_env("DISSUASION_SECRET")
            or ("jmt-development-dissuasion" if development else None),
            # Development's stand-in accepts any template id; production sets the real one.
            wechat_warning_template_id=_env("WECHAT_WARNING_TEMPLATE_ID")
            or (DEV_WARNING_TEMPLATE_ID if development else None),
            broadcast_rate_per_second=float(_env("BROADCAST_RATE_PER_SECOND") or 20),
            broadcast_mass_send=(_env("BROADCAST_MASS_SEND") or "0").strip() == "1",
            # Unset in production: /api/dingtalk/callback answers 503 (the feature is off).
            dingtalk_app_secret=_env("DINGTALK_APP_SECRET")
            or ("jmt-development-dingtalk-app" if development else None),
            # Development: the simulator's stand-in of DingTalk's server API.
            dingtalk_app_key=_env("DINGTALK_APP_KEY")
            or (DEV_DINGTALK_APP_KEY if development else None),
            dingtalk_agent_id=_env("DINGTALK_AGENT_ID") or ("1000000001" if development else None),
            dingtalk_api_url=(
                _env("DINGTALK_API_URL")
                or (f"{local}/simulator/dingtalk" if development else "https://oapi.dingtalk.com")
            ).rstrip("/"),
            session_idle_minutes=int(_env("SESSION_IDLE_MINUTES") or 120),
            session_max_hours=int(_env("SESSION_MAX_HOURS") or 12),
        )

    @property
    def rasa_tracker_url(self) -> str | None:
        """Rasa's SQL tracker store, for retention: PostgreSQL from the `RASA_DB_*` values of
        bot/endpoints.production.yml, else the SQLite file of bot/endpoints.yml."""
        host = _env("RASA_DB_HOST")
        if host:
            user = quote(_env("RASA_DB_USER") or "", safe="")
            password = quote(_env("RASA_DB_PASSWORD") or "", safe="")
            credentials = f"{user}:{password}@" if user else ""
            port, name = _env("RASA_DB_PORT") or "5432", _env("RASA_DB_NAME") or "rasa"
            return f"postgresql://{credentials}{host}:{port}/{name}"
        path = _env("RASA_TRACKER_DB")
        if not path:
            return None
        resolved = Path(path) if Path(path).is_absolute() else REPO_ROOT / path
        return f"sqlite:///{resolved}"

    @property
    def development(self) -> bool:
        return self.environment == "development"

    def problems(self) -> list[str]:
        """Every setting this environment cannot run with, each with how to fix it.

        Development is only refused what is invalid everywhere (an unknown WECHAT_MODE);
        production (any JMT_ENV but `development`) also refuses every development default.
        """
        found: list[str] = []
        if self.wechat_mode not in WECHAT_MODES:
            found.append(
                f"WECHAT_MODE={self.wechat_mode!r} is unknown: use one of {', '.join(WECHAT_MODES)}"
            )
        if self.log_level not in LOG_LEVELS:
            found.append(
                f"LOG_LEVEL={self.log_level!r} is unknown: use one of {', '.join(LOG_LEVELS)}"
            )
        if self.session_idle_minutes <= 0 or self.session_max_hours <= 0:
            found.append("SESSION_IDLE_MINUTES and SESSION_MAX_HOURS must be positive")
        if self.development:
            return found
        if self.simulator_enabled:
            found.append(
                "JMT_SIMULATOR=1 mounts the WeChat/DingTalk/governance simulator, which signs "
                "anything with the real secrets: unset JMT_SIMULATOR"
            )
        for name, value in self._secrets():
            if value and value in DEVELOPMENT_DEFAULTS:
                found.append(f"{name} is a development placeholder: set the real value")
            elif value and value.startswith("replace-"):
                found.append(f"{name} is the .env.example placeholder: set the real value")
        if not self.secret_key:
            found.append("SECRET_KEY is missing: set 32+ random bytes (openssl rand -hex 32)")
        elif len(self.secret_key.encode()) < 32:
            found.append("SECRET_KEY is shorter than 32 bytes: use openssl rand -hex 32")
        for name, value in (
            ("WECHAT_TOKEN", self.wechat_token),
            ("WECHAT_APP_ID", self.wechat_app_id),
            ("WECHAT_APP_SECRET", self.wechat_app_secret),
        ):
            if not value:
                found.append(f"{name} is missing: copy it from the 公众号 console")
        if self.wechat_mode in ("compat", "safe") and not self.wechat_encoding_aes_key:
            found.append(
                f"WECHAT_MODE={self.wechat_mode} needs WECHAT_ENCODING_AES_KEY "
                "(the 43-character EncodingAESKey of the 公众号 console)"
            )
        if not self.dingtalk_secret:
            found.append("DINGTALK_SECRET is missing: the robot's 加签 secret (SEC...)")
        if not self.rasa_token:
            found.append("RASA_TOKEN is missing: set a random token (openssl rand -hex 32)")
        if not self.actions_token:
            found.append("ACTIONS_TOKEN is missing: set a random token (openssl rand -hex 32)")
        if not self.metrics_token:
            found.append(
                "METRICS_TOKEN is missing: GET /metrics needs a bearer token in production "
                "(openssl rand -hex 32; give it to Prometheus as its bearer token)"
            )
        if self.governance_webhook_url and not self.governance_secret:
            found.append(
                "GOVERNANCE_WEBHOOK_URL is set without GOVERNANCE_SECRET: set the secret "
                "that signs outgoing tickets"
            )
        if not self.governance_callback_secret:
            found.append(
                "GOVERNANCE_CALLBACK_SECRET is missing: set the secret that verifies the "
                "platform's status callbacks"
            )
        elif self.governance_callback_secret == self.governance_secret:
            found.append(
                "GOVERNANCE_CALLBACK_SECRET equals GOVERNANCE_SECRET: one secret per direction"
            )
        if not self.dissuasion_secret:
            found.append(
                "DISSUASION_SECRET is missing: set the secret that verifies the warning "
                "platform's signed leads (/api/dissuasion/leads)"
            )
        elif self.dissuasion_secret in (self.governance_secret, self.governance_callback_secret):
            found.append("DISSUASION_SECRET equals a governance secret: one secret per partner")
        partners = {
            "DINGTALK_SECRET": self.dingtalk_secret,
            "GOVERNANCE_SECRET": self.governance_secret,
            "GOVERNANCE_CALLBACK_SECRET": self.governance_callback_secret,
            "DISSUASION_SECRET": self.dissuasion_secret,
            "WECHAT_APP_SECRET": self.wechat_app_secret,
        }
        for name, value in partners.items():
            if self.dingtalk_app_secret and self.dingtalk_app_secret == value:
                found.append(f"DINGTALK_APP_SECRET equals {name}: one secret per partner")
        found += self._work_notice_problems()
        if self.broadcast_rate_per_second <= 0:
            found.append("BROADCAST_RATE_PER_SECOND must be positive (sends per second)")
        if self.retention_days <= 0:
            found.append(
                "RETENTION_DAYS must be a positive number of days: residents' words are not "
                "kept for ever (180 unless the bureau's rules say otherwise)"
            )
        if self.database_url.startswith("sqlite"):
            found.append(
                "DATABASE_URL is SQLite: use PostgreSQL (postgresql://user:password@host/db)"
            )
        for name, url in (
            ("WECHAT_API_BASE_URL", self.wechat_api_base_url),
            ("DINGTALK_WEBHOOK_URL", self.dingtalk_webhook_url),
            ("GOVERNANCE_WEBHOOK_URL", self.governance_webhook_url),
        ):
            if url and "/simulator/" in url:
                found.append(f"{name} points at the development simulator: set the real URL")
        # ---- iss11: warnings go out as template messages; without the real 预警通知
        # template id every templated warning fails (gateway/broadcast_worker.py NO_TEMPLATE).
        template = (self.wechat_warning_template_id or "").strip()
        if not template:
            found.append(
                "WECHAT_WARNING_TEMPLATE_ID is missing: set the 预警通知 template id of the "
                "公众号 (模板消息 in its console); templated warnings cannot be sent without it"
            )
        elif (
            template == DEV_WARNING_TEMPLATE_ID
            or template in DEVELOPMENT_DEFAULTS
            or template.startswith(("replace-", "SIMULATED"))
        ):
            found.append(
                "WECHAT_WARNING_TEMPLATE_ID is a development placeholder: set the real 预警通知 "
                "template id of the 公众号"
            )
        return found

    def _work_notice_problems(self) -> list[str]:
        """Personal work notifications (issue 12) are off without DINGTALK_APP_KEY; with
        it, production needs the app's secret and agent id, and DingTalk's real API."""
        if not self.dingtalk_app_key:
            return []
        found = []
        if self.dingtalk_app_key == DEV_DINGTALK_APP_KEY:
            found.append("DINGTALK_APP_KEY is a development placeholder: set the app's AppKey")
        if not self.dingtalk_app_secret:
            found.append(
                "DINGTALK_APP_KEY is set without DINGTALK_APP_SECRET (the app's AppSecret)"
            )
        if not self.dingtalk_agent_id:
            found.append("DINGTALK_APP_KEY is set without DINGTALK_AGENT_ID (the app's AgentId)")
        if "/simulator/" in self.dingtalk_api_url:
            found.append("DINGTALK_API_URL points at the development simulator: set the real URL")
        return found

    def _secrets(self) -> list[tuple[str, str | None]]:
        return [
            ("SECRET_KEY", self.secret_key),
            ("WECHAT_TOKEN", self.wechat_token),
            ("WECHAT_APP_ID", self.wechat_app_id),
            ("WECHAT_APP_SECRET", self.wechat_app_secret),
            ("WECHAT_ENCODING_AES_KEY", self.wechat_encoding_aes_key),
            ("DINGTALK_SECRET", self.dingtalk_secret),
            ("GOVERNANCE_SECRET", self.governance_secret),
            ("GOVERNANCE_CALLBACK_SECRET", self.governance_callback_secret),
            ("DISSUASION_SECRET", self.dissuasion_secret),
            ("DINGTALK_APP_SECRET", self.dingtalk_app_secret),
            ("RASA_TOKEN", self.rasa_token),
            ("ACTIONS_TOKEN", self.actions_token),
            ("METRICS_TOKEN", self.metrics_token),
        ]

    def check_for_production(self) -> None:
        """Refuse to start, naming every wrong setting at once (fail closed)."""
        found = self.problems()
        if found:
            raise SettingsError(refusal(self.environment, found))


def refusal(environment: str, problems: list[str]) -> str:
    """One message an operator can act on: every problem, and the way out for local use."""
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return (
        f"JMT_ENV={environment or 'production'}: refusing to start, "
        f"{len(problems)} setting(s) must change:\n{lines}\n"
        "(Set them in the environment or .env; see .env.example. For local development "
        "only, set JMT_ENV=development.)"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
