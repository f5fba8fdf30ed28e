"""The FastAPI application: `uvicorn gateway.app:app` (or `create_app()` in tests)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from casework import db, logconfig, logsafe, posture
from casework.settings import Settings, get_settings
from gateway import observability, protocol
from gateway.broadcast_worker import BroadcastWorker
from gateway.console import routes as console
from gateway.dispatcher import Dispatcher
from gateway.outbox_worker import OutboxWorker
from gateway.ratelimit import rate_limiter_from_settings
from gateway.routes import (
    auth,
    broadcasts,
    cases,
    conversations,
    dingtalk,
    dissuasion,
    events,
    health,
    metrics,
    nlu,
    prometheus,
    tickets,
    vocabulary,
    webhooks,
    wechat,
)
from gateway.service import PASSIVE_BUDGET, ActionServerProbe, InboundService
from integrations.governance import client_from_settings
from integrations.notify import notifier_from_settings
from integrations.rasa import RasaClient
from integrations.wechat import SqlTokenStorage, WeChatApi, WeChatMessenger

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    start_outbox: bool = True,
    rasa: RasaClient | None = None,
    passive_budget: float | None = None,
    probe_actions: bool = True,
) -> FastAPI:
    """The app. Tests pass their own settings, a stand-in Rasa client and a shorter
    passive-reply budget; production uses the environment."""
    settings = settings or get_settings()
    settings.check_for_production()
    # One format with request ids for our lines and uvicorn's (it applied its own config
    # before importing the app, in each worker), scrubbed; LOG_LEVEL.
    logconfig.configure(settings.log_level)
    logsafe.install()  # before uvicorn logs the first request: no tokens in access logs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.migrate(settings.database_url)
        if not settings.development:  # fail closed on demo accounts too (issue 8)
            with db.session_scope(settings.database_url) as session:
                posture.check_production_database(session=session)
        client = rasa or RasaClient.from_settings(settings)
        worker = None
        broadcaster = None
        if settings.wechat_app_id and settings.wechat_app_secret:
            api = WeChatApi(
                settings.wechat_app_id,
                settings.wechat_app_secret,
                base_url=settings.wechat_api_base_url,
                storage=SqlTokenStorage(settings.database_url),
            )
            worker = OutboxWorker(WeChatMessenger(api), database_url=settings.database_url)
            # Warnings: this worker's share of the account-wide rate (issue 11).
            broadcaster = BroadcastWorker(
                WeChatMessenger(api),
                database_url=settings.database_url,
                template_id=settings.wechat_warning_template_id,
                rate_per_second=settings.broadcast_rate_per_second
                / max(settings.gateway_workers, 1),
                mass_send=settings.broadcast_mass_send,
            )
            if start_outbox:
                worker.start()
                broadcaster.start()
        else:
            logger.warning("WECHAT_APP_ID/SECRET not set: customer-service messages stay queued")
        app.state.rasa = client
        app.state.outbox = worker
        app.state.broadcaster = broadcaster
        probe = ActionServerProbe(settings.action_server_url if probe_actions else None)
        app.state.inbound = InboundService(
            rasa=client,
            database_url=settings.database_url,
            outbox_wakeup=worker.wakeup if worker else None,
            action_server=probe,
            tracker_url=settings.rasa_tracker_url,
            passive_budget=PASSIVE_BUDGET if passive_budget is None else passive_budget,
            rate_limiter=rate_limiter_from_settings(settings),  # Redis when REDIS_URL is set
        )
        dispatcher = Dispatcher(
            database_url=settings.database_url,
            notifier=notifier_from_settings(settings),
            governance=client_from_settings(settings),
            console_url=settings.console_url,
            retention_days=settings.retention_days,
            tracker_url=settings.rasa_tracker_url,
        )
        app.state.dispatcher = dispatcher
        if start_outbox:  # tests drive the background work themselves
            dispatcher.start()
        yield
        await dispatcher.stop()
        await health.close(app)
        await app.state.inbound.drain()
        await probe.close()
        if worker is not None:
            await worker.stop()
        if broadcaster is not None:
            await broadcaster.stop()
        await client.close()

    app = FastAPI(
        title="警民通 gateway",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.crypto = protocol.crypto_for(
        settings.wechat_token or "", settings.wechat_encoding_aes_key, settings.wechat_app_id
    )
    protocol.check_mode(settings.wechat_mode, app.state.crypto)  # unknown mode: no start
    for router in (
        wechat.router,
        health.router,
        auth.router,
        conversations.router,
        cases.router,
        tickets.router,
        webhooks.router,
        dissuasion.router,
        dissuasion.stop_payment_router,
        dingtalk.router,
        broadcasts.router,
        events.router,
        metrics.router,
        prometheus.router,
        nlu.router,
        vocabulary.router,
        console.router,
    ):
        app.include_router(router)
    app.mount(console.STATIC_PREFIX, console.ConsoleStatic(directory=console.STATIC_DIR))
    if settings.simulator_enabled:
        from gateway.simulator import partners
        from gateway.simulator import routes as simulator

        app.include_router(simulator.router)
        app.include_router(partners.router)
        app.mount(simulator.STATIC_PREFIX, console.ConsoleStatic(directory=simulator.STATIC_DIR))

    # The pages' Content-Security-Policy, nosniff, no-referrer, no framing, caching: one
    # middleware for every response under /console and /simulator.
    app.add_middleware(console.SecurityHeaders, prefixes=console.PAGE_PREFIXES)
    app.add_middleware(observability.RequestContext)  # request id, X-Request-ID, metrics

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "服务器内部错误，请稍后再试"}, status_code=500)

    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn gateway.app:app` builds the app on first access, not at import time.
    if name == "app":
        return create_app()
    raise AttributeError(name)
