"""
The token page's FastAPI app: the HTML page at ``/``, its figures as JSON at ``/api/status``.

Both answer only a user who may read the DAG (:mod:`parkmobile_token.ui.auth`). The static files
(style sheet, scripts, icon) hold no data and are served to anyone. Nothing comes from another host.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from parkmobile_token.clock import utcnow
from parkmobile_token.ui import DAG_ID, URL_PREFIX
from parkmobile_token.ui.auth import DagReader  # noqa: TC001 (FastAPI reads route annotations at run time)
from parkmobile_token.ui.data import TokenHealthReader
from parkmobile_token.ui.health import TokenHealth, build_health, iso, to_json
from parkmobile_token.ui.timeline import OUTCOME_LABELS, build_timeline, human_duration

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

log = logging.getLogger(__name__)

#: The browser may keep the page and its JSON for no time at all: they change every second.
NO_STORE = {"Cache-Control": "no-store"}


class TokenTablesUnreadableError(Exception):
    """The token table or the refresh history could not be read."""


def create_app(
    reader_factory: Callable[[], TokenHealthReader] = TokenHealthReader.from_config,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """
    Build the app.

    :param reader_factory: returns the reader of the tables, called once per request so that a
        changed connection or setting takes effect without a restart.
    :param clock: the time every period ends at.
    """
    app = FastAPI(title="ParkMobile token", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Environment(
        loader=PackageLoader("parkmobile_token.ui", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters["duration"] = human_duration
    templates.filters["percent"] = _percent
    templates.filters["ms"] = _milliseconds
    app.mount("/static", StaticFiles(packages=[("parkmobile_token.ui", "static")]), name="static")

    def read_health() -> TokenHealth:
        reader = reader_factory()
        try:
            snapshot = reader.read(clock())
        except Exception as err:  # any failure to read (no connection, server down, no grant): a 503
            conn_id = reader.tokens.mysql_conn_id
            log.warning("Could not read the token tables on connection %s", conn_id, exc_info=True)
            raise TokenTablesUnreadableError(_describe(err, conn_id)) from err
        return build_health(snapshot, margin_s=reader.margin_s)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(user: DagReader) -> HTMLResponse:
        try:
            health = read_health()
        except TokenTablesUnreadableError as err:
            html = templates.get_template("unavailable.html").render(reason=str(err), dag_id=DAG_ID)
            return HTMLResponse(html, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=NO_STORE)
        html = templates.get_template("page.html").render(
            health=health,
            timelines=[build_timeline(period) for period in health.periods],
            outcome_labels=OUTCOME_LABELS,
            user_name=user.get_name(),
            dag_id=DAG_ID,
            iso=iso,
        )
        return HTMLResponse(html, headers=NO_STORE)

    @app.get("/api/status")
    def api_status(user: DagReader) -> JSONResponse:
        try:
            health = read_health()
        except TokenTablesUnreadableError as err:
            return JSONResponse(
                {"detail": str(err)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=NO_STORE
            )
        return JSONResponse(to_json(health), headers=NO_STORE)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> Response:
        """Answer a refused page with a short HTML page that links to the login; the API with JSON."""
        headers = {**(exc.headers or {}), **NO_STORE}
        if not _asks_for_the_page(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        html = templates.get_template("refused.html").render(
            status_code=exc.status_code,
            detail=exc.detail,
            dag_id=DAG_ID,
            login_url=_login_url(str(request.url)) if exc.status_code == status.HTTP_401_UNAUTHORIZED else "",
        )
        return HTMLResponse(html, status_code=exc.status_code, headers=headers)

    return app


def _asks_for_the_page(request: Request) -> bool:
    """Whether a browser asked for the page itself (not the JSON, not a static file)."""
    is_page = request.url.path.rstrip("/").endswith(URL_PREFIX)
    return is_page and "text/html" in request.headers.get("accept", "")


def _login_url(next_url: str) -> str | None:
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return str(get_auth_manager().get_url_login(next_url=next_url))
    except Exception:  # a login link is a courtesy; the 401 stands without it
        log.debug("The auth manager gave no login URL", exc_info=True)
        return None


def _describe(err: BaseException, conn_id: str) -> str:
    """Name a database error by class and code only: its message may name hosts and users."""
    code = err.args[0] if err.args and isinstance(err.args[0], int) else None
    return f"the token tables on connection {conn_id!r} could not be read: {type(err).__name__}" + (
        f" ({code})" if code else ""
    )


def _percent(share: Any) -> str:
    return "n/a" if share is None else f"{share * 100:.2f} %"


def _milliseconds(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"
