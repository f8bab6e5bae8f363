"""/docs and /redoc load everything from the service itself: no CDN, so they work offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from app import docs_page
from app.main import create_app
from app.settings import Settings

EXPECTED_TYPE = {
    ".js": ("text/javascript", b"function"),
    ".css": ("text/css", b".swagger-ui"),
    ".png": ("image/png", b"\x89PNG"),
}


class _Refs(HTMLParser):
    """Every src= and href= of a page, and every url the inline scripts name."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._script = tag == "script"
        self.refs += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script:
            self.refs += re.findall(r"""url['"]?\s*:\s*['"]([^'"]+)['"]""", data)


def refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.refs


@pytest.fixture
def client() -> Iterator[TestClient]:
    # no model is needed for the pages: the registry is a dead port
    settings = Settings(reload_interval_seconds=0, mlflow_tracking_uri="http://127.0.0.1:9")
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(("page", "script"), [("/docs", "swagger-ui-bundle.js"),
                                               ("/redoc", "redoc.standalone.js")])  # fmt: skip
def test_pages_reference_only_local_assets_and_each_answers(
    client: TestClient, page: str, script: str
) -> None:
    r = client.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text
    assert "https://" not in r.text
    found = refs(r.text)
    assert f"{docs_page.ASSETS_PATH}/{script}" in found
    assert f"{docs_page.ASSETS_PATH}/favicon.png" in found
    for url in found:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        if url == "/openapi.json":
            assert answer.json()["openapi"].startswith("3.")
            continue
        suffix = url[url.rindex(".") :]
        media_type, marker = EXPECTED_TYPE[suffix]
        assert answer.headers["content-type"].startswith(media_type), url
        assert marker in answer.content[:4096] or marker in answer.content, url


def test_swagger_ui_is_a_release_that_renders_openapi_3_1(client: TestClient) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from its 5.x releases on (4.x
    shows "Unable to render this definition")."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get(f"{docs_page.ASSETS_PATH}/swagger-ui-bundle.js").text
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.(\d+)\.(\d+)"', bundle)
    assert version is not None
    assert int(version.group(1)) >= 5


def test_the_oauth2_redirect_page_answers(client: TestClient) -> None:
    r = client.get("/docs/oauth2-redirect")
    assert r.status_code == 200
    assert "https://" not in r.text


@pytest.mark.parametrize(
    "path",
    ["/docs/assets/index.html", "/docs/assets/../main.py", "/docs/assets/", "/docs/assets/x.js"],
)
def test_only_the_named_assets_are_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_asset_requests_are_counted_by_their_own_route(client: TestClient) -> None:
    client.get(f"{docs_page.ASSETS_PATH}/swagger-ui.css")
    metrics = client.get("/metrics").text
    assert f'route="{docs_page.ASSETS_PATH}/swagger-ui.css"' in metrics
