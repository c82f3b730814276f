"""
The token page: a FastAPI app the Airflow api-server serves at ``/parkmobile-token/``.

It shows whether a valid token exists, a timeline of validity windows, refresh attempts and gaps, and
the figures behind them, read from the token table and the refresh history; never a token, only
fingerprints. The plugin module ``plugins/parkmobile_token_ui.py`` registers it; importing this
package, or the plugin, imports neither FastAPI nor a database driver.
"""

from __future__ import annotations

#: Where the api-server mounts the app.
URL_PREFIX = "/parkmobile-token"
#: Only a user who may read this DAG sees the page or its JSON.
DAG_ID = "update_parkmobile_token"
