"""The dashboard's page and files: served without a key, local only, revalidated by ETag."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.routes import dashboard
from tests.service.conftest import Api, assert_error

DASHBOARD_DIR = dashboard.DASHBOARD_DIR
CONTENT_TYPES = {
    ".html": ("text/html",),
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
}
# `http://`, `https://` or a protocol-relative `//host` opened by a quote, a bracket or
# `=`, as in src="//cdn.example" or url(//host/font.woff). Any such text is a request
# to another host, since the machines the service runs on may have no internet.
EXTERNAL_URL = re.compile(r"https?://|[\"'(=`]\s*//[^/\s]", re.IGNORECASE)
JS_IMPORT = re.compile(r"""^\s*import\s[^;]*?from\s+["'](\./[^"']+)["']""", re.MULTILINE)


class _References(HTMLParser):
    """Collector of the src and href values of index.html."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.references.append(value)


def page_assets() -> list[str]:
    """Return the files index.html loads, and the modules those import, as URL paths."""
    parser = _References()
    parser.feed((DASHBOARD_DIR / "index.html").read_text(encoding="utf-8"))
    pending = [ref for ref in parser.references if not ref.startswith(("data:", "#"))]
    found: list[str] = []
    while pending:
        reference = pending.pop()
        if reference in found:
            continue
        found.append(reference)
        if reference.endswith(".js"):
            source = (DASHBOARD_DIR.parent / reference).read_text(encoding="utf-8")
            folder = reference.rsplit("/", 1)[0]
            pending.extend(f"{folder}/{name[2:]}" for name in JS_IMPORT.findall(source))
    return sorted(found)


def test_root_serves_page(api: Api) -> None:
    response = api.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="dashboard/app.js">' in response.text
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"]
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_page_assets_served(api: Api) -> None:
    assets = page_assets()
    assert "dashboard/app.js" in assets
    assert "dashboard/style.css" in assets
    assert "dashboard/charts.js" in assets  # found only through app.js's imports
    for asset in assets:
        response = api.client.get("/" + asset)
        assert response.status_code == 200, asset
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in CONTENT_TYPES[Path(asset).suffix], (asset, media_type)
        assert response.headers["x-content-type-options"] == "nosniff"


def test_every_file_is_loaded_by_page() -> None:
    loaded = {Path(asset).name for asset in page_assets()}
    on_disk = {path.name for path in DASHBOARD_DIR.iterdir()} - {"index.html"}
    assert on_disk - loaded == set()


@pytest.mark.parametrize("path", sorted(p.name for p in DASHBOARD_DIR.iterdir()))
def test_file_has_no_external_url(path: str) -> None:
    text = (DASHBOARD_DIR / path).read_text(encoding="utf-8")
    found = [match.group(0) for match in EXTERNAL_URL.finditer(text)]
    assert found == [], f"{path} refers to another host: {found}"


def test_external_url_pattern_matches() -> None:
    for text in ('src="https://cdn.example/x.js"', "url(//fonts.example/a.woff)",
                 "fetch('//api.example/v1')", "href=//host/x", "HTTP://HOST"):
        assert EXTERNAL_URL.search(text), text
    for text in ("// a comment", "x = 1;  // a comment", 'fetch("v1/jobs")', "a // b"):
        assert not EXTERNAL_URL.search(text), text


def test_page_needs_no_api_key(api: Api) -> None:
    assert api.client.get("/").status_code == 200
    assert api.client.get("/dashboard/app.js").status_code == 200
    assert_error(api.client.get("/v1/jobs"), 401, "missing_api_key")
    assert api.client.get("/v1/jobs", headers=api.headers).status_code == 200


def test_asset_etag_gives_304(api: Api) -> None:
    first = api.client.get("/dashboard/app.js")
    etag = first.headers["etag"]

    again = api.client.get("/dashboard/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "no-cache"

    weak = api.client.get("/dashboard/app.js", headers={"If-None-Match": f"W/{etag}"})
    assert weak.status_code == 304
    other = api.client.get("/dashboard/app.js", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200
    assert other.content == first.content


def test_page_etag_gives_304(api: Api) -> None:
    etag = api.client.get("/").headers["etag"]
    assert api.client.get("/", headers={"If-None-Match": etag}).status_code == 304


def test_asset_last_modified_gives_304(api: Api) -> None:
    last_modified = api.client.get("/dashboard/style.css").headers["last-modified"]
    response = api.client.get("/dashboard/style.css",
                              headers={"If-Modified-Since": last_modified})
    assert response.status_code == 304


def test_head_of_page(api: Api) -> None:
    response = api.client.head("/")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/absent.js",
        "/dashboard/",
        "/dashboard/%2e%2e/routes/dashboard.py",
        "/dashboard/..%2f..%2fpyproject.toml",
        "/dashboard/%2fetc%2fpasswd",
        "/dashboard//etc/passwd",
        "/dashboard/app.js%00.css",
    ],
)
def test_asset_outside_folder_not_found(api: Api, path: str) -> None:
    error = assert_error(api.client.get(path), 404, "not_found")
    assert "Traceback" not in error["message"]


def test_post_to_page_not_allowed(api: Api) -> None:
    assert_error(api.client.post("/"), 405, "method_not_allowed")
    assert_error(api.client.put("/dashboard/app.js"), 405, "method_not_allowed")


def test_routes_not_in_openapi(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/dashboard")]


def test_missing_files_named_in_404(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "DASHBOARD_DIR", tmp_path / "absent")
    error = assert_error(api.client.get("/"), 404, "not_found")
    assert str(tmp_path / "absent") in error["message"]
    assert "reinstall" in error["message"]
