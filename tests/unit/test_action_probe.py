"""The gateway's action-server probe: the first check waits for the answer, later ones
refresh in the background so no resident's message waits for the probe."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from gateway.service import ActionServerProbe
from tests.live_server import LiveServer
from tests.rasa_replicas import refused_url


def action_server(state: dict) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> JSONResponse:
        state["probes"] += 1
        return JSONResponse({"status": "ok"}, status_code=200 if state["up"] else 503)

    return app


def test_the_first_check_waits_and_later_ones_refresh_in_the_background():
    state = {"up": True, "probes": 0}
    with LiveServer(action_server(state)) as server:

        async def scenario() -> list:
            probe = ActionServerProbe(server.url, every=0.0)
            try:
                seen = [await probe.up(), state["probes"]]  # waited: one probe
                state["up"] = False
                seen.append(await probe.up())  # still the known value; refresh started
                for _ in range(200):
                    await asyncio.sleep(0.01)
                    if probe._refresh is not None and probe._refresh.done():
                        break
                seen.append(await probe.up())  # the refreshed value
                return seen
            finally:
                await probe.close()

        first, probes_after_first, stale, refreshed = asyncio.run(scenario())
    assert (first, probes_after_first) == (True, 1)
    assert stale is True
    assert refreshed is False


def test_an_unreachable_action_server_is_down_at_the_first_check():
    async def check() -> bool:
        probe = ActionServerProbe(refused_url())
        try:
            return await probe.up()
        finally:
            await probe.close()

    assert asyncio.run(check()) is False


def test_without_an_action_server_url_nothing_is_probed():
    assert asyncio.run(ActionServerProbe(None).up()) is True
