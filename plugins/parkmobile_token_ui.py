"""
Airflow plugin: the ParkMobile token page, at ``/parkmobile-token/`` on the api-server.

Airflow's plugin loader imports each top-level file of the plugins folder (``.airflowignore`` keeps it
out of the ``parkmobile_token`` package) and registers the ``AirflowPlugin`` classes it finds. The
class lives in the package, so that an installed package can name it as an entry point too. Importing
this module touches no database and imports no web framework: the app is built on its first request.
"""

from __future__ import annotations

from parkmobile_token.ui.plugin import ParkMobileTokenUIPlugin

__all__ = ["ParkMobileTokenUIPlugin"]
