"""The status dashboard: its page at `/` and its files under `/dashboard/`.

The files in `service/dashboard/` are plain HTML, CSS and JavaScript modules, served as
they are (there is no build step). The page calls the `/v1` API from the browser with
the user's API key, so these routes need no key: they serve only those static files.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from service.errors import RouteNotFound

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"

# `no-cache` lets a browser keep a copy but makes it revalidate (ETag or
# Last-Modified, with a 304 when unchanged) before each use, so an upgraded server never runs
# with a mix of old and new files.
CACHE_CONTROL = "no-cache"

# The page loads scripts, styles and data from this server only. Inline scripts and
# style attributes are refused too, which also blunts any markup injected by a job's
# text (the scripts insert API strings as text, never as HTML).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class DashboardFiles(StaticFiles):
    """Static files with revalidation and browser security headers on every response."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = CACHE_CONTROL
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


# check_dir=False: an install without the files still serves the API, and `/` then
# returns a 404 that names the missing folder.
_files = DashboardFiles(directory=DASHBOARD_DIR, check_dir=False)

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def page(request: Request) -> Response:
    if not (DASHBOARD_DIR / "index.html").is_file():
        raise RouteNotFound(
            f"the dashboard files are missing from {DASHBOARD_DIR}; reinstall the package "
            "with its data files, or use the /v1 API directly"
        )
    return await _files.get_response("index.html", request.scope)


@router.api_route("/dashboard/{path:path}", methods=["GET", "HEAD"])
async def asset(path: str, request: Request) -> Response:
    # StaticFiles refuses absolute paths and anything that resolves outside its folder.
    return await _files.get_response(os.path.normpath(path), request.scope)
