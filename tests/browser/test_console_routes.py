"""The console's pages and static files over HTTP (no browser needed)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.console import routes


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.include_router(routes.router)
    return TestClient(app)


@pytest.mark.parametrize(
    ("path", "script"),
    [
        ("/console/login", "login.js"),
        ("/console", "queue.js"),
        ("/console/cases/7", "case.js"),
        ("/console/tickets", "tickets.js"),
        ("/console/dissuasion", "dissuasion.js"),
        ("/console/broadcasts", "broadcasts.js"),
        ("/console/metrics", "metrics.js"),
    ],
)
def test_pages_are_shells_with_a_strict_policy(client: TestClient, path: str, script: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'src="/console/static/{script}"' in page.text
    assert 'src="/console/static/console.js"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline scripts: the policy would block them
    assert "http://" not in page.text and "https://" not in page.text  # nothing external


def test_case_ids_are_numbers(client: TestClient) -> None:
    assert client.get("/console/cases/abc").status_code == 422


@pytest.mark.parametrize("name", sorted(routes.STATIC_FILES))
def test_static_files_are_served_with_their_type_and_an_etag(client: TestClient, name: str) -> None:
    answer = client.get(f"/console/static/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == routes.STATIC_FILES[name]
    assert answer.headers["x-content-type-options"] == "nosniff"
    again = client.get(f"/console/static/{name}", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "name", ["routes.py", "..%2Froutes.py", "..%2F..%2Fapp.py", "missing.js", "__init__.py"]
)
def test_only_listed_static_files_are_served(client: TestClient, name: str) -> None:
    assert client.get(f"/console/static/{name}").status_code == 404


def test_static_scripts_never_write_html(client: TestClient) -> None:
    for name in routes.STATIC_FILES:
        if name.endswith(".js"):
            source = client.get(f"/console/static/{name}").text
            assert "innerHTML" not in source and "insertAdjacentHTML" not in source, name
            assert "document.write" not in source, name
