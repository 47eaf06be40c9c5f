"""Run the app under gunicorn from ``idp serve`` (the same server as production)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from idp.hooks import LOGCONFIG, worker_exited
from idp.settings import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from idp.app import create_app

        return create_app(self.settings)


def run(settings: Settings, bind: str, workers: int) -> None:
    """Serve until interrupted; each worker builds its own app after the fork."""
    _Gunicorn(
        settings,
        {
            "bind": bind,
            "workers": workers,
            "worker_class": "gthread",
            "threads": 8,
            "timeout": 30,
            "limit_request_line": 8190,  # see gunicorn.conf.py: long signed Redirect queries
            "graceful_timeout": 10,
            "accesslog": None,
            "logconfig_dict": LOGCONFIG,
            "forwarded_allow_ips": "",  # the app's ProxyFix alone trusts forwarded headers
            "control_socket_disable": True,
            "child_exit": lambda _server, worker: worker_exited(worker.pid),
        },
    ).run()
