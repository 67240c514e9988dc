"""The interactive docs (/schema/swagger), served entirely by this app: they work offline.

Swagger UI's script and styles come from the `swagger-ui-py` package (its `static/` folder, read
from disk, never imported: the package's own code is for other frameworks), and the page starts
Swagger UI with a script of ours served next to them. Nothing is inline and nothing comes from
another host, so the docs' Content-Security-Policy (`api.security`) allows only 'self'.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath
from litestar.response import File
from litestar.router import Router

__all__ = ["OfflineSwaggerUI"]

#: Where the assets are served, below the OpenAPI router (`/schema`).
_ASSETS = "/swagger-ui"
_BOOTSTRAP_NAME = "init.js"
# `BaseLayout` needs no standalone preset (no top bar); validatorUrl null: the public validator's
# badge would be an image from another host.
_BOOTSTRAP = b"""// Starts Swagger UI; a file of its own so that the page needs no inline script.
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
"""
#: The package's files the page uses, and their media types; nothing else is served.
_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# The assets change only with the package version, so browsers may keep them for a day.
_CACHE = {"Cache-Control": "public, max-age=86400"}


def _static_dir() -> Path:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class OfflineSwaggerUI(OpenAPIRenderPlugin):
    """Swagger UI from this app's own files."""

    def __init__(self, path: str = "/swagger") -> None:
        super().__init__(path=path, favicon="", style="")
        self.static_dir = _static_dir()
        missing = [name for name in _FILES if not (self.static_dir / name).is_file()]
        if missing:
            raise RuntimeError(f"swagger-ui-py ships no {', '.join(missing)} in {self.static_dir}")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        document_url = self.get_openapi_json_route(request)
        assets = document_url.rsplit("/", 1)[0] + _ASSETS
        title = html.escape(openapi_schema["info"]["title"])
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{html.escape(document_url)}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/{_BOOTSTRAP_NAME}"></script>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        static_dir = self.static_dir

        @get(f"{_ASSETS}/{{name:str}}", sync_to_thread=False, include_in_schema=False)
        def asset(name: FromPath[str]) -> Response[bytes] | File:
            if name == _BOOTSTRAP_NAME:
                return Response(_BOOTSTRAP, media_type="text/javascript", headers=_CACHE)
            if name not in _FILES:
                raise NotFoundException(f"no docs asset {name!r}")
            return File(static_dir / name, media_type=_FILES[name], content_disposition_type="inline", headers=_CACHE)

        router.register(asset)
