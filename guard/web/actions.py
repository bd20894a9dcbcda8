"""Snooze, Keep and Stop now from the web console, through the Slack buttons' own code.

Each is a POST from the resource page (its CSRF token checked in guard/web/auth.py before this
runs) by a signed-in person; nobody else, even when the pages are public. Like a click in
Slack it is recorded first (the `slack_interactions` rows, action `snooze_4h`, `keep_24h` or
`stop_now`), then carried out by `guard.interactions`: the same snooze, the same Stop now
checks (exempt, snoozed, unknown, the rule still matches), the same dry-run gate, audit trail
and Slack message update, delivered at once unless a cycle is running.

Who may Stop now: the people in `web.stop_allowed` (emails), and the people Slack would let
stop, i.e. those whose email Slack maps (users.lookupByEmail, remembered in the database like
an owner's) to an id on `slack.stop_allowed`, or to a member of a user group on it. Snooze
and Keep are open to anyone signed in, as they are to anyone who sees the Slack message.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, flash, redirect, request, url_for
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from werkzeug.wrappers import Response as Reply

from guard import interactions
from guard.config import format_duration
from guard.cycle import Guard
from guard.model import Episode, Resource
from guard.notify import UNKNOWN_USER_RETRY
from guard.rules import human
from guard.slack_app import DELIVER_WAIT_SECONDS, KEEP, SNOOZE, _Clicks
from guard.web import auth

log = logging.getLogger(__name__)

blueprint = Blueprint("actions", __name__, url_prefix="/actions")

VIA = "the web console"
ALLOW_LIST = "web.stop_allowed or slack.stop_allowed"
# The durations a Snooze may ask for: Slack's two buttons (4h, 24h), an hour and a week.
DURATIONS = {"1h": timedelta(hours=1), "4h": SNOOZE, "24h": KEEP, "1d": KEEP}
DURATIONS["7d"] = timedelta(days=7)
MAX_REASON = 200
# What an answer that did nothing is told with (403: the person may not, below).
_STATUS = {"refused": 409, "skipped": 409, "failed": 502}


def _guard() -> Guard:
    guard: Guard = current_app.config["GUARD"]
    return guard


@blueprint.post("/snooze")
def snooze() -> Reply:
    """Snooze for `duration` (default 4h, as Slack's button): no warning and no action until
    it ends."""
    duration = DURATIONS.get(request.form.get("duration", "4h"))
    if duration is None:
        return auth.page(400, "Not done", f"A snooze lasts {', '.join(DURATIONS)}.")
    return _snooze(duration, kept=False)


@blueprint.post("/keep")
def keep() -> Reply:
    """Keep 24h: the Slack button of that name."""
    return _snooze(KEEP, kept=True)


def _snooze(duration: timedelta, *, kept: bool) -> Reply:
    found = _request()
    if isinstance(found, Reply):
        return found
    guard, user, res = found
    # the Slack buttons' names; a snooze of another length says its own
    action = "keep_24h" if kept else f"snooze_{format_duration(duration)}"
    click = _claim(guard, user, action, res, None, _cached_slack_id(guard, user["id"]))
    why = " ".join(request.form.get("reason", "").split())[:MAX_REASON]
    what = f"web console: {'Keep' if kept else 'Snooze'} {human(duration)}"
    answer = interactions.snooze(
        guard, res, duration, by=_by(user), kept=kept, click=click,
        reason=f"{what}: {why}" if why else what,
    )  # fmt: skip
    return _answer(guard, user, action, res, click, answer)


@blueprint.post("/stop-now")
def stop_now() -> Reply:
    """Take the open warning's action now, if the person may and the guard would."""
    found = _request()
    if isinstance(found, Reply):
        return found
    guard, user, res = found
    episode = _episode(guard, res)
    if episode is None:
        return auth.page(409, "Not done", f"{res.name} has no open warning with an action: "
                         "Stop now takes a warning's action before its deadline.")  # fmt: skip
    slack_id = _slack_id(guard, user["id"])
    allowed = _may_stop(guard, user["id"], slack_id)
    click = _claim(guard, user, "stop_now", res, episode.id, slack_id)
    answer = interactions.stop_now(
        guard, res, episode.id, by=_by(user), click=click, via=VIA, allow_list=ALLOW_LIST,
        allowed=allowed,
    )  # fmt: skip
    return _answer(guard, user, "stop_now", res, click, answer, forbidden=not allowed)


def _request() -> tuple[Guard, dict[str, Any], Resource] | Reply:
    """(guard, the signed-in person, the resource) of an action request, or the refusal."""
    user = auth.current_user()
    if user is None:
        log.warning("%s from %s refused: not signed in", request.path, request.remote_addr)
        return auth.sign_in_needed()
    guard = _guard()
    arn = request.args.get("arn") or request.form.get("arn") or ""
    res = guard.store.resource(arn) if 0 < len(arn) <= 512 else None
    if res is None:
        return auth.page(404, "Not found", "cost-guard knows no such resource.")
    return guard, user, res


def _by(user: dict[str, Any]) -> str:
    # as `cost-guard snooze` writes "<login> (cli)"; an email is safe in Slack text (checked
    # at sign-in: no <, > or &), and the column holds 128 characters
    return f"{user['id']} (web)"[:128]


def _claim(
    guard: Guard,
    user: dict[str, Any],
    action: str,
    res: Resource,
    episode_id: int | None,
    slack_id: str | None,
) -> int:
    """Record the request before it takes effect, as a Slack click is; each form post is one
    click (its key is new), so every one gets its own answer in Slack."""
    click = guard.store.claim_interaction(
        f"web:{uuid.uuid4().hex}:{user['id']}:{action}"[:256],
        user_id=slack_id or "web",
        action=action,
        arn=res.arn,
        episode_id=episode_id,
        now=guard.clock.now(),
    )
    assert click is not None  # a fresh uuid cannot have been claimed before
    return click


def _answer(
    guard: Guard,
    user: dict[str, Any],
    action: str,
    res: Resource,
    click: int,
    answer: interactions.Answer,
    *,
    forbidden: bool = False,
) -> Reply:
    guard.store.finish_interaction(click, answer.outcome, answer.text)
    log.info("console %s by %s on %s/%s: %s", action, user["id"], res.kind, res.name, answer.text)
    interactions.deliver_now(guard, wait=DELIVER_WAIT_SECONDS)
    back = url_for("pages.resource_page", arn=res.arn)
    if answer.outcome in _STATUS:
        status = 403 if forbidden else _STATUS[answer.outcome]
        return auth.page(status, "Not done", f"Not done: {answer.text}.",
                         link=(back, f"Back to {res.name}"))  # fmt: skip
    flash(answer.text, "success")
    return redirect(back, code=303)


def _episode(guard: Guard, res: Resource) -> Episode | None:
    """The open warning Stop now acts on: the form's `episode_id` if it is one of this
    resource's, else the first open one whose rule acts."""
    cfg = guard.cfg
    mine = [e for (arn, _), e in guard.store.open_episodes().items() if arn == res.arn]
    asked = request.form.get("episode_id", "")
    if asked.isdigit():
        return next((e for e in mine if e.id == int(asked)), None)
    acting = [
        e for e in mine
        if ((rule := cfg.rule(e.rule_id)) is not None and rule.mutates)
        or ((budget := cfg.budget(e.rule_id)) is not None and budget.action)
    ]  # fmt: skip
    return min(acting, key=lambda e: e.deadline or e.started_at, default=None)


def _cached_slack_id(guard: Guard, email: str) -> str | None:
    """The Slack id the database remembers for this email (never asks Slack)."""
    known = guard.store.slack_user(email) if "@" in email else None
    return known[0] if known is not None else None


def _slack_id(guard: Guard, email: str) -> str | None:
    """The person's Slack user id: remembered in the database, else asked of Slack (and
    remembered); None when Slack has no such user or cannot be asked."""
    if "@" not in email:  # a proxy's opaque user id: Slack cannot be asked about it
        return None
    known = guard.store.slack_user(email)
    now = guard.clock.now()
    # Slack's "no such user" is believed for a week, as for owners (they may join later)
    if known is not None and (known[0] is not None or now - known[1] < UNKNOWN_USER_RETRY):
        return known[0]
    client = _slack_client(guard)
    if client is None or not guard.cfg.slack.stop_allowed:
        return None  # no Slack, or nobody is allowed through it: nothing to ask
    try:
        user_id = str(client.users_lookupByEmail(email=email)["user"]["id"])
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error != "users_not_found":  # unreachable, rate limited, a missing scope
            log.warning("Slack users.lookupByEmail for %s failed: %s", email, error)
            return None
        user_id = None
    except Exception as exc:  # Slack unreachable: not allowed through Slack this time
        log.warning("Slack users.lookupByEmail for %s failed: %s", email, type(exc).__name__)
        return None
    guard.store.remember_slack_user(email, user_id, now)
    return user_id


def _may_stop(guard: Guard, email: str, slack_id: str | None) -> bool:
    if email.lower() in {e.lower() for e in guard.cfg.web.stop_allowed}:
        return True
    client = _slack_client(guard)
    if slack_id is None or client is None:
        return False
    # slack_app's own allow-list check (ids, and user groups' members cached for 5 minutes)
    clicks: _Clicks | None = current_app.extensions.get("cost_guard_slack_clicks")
    if clicks is None:
        clicks = current_app.extensions["cost_guard_slack_clicks"] = _Clicks(guard, client)
    return clicks._may_stop(slack_id)


def _slack_client(guard: Guard) -> WebClient | None:
    token = guard.cfg.secrets.slack_bot_token
    if token is None:
        return None
    slack = guard.cfg.slack
    return WebClient(
        token=token.get_secret_value(), base_url=slack.base_url, timeout=slack.timeout_seconds
    )
