"""An ASGI app that builds the real one on its first request, so loading the plugin stays cheap."""

from __future__ import annotations

import importlib
from typing import Any


class LazyApp:
    """
    Import and build an ASGI app on the first call, then hand every call to it.

    Airflow imports plugin modules in every component (scheduler, workers, dag-processor), and only the
    api-server serves the app; this keeps FastAPI, Jinja and the auth modules out of the others.

    :param factory: ``"module:function"``; the function takes no argument and returns the ASGI app.
    """

    def __init__(self, factory: str) -> None:
        module, _, function = factory.partition(":")
        if not module or not function:
            raise ValueError(f"factory must read 'module:function', got {factory!r}")
        self.factory = factory
        self._app: Any = None

    @property
    def app(self) -> Any:
        """The built app; built now when it was not yet."""
        if self._app is None:
            module, _, function = self.factory.partition(":")
            self._app = getattr(importlib.import_module(module), function)()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
