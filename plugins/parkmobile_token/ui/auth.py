"""
Who may see the page: a user Airflow's auth manager lets read the DAG ``update_parkmobile_token``.

The user comes from the api-server's JWT, as for Airflow's own REST API: an ``Authorization: Bearer``
header, or else the ``_token`` cookie that Airflow's UI sets at login (the page opens inside the UI,
on the same origin, so the cookie comes along). Airflow's ``get_user`` reads it, so a token refreshed
by Airflow's middleware counts as well. Then the auth manager decides, with
``is_authorized_dag(method="GET", details=DagDetails(id=...))``: the same question Airflow asks before
it shows the DAG, teams included.

A missing, expired or unreadable token gets 401; a user without read access to the DAG gets 403.
"""

from __future__ import annotations

import logging
from typing import Annotated

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
from fastapi import Depends, HTTPException, Request, status

from parkmobile_token.ui import DAG_ID

log = logging.getLogger(__name__)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def authenticated_user(request: Request) -> BaseUser:
    """Return the user of the request's JWT; 401 when there is none or it cannot be read."""
    credentials = await bearer_scheme(request)
    try:
        return await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    except HTTPException as err:
        # Airflow's own API answers a token it cannot decode with 403; without a valid token nobody is
        # authenticated, which RFC 9110 (section 15.5.2) and RFC 6750 (section 3.1) answer with 401.
        if err.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(err.detail), headers=_CHALLENGE) from err
        raise


def dag_reader(user: Annotated[BaseUser, Depends(authenticated_user)]) -> BaseUser:
    """Return the user when the auth manager lets them read the DAG; 403 otherwise."""
    from airflow.models.dag import DagModel

    # A plain function: FastAPI runs it in a worker thread, as the team lookup reads the metadata DB.
    details = DagDetails(id=DAG_ID, team_name=DagModel.get_team_name(DAG_ID))
    if not get_auth_manager().is_authorized_dag(method="GET", details=details, user=user):
        log.info("User %s may not read DAG %s: token page refused", user.get_name(), DAG_ID)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Forbidden: you may not read the DAG {DAG_ID}")
    return user


DagReader = Annotated[BaseUser, Depends(dag_reader)]
