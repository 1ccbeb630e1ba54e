"""Web pages in Chinese (Jinja2): sign-in, 我的画像, 我的选学菜单, 群体画像, 训后成效.

Pages carry no data themselves; their scripts call the JSON API with the token kept in the browser, so the
API's access rules are the only ones there are.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

# path -> (template, page title)
PAGES = {
    "/": ("index.html", "教师发展推荐"),
    "/login": ("login.html", "登录"),
    "/me/portrait": ("portrait.html", "我的画像"),
    "/me/menu": ("menu.html", "我的选学菜单"),
    "/trainer/cohorts": ("cohorts.html", "群体画像"),
    "/trainer/effects": ("effects.html", "训后成效"),
}


def _page(path: str, template: str, title: str) -> None:
    def render(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, template, {"title": title})

    router.add_api_route(path, render, methods=["GET"], name=template.removesuffix(".html"))


for _path, (_template, _title) in PAGES.items():
    _page(_path, _template, _title)


@router.get("/api/docs")
def docs(request: Request) -> HTMLResponse:
    """Swagger UI on the service's OpenAPI, its assets vendored in api/static/swagger (no CDN, no inline
    script, so the pages' CSP holds for it too)."""
    return TEMPLATES.TemplateResponse(
        request, "docs.html", {"title": request.app.title, "openapi_url": request.app.openapi_url}
    )
