"""/docs documents the console API by itself (issue 8): every `/api` route declares its
`response_model` (a public schema), or — for the two answers that are not JSON, the event
stream and the CSV download — the media type it answers with. A new route that returns a
hand-built dict or an ORM object without a schema fails here."""

from __future__ import annotations

from fastapi.routing import APIRoute

from gateway.app import create_app
from tests.gateway.conftest import StandInRasa, gateway_settings

# Routes whose 200 is not JSON, and the media type their OpenAPI entry must name.
NOT_JSON = {
    ("GET", "/api/events"): "text/event-stream",
    ("GET", "/api/metrics.csv"): "text/csv",
}


def _api_routes(app) -> list[tuple[str, str, APIRoute]]:
    return [
        (method, route.path, route)
        for route in app.routes
        if isinstance(route, APIRoute) and route.path.startswith("/api")
        for method in sorted(route.methods - {"HEAD"})
    ]


def test_every_api_route_declares_what_it_answers(sqlite_url, monkeypatch):
    app = create_app(
        gateway_settings(sqlite_url, monkeypatch),
        start_outbox=False,
        rasa=StandInRasa(),
        probe_actions=False,
    )
    spec = app.openapi()
    undeclared, not_listed = [], []
    for method, path, route in _api_routes(app):
        assert route.include_in_schema, f"{method} {path} is hidden from /docs"
        answers = spec["paths"][path][method.lower()]["responses"]
        if route.status_code == 204:
            assert set(answers) >= {"204"}, f"{method} {path}: 204 not in /docs"
            continue  # No Content: there is no body to declare (POST /api/auth/logout)
        ok = answers.get("200") or answers["202"]  # the leads webhook answers 202
        if (method, path) in NOT_JSON:
            if NOT_JSON[method, path] not in ok.get("content", {}):
                undeclared.append(f"{method} {path}: no {NOT_JSON[method, path]} in /docs")
            continue
        if route.response_model is None:
            not_listed.append(f"{method} {path}")
            continue
        schema = ok["content"]["application/json"]["schema"]
        assert schema, f"{method} {path}: an empty response schema"
    assert not undeclared, undeclared
    assert not not_listed, f"/api routes without response_model (or a NOT_JSON entry): {not_listed}"
    gone = set(NOT_JSON) - {(method, path) for method, path, _ in _api_routes(app)}
    assert not gone, f"NOT_JSON rows whose route is gone: {gone}"
