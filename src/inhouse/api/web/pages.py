"""The shell: sign-in page, branding stylesheet and logo, static files, refusal pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from inhouse.api.deps import app_state
from inhouse.api.guard import guard
from inhouse.api.web.access import PageRefused, local_path, login_url, page_guard
from inhouse.api.web.render import page
from inhouse.auth.policy import Permission, allows

STATIC = Path(__file__).parent / "static"
LOGO_TYPES = {".svg": "image/svg+xml", ".png": "image/png"}

router = APIRouter(include_in_schema=False)


@router.get("/login", dependencies=[guard(Permission.PUBLIC)])
def login_page(request: Request, next: str = "/") -> Response:
    return page(request, "login.html", "Sign in", next_path=local_path(next))


@router.get("/account", dependencies=[page_guard(Permission.SIGNED_IN)])
def account_page(request: Request) -> Response:
    """Who is signed in, with which role and permissions."""
    return page(request, "account.html", "Your account", permissions=sorted(_granted(request)))


@router.get("/brand.css", dependencies=[guard(Permission.PUBLIC)])
def brand_css(request: Request) -> Response:
    """The branding colours as CSS custom properties (validated hex colours only)."""
    brand = app_state(request).settings.branding
    css = (
        ":root {\n"
        f"  --brand: {brand.primary_colour};\n"
        f"  --background: {brand.background_colour};\n"
        f"  --text: {brand.text_colour};\n"
        "}\n"
    )
    return Response(css, media_type="text/css", headers={"cache-control": "no-cache"})


@router.get("/brand/logo", dependencies=[guard(Permission.PUBLIC)])
def brand_logo(request: Request) -> Response:
    logo = app_state(request).settings.branding.logo_file
    if logo is None or logo.suffix.lower() not in LOGO_TYPES or not logo.is_file():
        return Response(status_code=404)
    return FileResponse(logo, media_type=LOGO_TYPES[logo.suffix.lower()])


def _granted(request: Request) -> set[str]:
    principal = request.state.principal
    return {p.value for p in Permission if p is not Permission.PUBLIC and allows(principal, p)}


async def page_refused(request: Request, exc: Exception) -> Response:
    """Not signed in: to /login and back; signed in without the permission: a 403 page."""
    assert isinstance(exc, PageRefused)
    if exc.status == 401:
        return RedirectResponse(login_url(exc.next_path), status_code=303)
    return page(request, "error.html", "Not allowed", status_code=exc.status, message=exc.message)


def install_web(app: FastAPI) -> None:
    """Static files and the refusal handler; the page routers are included with the others."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(PageRefused, page_refused)
