"""The web console: server-rendered pages over the same database as the daemon.

`create_app` builds the Flask app that guard/server.py mounts at `/` beside /healthz,
/readyz, /metrics and /slack/events. Pages (guard/web/pages.py) only read; sign-in
(guard/web/auth.py) and the Snooze / Keep / Stop now routes (guard/web/actions.py) live apart.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from guard.cycle import Guard

Liveness = Callable[[], tuple[bool, str]]


def create_app(guard: Guard, *, alive: Liveness | None = None) -> Flask:
    """The console's Flask app for `guard` (its config, store and clock)."""
    from guard.web import actions, auth, pages

    app = Flask(__name__)
    app.config["GUARD"] = guard
    app.config["ALIVE"] = alive
    app.register_blueprint(pages.blueprint)
    auth.init_app(app, guard.cfg)  # also sets the session cookie's key (COST_GUARD_WEB_SECRET)
    app.register_blueprint(actions.blueprint)
    return app
