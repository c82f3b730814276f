"""The Airflow plugin of the token page: the FastAPI app and its entry in Airflow's navigation."""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from parkmobile_token.ui import URL_PREFIX
from parkmobile_token.ui.asgi import LazyApp

NAME = "ParkMobile token"


def root_path() -> str:
    """Return the path Airflow is served under (``[api] base_url``), without a trailing slash."""
    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


class ParkMobileTokenUIPlugin(AirflowPlugin):
    """
    Serve the token page at ``/parkmobile-token/`` and list it under Browse in Airflow's navigation.

    The navigation entry opens the page inside Airflow's UI (an iframe on the same origin, so the
    user's login cookie comes along); the page and its JSON answer only a user who may read the DAG.
    """

    name = "parkmobile_token_ui"
    fastapi_apps = [  # noqa: RUF012 (AirflowPlugin declares these as class attributes)
        {"app": LazyApp("parkmobile_token.ui.app:create_app"), "url_prefix": URL_PREFIX, "name": NAME}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": NAME,
            "href": f"{root_path()}{URL_PREFIX}/",
            "url_route": "parkmobile-token",
            "destination": "nav",
            "category": "browse",
            "icon": f"{root_path()}{URL_PREFIX}/static/icon.svg",
        }
    ]
