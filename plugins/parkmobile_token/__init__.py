"""Keep a valid ParkMobile OAuth2 access token in MySQL, refreshed by Airflow."""

from __future__ import annotations

__version__ = "1.0.0"
