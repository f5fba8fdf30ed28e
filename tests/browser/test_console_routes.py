"""The console's pages and static files over HTTP (no browser needed), through the app as
`gateway/app.py` builds it: templates, `StaticFiles` and the one security-header middleware."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.console import routes
from tests.gateway.conftest import StandInRasa, gateway_settings

PAGES = [
    ("/console/login", "login.js"),
    ("/console", "queue.js"),
    ("/console/cases/7", "case.js"),
    ("/console/tickets", "tickets.js"),
    ("/console/dissuasion", "dissuasion.js"),
    ("/console/broadcasts", "broadcasts.js"),
    ("/console/metrics", "metrics.js"),
    ("/console/nlu", "nlu.js"),
]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    settings = gateway_settings(f"sqlite:///{tmp_path / 'unused.sqlite3'}", monkeypatch)
    app = create_app(settings, start_outbox=False, rasa=StandInRasa(), probe_actions=False)
    return TestClient(app)  # no lifespan: pages and static files need no database


def _strict(headers) -> None:
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(("path", "script"), PAGES)
def test_pages_are_shells_with_a_strict_policy(client: TestClient, path: str, script: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert f'src="/console/static/{script}"' in page.text
    assert 'src="/console/static/console.js"' in page.text
    _strict(page.headers)
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline scripts: the policy would block them
    assert "<style" not in page.text and " style=" not in page.text  # nor inline style
    assert not re.search(r"<[^>]+\son[a-z]+=", page.text)  # no inline event handlers
    assert "http://" not in page.text and "https://" not in page.text  # nothing external
    assert "<!--#include" not in page.text  # every include was resolved


def test_the_current_page_is_marked_in_the_nav(client: TestClient) -> None:
    page = client.get("/console/tickets").text
    assert page.count('aria-current="page"') == 1
    assert re.search(r'href="/console/tickets"[^>]*aria-current="page"', page)
    assert 'aria-current="page"' not in client.get("/console/login").text


def test_case_ids_are_numbers(client: TestClient) -> None:
    assert client.get("/console/cases/abc").status_code == 422


def test_every_template_is_served_by_a_route(client: TestClient) -> None:
    names = {p.stem for p in routes.TEMPLATE_DIR.glob("*.html")} - {"topbar"}
    served = {script.removesuffix(".js") for _, script in PAGES}
    assert names == served


@pytest.mark.parametrize("name", routes.static_files())
def test_static_files_are_served_with_their_type_and_an_etag(client: TestClient, name: str) -> None:
    answer = client.get(f"/console/static/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == routes.STATIC_TYPES["." + name.rsplit(".", 1)[1]]
    _strict(answer.headers)
    assert answer.headers["cache-control"] == "no-cache"  # revalidated by its ETag
    again = client.get(f"/console/static/{name}", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


def test_scripts_and_styles_have_their_pinned_types(client: TestClient) -> None:
    js = client.get("/console/static/console.js").headers["content-type"]
    css = client.get("/console/static/console.css").headers["content-type"]
    assert (js, css) == ("text/javascript; charset=utf-8", "text/css; charset=utf-8")


@pytest.mark.parametrize(
    "name",
    [
        "routes.py",
        "..%2Froutes.py",
        "..%2F..%2Fapp.py",
        "../routes.py",
        "missing.js",
        "__init__.py",
        "",  # the directory itself: never listed
        ".",
    ],
)
def test_only_static_files_are_served(client: TestClient, name: str) -> None:
    answer = client.get(f"/console/static/{name}")
    assert answer.status_code == 404
    assert "console.js" not in answer.text


def test_other_routes_do_not_get_the_page_headers(client: TestClient) -> None:
    answer = client.get("/openapi.json")
    assert "content-security-policy" not in answer.headers


def test_static_scripts_never_write_html(client: TestClient) -> None:
    for name in routes.static_files():
        if name.endswith(".js"):
            source = client.get(f"/console/static/{name}").text
            assert "innerHTML" not in source and "insertAdjacentHTML" not in source, name
            assert "document.write" not in source, name
