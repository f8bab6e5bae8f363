"""/docs (Swagger UI) and /redoc with their JavaScript, CSS and icon served by the service
itself, so the pages work where the browser reaches no CDN (an offline machine, a locked-down
cluster). FastAPI's own pages load them from a CDN and are blank offline.

The files come from the pinned `fastapi-offline` package (requirements/constraints.txt); only
its `static/` folder is used. Each file has one fixed route, so nothing else on disk can be
asked for and the request metrics keep one label per file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_PATH = "/docs/assets"
#: file name -> media type, of every file the two pages load
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_CACHE = "public, max-age=86400"


def assets_dir() -> Path:
    """fastapi-offline's static folder, found without importing the package."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("fastapi-offline is not installed (requirements/app.in)")
    return Path(spec.origin).parent / "static"


def install(app: FastAPI) -> None:
    """Adds /docs, its OAuth2 redirect page, /redoc and their assets to an app created with
    ``docs_url=None, redoc_url=None``."""
    static = assets_dir()
    for name, media_type in ASSETS.items():
        path = static / name
        if not path.is_file():
            raise RuntimeError(f"{path} is missing: reinstall fastapi-offline")
        app.add_api_route(
            f"{ASSETS_PATH}/{name}",
            _file_endpoint(path, media_type),
            methods=["GET"],
            include_in_schema=False,
        )

    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        oauth2_redirect_url, swagger_ui_redirect, methods=["GET"], include_in_schema=False
    )
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)


def _file_endpoint(path: Path, media_type: str) -> Callable[[], Awaitable[FileResponse]]:
    async def serve() -> FileResponse:
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": _CACHE})

    return serve
