"""Slack: render one message per resource episode, queue it in the outbox, deliver it.

`notify` only renders and queues (idempotent per episode and state), so a cycle never waits on
Slack and a re-run never double-posts. `deliver` sends what is due, in order per resource; a
failure is retried later with backoff. Transport, from the secrets: a bot token (Block Kit with
buttons, one message per episode updated in place), an incoming webhook (a new message per
step, no buttons), or neither (plain text to the terminal/log).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import socket
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.webhook import WebhookClient

from guard import failpoints
from guard.config import Config
from guard.kinds import KINDS, console_url, keeps
from guard.model import Clock, Finding, Resource
from guard.profiles import resource_profile
from guard.reports import dollars, finding_text
from guard.rules import owner_of
from guard.store import OutboxRow, Store

log = logging.getLogger(__name__)

# slack-sdk's webhook client logs its URL (a secret) at DEBUG, and both clients log every
# network failure at ERROR; give them a logger that cannot: each failure is reported once, by
# `deliver`, with the method and the error.
_sdk_log = logging.getLogger("guard.notify.sdk")
_sdk_log.setLevel(logging.CRITICAL)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(minutes=15)
# An email Slack did not know is asked again after this long (the person may have joined).
UNKNOWN_USER_RETRY = timedelta(days=7)
# A lookup that failed (Slack unreachable, rate limited, a missing scope) is not asked again
# for this long (longer if Slack says Retry-After): one failure per owner, not per message.
LOOKUP_RETRY = timedelta(minutes=5)
# A post whose answer was lost is looked for in the channel's history from this long before
# its first send (clock skew between us and Slack), at most HISTORY_PAGES pages of it.
HISTORY_MARGIN = timedelta(minutes=2)
HISTORY_PAGES = 10
# The message metadata on every top-level post: its outbox key, to find it after a crash.
METADATA_EVENT = "cost_guard_outbox"
# What talking to Slack can raise besides an API error: refused, reset, timed out, cut short.
# Database errors are deliberately not here: they must not pass for a failed send.
_NETWORK_ERRORS = (SlackClientError, OSError, http.client.HTTPException)
_OUTBOX_PAGE = 200  # messages read from the outbox at a time
_USER_ID = re.compile(r"<?@?([UW][A-Z0-9]{6,})>?")
_MENTION = re.compile(r"<@[UW][A-Z0-9]+>")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")  # channel names are lowercase
_LOOKUP, _POST = "users.lookupByEmail", "chat.postMessage"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_EMOJI = {"warned": ":warning:", "acted": ":octagonal_sign:", "would-act": ":eyes:"}
_EMOJI |= {"failed": ":x:", "resolved": ":white_check_mark:", "snoozed": ":zzz:"}
_EMOJI |= {"rearmed": ":warning:"}
# The states that announce a deadline (with the Snooze/Keep/Stop now buttons): the first
# warning, and a dry-run warning re-armed when the guard starts enforcing.
_ARMED = ("warned", "rearmed")


@dataclass(frozen=True)
class Notice:
    """One step of an episode's story, as the cycle tells it."""

    resource: Resource
    rule_id: str
    episode_id: int
    state: str  # "warned" | "rearmed" | "acted" | "would-act" | "failed" | "resolved" | "snoozed"
    action: str  # the rule's action: "notify" | "stop"
    reason: str  # the evidence for people: "no Jupyter activity for 3 h 10 min"
    deadline: datetime | None  # when the action will happen (state "warned"), UTC-aware
    mode: str  # "dry-run" | "enforce"
    detail: str = ""  # outcome detail: "StopNotebookInstance accepted", "became active"
    by: str = ""  # who caused this step from Slack ("<@U123>"), shown in the message
    click: int | None = None  # the button click behind it (part of the idempotency key)
    attempt: int = 0  # a failed action's attempt number (each failure is told once)


class _SendFailed(Exception):
    """A send Slack did not accept; `error` ("method: what") is safe to store and log."""

    def __init__(
        self,
        error: str,
        status: int | None = None,
        retry_after: float | None = None,
        *,
        code: str = "",
        method: str = "",
        maybe_sent: bool = False,
        told: bool = False,
        first: bool = True,
    ):
        super().__init__(error)
        self.error, self.code, self.retry_after = error, code, retry_after
        self.method = method  # the Slack method that failed: "chat.postMessage", "webhook"
        # Unreachable, rate limited or a server error: not this message's fault.
        self.transient = status is None or status == 429 or status >= 500
        # No answer (a timeout, a reset): Slack may have taken it all the same.
        self.maybe_sent = maybe_sent
        # Logged already (by the owner lookup), and a new failure rather than one remembered
        # from an earlier message (counted once).
        self.told, self.first = told, first


@dataclass
class _Lookup:
    """A users.lookupByEmail that failed: not asked again before `retry_at`."""

    error: str
    retry_at: datetime
    transient: bool


class Notifier:
    def __init__(
        self, cfg: Config, store: Store, clock: Clock, echo: Callable[[str], None] | None = None
    ) -> None:
        self.cfg, self.store, self.clock, self.echo = cfg, store, clock, echo
        token, webhook = cfg.secrets.slack_bot_token, cfg.secrets.slack_webhook_url
        self._secrets = [
            s.get_secret_value() for s in (token, webhook) if s is not None and s.get_secret_value()
        ]
        self._client: WebClient | None = None
        self._webhook: WebhookClient | None = None
        # No slack-sdk retry handlers: they sleep inside the cycle, and the outbox already
        # retries with a backoff that survives restarts.
        if token is not None:
            self._client = WebClient(
                token=token.get_secret_value(),
                base_url=cfg.slack.base_url,
                timeout=cfg.slack.timeout_seconds,
                logger=_sdk_log,
                retry_handlers=[],
            )
        elif webhook is not None:
            self._webhook = WebhookClient(
                webhook.get_secret_value(),
                timeout=cfg.slack.timeout_seconds,
                logger=_sdk_log,
                retry_handlers=[],
            )
        self.transport = "bot" if self._client else "webhook" if self._webhook else "terminal"
        # The slack_users rows read so far: a first cycle warning about thousands of
        # resources reads each owner's row once, not once per message.
        self._users: dict[str, tuple[str | None, datetime]] = {}
        # Lookups that failed lately, by email ("*": the method itself is down or limited).
        self._failed: dict[str, _Lookup] = {}
        # Channel names and user ids -> the conversation id conversations.history needs.
        self._conversations: dict[str, str] = {}

    # --- queueing ------------------------------------------------------------------------

    def notify(self, notice: Notice) -> None:
        """Render and queue; calling it again for the same episode and state queues nothing.

        Never calls Slack (the cycle calls it inside a database transaction): an owner's email
        not yet resolved is shown as is and resolved by `deliver`, which then mentions the
        owner and sends their direct message.
        """
        owner, owner_id, email = self._owner(notice.resource)
        now = self.clock.now()
        key = f"episode:{notice.episode_id}:{notice.state}"
        if notice.click is not None:
            key += f":click-{notice.click}"
        if notice.attempt:
            key += f":attempt-{notice.attempt}"
        channel = self._channel(notice, owner_id)
        payload = self.render(notice, owner, now)
        if email:
            payload["owner_email"] = email  # mention them once `deliver` knows their id
            if channel is None:
                payload["dm_email"] = email  # no channel at all: their DM, once resolved
        self.store.enqueue(
            key=key,
            arn=notice.resource.arn,
            episode_id=notice.episode_id,
            operation="post" if notice.state == "warned" else "update",
            channel=channel,
            payload=payload,
            now=now,
        )
        dm = self.cfg.slack.dm_owners and self._client is not None and channel is not None
        if dm and (owner_id or email) and owner_id != channel:
            # The owner's copy: a message of its own in their DM (not updated in place; the
            # channel's message carries the story), for the warning and the outcome.
            self.store.enqueue(
                key=f"{key}:dm",
                arn=notice.resource.arn,
                episode_id=None,
                operation="post",
                channel=owner_id,
                payload=payload if owner_id else {**payload, "dm_email": email},
                now=now,
            )

    def reply(self, notice: Notice, text: str) -> None:
        """A thread reply under the episode's message that changes nothing else (a refused
        click, say); queued once per click."""
        owner, owner_id, _email = self._owner(notice.resource)
        now = self.clock.now()
        payload = self.render(notice, owner, now)
        payload["thread_text"] = _esc(text, _ours(owner, notice.by))
        self.store.enqueue(
            key=f"episode:{notice.episode_id}:reply:click-{notice.click}",
            arn=notice.resource.arn,
            episode_id=notice.episode_id,
            operation="reply",
            channel=self._channel(notice, owner_id),
            payload=payload,
            now=now,
        )

    def _channel(self, notice: Notice, owner_id: str | None) -> str | None:
        """The rule's (or budget's) channel, else the owner's team's, else `slack.channel`;
        without any channel configured the owner gets a direct message."""
        rule = self.cfg.rule(notice.rule_id)
        budget = self.cfg.budget(notice.rule_id)
        team = notice.resource.tags.get(self.cfg.tags.team, "")
        return (
            (rule.channel if rule else None)
            or (budget.channel if budget else None)
            or self.cfg.slack.team_channels.get(team)
            or self.cfg.slack.channel
            or owner_id
        )

    def notify_scan_health(self, errors: Sequence[str], findings: Sequence[Finding]) -> None:
        """Tell the channel, once a day, what the guard could not see (a broken role, a failing
        region) and what it found worth fixing (no Studio idle shutdown). The full daily digest
        is separate; these are the blind spots the on-call person must hear about."""
        now = self.clock.now()
        day = now.astimezone(self.cfg.tz).date().isoformat()
        if errors:
            # Key on *where* it fails (the text before the first colon), not the message.
            where = sorted({e.split(":", 1)[0] for e in errors})
            lines = [f"• {e}" for e in errors]
            tail = (
                "Nothing there is judged or acted on until this clears; "
                "everything else is handled as usual."
            )
            self._enqueue_plain(
                f"scan-errors:{day}:{_digest(where)}",
                f":warning: cost-guard cannot see {len(where)} part(s) of your SageMaker estate",
                [*lines, tail],
                now,
            )
        if findings:
            lines = [f"• {finding_text(asdict(f))}" for f in findings]
            subjects = sorted(f"{f.account}/{f.region}/{f.subject}" for f in findings)
            self._enqueue_plain(
                f"findings:{day}:{_digest(subjects)}",
                f":mag: {len(findings)} setting(s) that let SageMaker bill idle time",
                lines,
                now,
            )

    def notify_budget(
        self, key: str, title: str, lines: list[str], channel: str | None = None
    ) -> bool:
        """Queue a budget message once per idempotency `key` (budget, period, threshold) to
        the budget's channel, else the configured one; False if that key was queued before."""
        return self._enqueue_plain(key, title, lines, self.clock.now(), channel)

    def notify_digest(
        self, key: str, title: str, lines: list[str], fields: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Queue the daily digest once per cron fire time (`key`)."""
        return self._enqueue_plain(key, title, lines, self.clock.now(), fields=fields)

    def _enqueue_plain(
        self,
        key: str,
        title: str,
        lines: list[str],
        now: datetime,
        channel: str | None = None,
        fields: Sequence[tuple[str, str]] = (),
    ) -> bool:
        body = "\n".join(lines)
        blocks: list[Block] = [HeaderBlock(text=title.split(" ", 1)[1][:150])]
        if fields:
            blocks.append(
                SectionBlock(
                    fields=[MarkdownTextObject(text=f"*{k}*\n{_esc(v)}") for k, v in fields]
                )
            )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_cut(_esc(body), 2900))))
        return self.store.enqueue(
            key=key,
            arn=None,
            episode_id=None,
            operation="post",
            channel=channel or self.cfg.slack.channel,
            payload={
                "text": _cut(_esc(f"{title}. {lines[0]}"), 300),
                "blocks": [b.to_dict() for b in blocks],
                "plain": f"{title}\n{body}",
            },
            now=now,
        )

    def render(self, n: Notice, owner: str, now: datetime) -> dict[str, Any]:
        """The payload: Block Kit `blocks`, a phone-friendly `text`, a `plain` terminal form."""
        res, kind = n.resource, KINDS[n.resource.kind]
        itype = res.instance_type or "unknown type"
        price = "unknown" if res.usd_per_hour is None else f"{dollars(res.usd_per_hour)}/h"
        accrued = res.accrued_usd(now)
        since = "unknown"
        if res.running_since is not None:
            # A weekday alone is ambiguous once the run is a week old.
            recent = now - res.running_since < timedelta(days=6)
            since = self._time(res.running_since, "%a %H:%M %Z" if recent else "%d %b %H:%M %Z")
        fields = [
            ("Account / Region", f"{res.account} / {res.region}"),
            ("Instance", f"{itype} \N{MULTIPLICATION SIGN} {res.instance_count}"),
            ("Cost", price if accrued is None else f"{price}, {dollars(accrued)} so far"),
            ("Running since", since),
            ("Owner", owner),
            ("Why", f"{n.rule_id}: {n.reason}"),
        ]
        if (usage := resource_profile(self.store, self.cfg, res.arn, now)) is not None:
            fields.append(("Usage", usage.text))  # its weekly pattern (guard/profiles.py)
        if billing := res.details.get("billing"):  # not per instance-hour: how it is billed
            fields.append(("Billed", str(billing)))
        long, short = self._outcome(n, now)
        title = kind.title[:1].upper() + kind.title[1:]
        url = console_url(kind, res)
        # Names, tags, reasons and details are other people's text: escaped everywhere Slack
        # reads mrkdwn, so none can mention <!channel>; only the mentions built here stay.
        ours = _ours(owner, n.by)
        blocks: list[Block] = [
            # plain_text: Slack renders no mention in it
            HeaderBlock(text=f"{_EMOJI.get(n.state, '')} {title} {res.name}"[:150]),
            SectionBlock(
                fields=[MarkdownTextObject(text=f"*{k}*\n{_esc(v, ours)}") for k, v in fields]
            ),
            SectionBlock(text=MarkdownTextObject(text=f"*What happens*\n{_esc(long, ours)}")),
        ]
        if self.transport == "bot" and n.state in _ARMED and self.cfg.slack.interactive:
            blocks.append(_buttons(n, url))
        link = f"<{_esc(url)}|Open in the AWS console> · {n.mode} · cost-guard"
        page = resource_page_url(self.cfg, res)
        if page is not None:  # `serve.public_url` is set: the console's page of it
            link = f"<{_esc(page)}|Open in cost-guard> · {link}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=link)]))
        short_price = "price unknown" if res.usd_per_hour is None else price
        plain = [f"[{n.state}] {title} {res.name}", *(f"  {k}: {v}" for k, v in fields)]
        text = f"{title} {res.name} ({itype}, {short_price}): {n.reason}. {short}"
        payload: dict[str, Any] = {
            "text": _esc(text, ours),
            "blocks": [b.to_dict() for b in blocks],
            "plain": "\n".join([*plain, f"  What happens: {long}", f"  Console: {url}"]),
        }
        if page is not None:
            payload["plain"] += f"\n  cost-guard: {page}"
        if n.state != "warned":
            extra = f" ({n.detail})" if n.detail and n.detail not in short else ""
            payload["thread_text"] = _esc(short + extra, ours)
        return payload

    def _outcome(self, n: Notice, now: datetime) -> tuple[str, str]:
        """(long, short) sentences saying what happens; the short one fits a phone banner."""
        verb, past = _verb(n), _verb(n, past=True)
        if n.state in _ARMED:
            if n.action == "notify":
                return "Notification only", "Notification only."
            when, left = "on the next check", ""
            if n.deadline is not None:
                when = f"at {self._time(n.deadline, '%H:%M %Z')}"
                left = f" (in {_span(max(n.deadline - now, timedelta(0)))})"
            if n.mode != "enforce":
                return (
                    f"Dry-run: would {verb} {when}{left}, nothing will be changed",
                    f"Dry-run: would {verb} {when}, nothing will be changed.",
                )
            keeps = _keeps(n)
            if n.state == "rearmed":  # it said "would" until now: say what changed
                return (
                    f"cost-guard now enforces (it was in dry-run). Will {verb} {when}{left} "
                    f"unless it becomes active or is snoozed. {keeps}".strip(),
                    f"cost-guard now enforces: will {verb} {when} unless used or snoozed.",
                )
            return (
                f"Will {verb} {when}{left} unless it becomes active or is snoozed. {keeps}".strip(),
                f"Will {verb} {when} unless used or snoozed.",
            )
        at = self._time(now, "%H:%M %Z")
        who = f"{n.by} (Stop now)" if n.by else f"rule {n.rule_id}"
        long = {
            "acted": f"{past.capitalize()} at {at} by {who}",
            "would-act": f"Dry-run: would have {past} now"
            + (f" ({n.by} clicked Stop now; nothing was changed)" if n.by else ""),
            "failed": f"Tried to {verb} at {at}, failed: {n.detail or 'unknown error'}",
            "resolved": f"Resolved: {n.detail or 'no longer matches'}",
            "snoozed": n.detail,
        }.get(n.state, f"{n.state}: {n.detail}")
        if n.state == "acted" and _keeps(n):
            return f"{long}. {_keeps(n)}", long + "."
        return long, long + "."

    def _time(self, when: datetime, fmt: str) -> str:
        return when.astimezone(self.cfg.tz).strftime(fmt)

    def _owner(self, res: Resource) -> tuple[str, str | None, str | None]:
        """(how to show the owner, their Slack user id if known, their email if `deliver` is
        still to resolve it). Reads the answers kept in the database, never asks Slack."""
        value = owner_of(res, self.cfg)
        if not value:
            return "unknown", None, None
        if not self.cfg.slack.mention_owners:
            return value, None, None
        if match := _USER_ID.fullmatch(value):
            return f"<@{match.group(1)}>", match.group(1), None
        if self._client is None or not _EMAIL.fullmatch(value):
            return value, None, None
        asked, user_id = self._known(value)
        if not asked:
            return value, None, value
        return (f"<@{user_id}>", user_id, None) if user_id else (value, None, None)

    def _known(self, email: str) -> tuple[bool, str | None]:
        """(whether Slack's answer for this email is at hand, the user id it gave). Asked once
        and kept in the database (a restart or a second replica does not ask again); an
        unknown email counts as not asked after a week (the person may have joined)."""
        now, key = self.clock.now(), email.lower()
        known = self._users.get(key) or self.store.slack_user(email)
        if known is not None and (known[0] is not None or now - known[1] < UNKNOWN_USER_RETRY):
            self._users[key] = known
            return True, known[0]
        return False, None

    def _lookup(self, client: WebClient, email: str) -> str | None:
        """The Slack user id for an email (None: Slack has no such user), asking Slack when the
        database does not know. Called by `deliver` only, outside any transaction. A failure
        raises `_SendFailed`, is logged once and remembered for LOOKUP_RETRY: for every owner
        when Slack is unreachable or limits the method, else for this email."""
        asked, user_id = self._known(email)
        if asked:
            return user_id
        now, key = self.clock.now(), email.lower()
        for which in ("*", key):
            failed = self._failed.get(which)
            if failed is not None and now < failed.retry_at:
                wait = (failed.retry_at - now).total_seconds()
                status = None if failed.transient else 400
                raise _SendFailed(
                    failed.error, status, wait, method=_LOOKUP, told=True, first=False
                )
        try:
            found = self._call(_LOOKUP, client.users_lookupByEmail, email=email)
            user_id = str(found["user"]["id"])
        except _SendFailed as exc:
            if exc.code != "users_not_found":
                pause = max(LOOKUP_RETRY, timedelta(seconds=exc.retry_after or 0))
                self._failed["*" if exc.transient else key] = _Lookup(
                    exc.error, now + pause, exc.transient
                )
                log.warning(
                    "Slack owner lookup for %s failed, not asked again for %s: %s",
                    *(email, pause, exc.error),
                )
                exc.told = True
                raise
            user_id = None
        self.store.remember_slack_user(email, user_id, now)
        self._users[key] = (user_id, now)
        return user_id

    # --- delivery ------------------------------------------------------------------------

    def deliver(self) -> dict[str, int]:
        """Send every due message, oldest first; never raises for Slack errors.

        Returns {"sent", "failed", "pending"}: sent and failed in this call, and how many are
        still undelivered afterwards (the failed ones included). Slack is never called inside
        a database transaction: each outbox write commits on its own.
        """
        if self.transport == "terminal":
            # Writing to the log is instant: mark them all sent in one transaction.
            with self.store.batch():
                return self._deliver()
        return self._deliver()

    def _deliver(self) -> dict[str, int]:
        now = self.clock.now()
        counts = {"sent": 0, "failed": 0, "pending": 0}
        blocked: set[str] = set()  # resources whose earlier message is still undelivered
        down = False
        stale, oldest = 0, None
        for row in self._pending():
            lane = row.arn or f"episode:{row.episode_id}"
            if row.key.endswith(":dm"):
                lane += ":dm"  # the owner's copies: in order, but never holding the channel's
            if not down and lane not in blocked and row.next_attempt_at <= now:
                try:
                    self._send(row)
                except _SendFailed as exc:
                    delay = _backoff(row.attempts, exc.retry_after)
                    # Only chat.postMessage's own "no" proves no post: a failed lookup before
                    # it (conversations.history) must keep an earlier attempt's sending mark.
                    maybe_sent = exc.maybe_sent or exc.method != _POST
                    self.store.message_failed(row.id, exc.error, now + delay, maybe_sent=maybe_sent)
                    # Slack down or rate limited: the rest would fail too, each after a timeout
                    # (not so when only the owner lookup a direct message needs failed).
                    down = exc.transient and exc.method != _LOOKUP
                    if exc.first:
                        counts["failed"] += 1
                    if not exc.told:
                        log.warning(
                            "Slack message %s failed (attempt %d), retry in %ds: %s",
                            *(row.key, row.attempts + 1, delay.total_seconds(), exc.error),
                        )
                else:
                    self.store.message_sent(row.id, now)
                    counts["sent"] += 1
                    continue
            blocked.add(lane)
            counts["pending"] += 1
            if now - row.created_at > self.cfg.slack.stuck_after:
                stale, oldest = stale + 1, oldest or row
        if oldest is not None:
            log.error(
                "%d Slack message(s) undelivered for over %s; oldest %s since %s, last error: %s",
                *(stale, self.cfg.slack.stuck_after, oldest.key, oldest.created_at.isoformat()),
                oldest.last_error or "waiting for an earlier message",
            )
        return counts

    def _pending(self) -> Iterator[OutboxRow]:
        """The queue, oldest first, a page at a time: after a first cycle over a big estate
        it holds thousands of messages, each with its rendered blocks."""
        after = 0
        while True:
            page = self.store.pending_messages(after, _OUTBOX_PAGE)
            yield from page
            if len(page) < _OUTBOX_PAGE:
                return
            after = page[-1].id

    def _send(self, row: OutboxRow) -> None:
        """Returns once Slack accepted the message; raises `_SendFailed` otherwise."""
        payload = row.payload
        if self._client is None and self._webhook is None:
            if row.operation in ("update", "reply") and payload.get("thread_text"):
                # In a terminal an update reads best as one line, like the Slack thread reply.
                return self._terminal(
                    f"{payload['plain'].splitlines()[0]}: {payload['thread_text']}"
                )
            return self._terminal(payload["plain"])
        if self._client is not None:
            return self._send_bot(self._client, row)
        assert self._webhook is not None
        # At least once: a webhook cannot look a message up, so one whose answer was lost
        # (a timeout, a crash before it was marked sent) is sent again.
        if row.operation == "reply":  # no threads through a webhook: a line of its own
            title = _esc(payload["plain"].splitlines()[0])
            resp = self._call(
                "webhook", self._webhook.send, text=f"{title}: {payload['thread_text']}"
            )
        else:
            blocks = [b for b in payload["blocks"] if b.get("type") != "actions"]
            resp = self._call("webhook", self._webhook.send, text=payload["text"], blocks=blocks)
        if resp.status_code != 200:
            error = f"webhook: HTTP {resp.status_code} {self._redact(str(resp.body)[:200])}"
            raise _SendFailed(error, resp.status_code, _retry_after(resp.headers), method="webhook")

    def _send_bot(self, client: WebClient, row: OutboxRow) -> None:
        episode = row.episode_id
        channel, ts = self.store.episode_message(episode) if episode else (None, None)
        if row.operation == "post" and ts is not None:
            return  # Slack accepted it, then a crash kept it from being marked sent
        # The owner's DM is needed only where no message of the episode exists yet.
        payload = self._resolved(client, row, dm=ts is None and row.operation != "reply")
        if row.operation == "reply":
            where = channel or row.channel
            if where is None:
                return self._terminal(payload["thread_text"])
            self._call(_POST, client.chat_postMessage, channel=where, thread_ts=ts,
                       text=payload["thread_text"])  # fmt: skip
            return
        message = {"text": payload["text"], "blocks": payload["blocks"]}
        if ts is None or channel is None:
            # Also an update whose post never reached Slack as a bot message (sent by another
            # transport before, or the episode began past its warning): start a new message.
            target = row.channel or payload.get("dm_channel")
            if target is None and row.key.endswith(":dm"):
                return  # the owner's copy, and Slack knows no such owner: the channel has it
            if target is None:
                log.warning("no Slack channel for %s; logging it instead", row.key)
                return self._terminal(payload["plain"])
            posted, new_ts = self._post_once(client, row, target, message)
            if episode:
                self.store.set_episode_message(episode, posted, new_ts)
            return
        try:
            self._call("chat.update", client.chat_update, channel=channel, ts=ts, **message)
        except _SendFailed as exc:
            if exc.code != "message_not_found":
                raise
            # Someone deleted the episode's message: the story continues in a new one.
            posted, new_ts = self._post_once(client, row, channel, message)
            if episode:
                self.store.set_episode_message(episode, posted, new_ts)
            return
        if payload.get("thread_text"):
            self._call(_POST, client.chat_postMessage, channel=channel, thread_ts=ts,
                       text=payload["thread_text"])  # fmt: skip

    def _resolved(self, client: WebClient, row: OutboxRow, dm: bool) -> dict[str, Any]:
        """The payload with the owner's email resolved now: mentioned in the Owner field, and
        as the channel (`dm_channel`) of a direct message. A failed lookup leaves the email
        shown (the channel still hears of it; a later update mentions them) but holds a direct
        message back until Slack answers."""
        payload = dict(row.payload)
        email = payload.get("owner_email")
        if email:
            try:
                user_id = self._lookup(client, email)
            except _SendFailed:
                if dm and payload.get("dm_email"):
                    raise
                user_id = None
            if user_id:
                shown, mention = f"*Owner*\n{_esc(email)}", f"*Owner*\n<@{user_id}>"
                payload["blocks"] = _replace_text(payload["blocks"], shown, mention)
        if dm and (email := payload.get("dm_email")):
            if (user_id := self._lookup(client, email)) is None:
                log.info("%s: Slack knows no user %s to send it to directly", row.key, email)
            payload["dm_channel"] = user_id
        return payload

    def _post_once(
        self, client: WebClient, row: OutboxRow, channel: str, message: dict[str, Any]
    ) -> tuple[str, str]:
        """Post a top-level message at most once; returns (channel id, ts).

        The send is marked (committed) before chat.postMessage, and the post carries the row's
        key as message metadata: a row found marked (Slack may have taken it, then we crashed
        or timed out) is first looked for in the channel's history, and not posted again if
        it is there."""
        if row.sending_at is not None:
            found = self._find_posted(client, channel, row.key, row.sending_at)
            if found is not None:
                log.info("Slack message %s was posted before (%s %s): not again", row.key, *found)
                return found
        self.store.message_sending(row.id, self.clock.now())
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": row.key}}
        resp = self._call(_POST, client.chat_postMessage, channel=channel, metadata=metadata,
                          **message)  # fmt: skip
        failpoints.reached("slack-after-post")  # accepted by Slack; its ts not stored yet
        return str(resp["channel"]), str(resp["ts"])

    def _find_posted(
        self, client: WebClient, channel: str, key: str, since: datetime
    ) -> tuple[str, str] | None:
        """(channel id, ts) of the message posted for outbox `key` since `since`, or None."""
        conversation = self._conversation(client, channel)
        if conversation is None:
            log.warning(
                "cannot look up Slack message %s in %s (not a channel id); posting it again: "
                "it may show twice", key, channel,
            )  # fmt: skip
            return None
        oldest = f"{(since - HISTORY_MARGIN).timestamp():.6f}"
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            page = self._call("conversations.history", client.conversations_history,
                              channel=conversation, oldest=oldest, limit=200,
                              include_all_metadata=True, cursor=cursor)  # fmt: skip
            for message in page.get("messages") or []:
                meta = message.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT and (
                    (meta.get("event_payload") or {}).get("key") == key
                ):
                    return conversation, str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                break
        return None

    def _conversation(self, client: WebClient, channel: str) -> str | None:
        """The conversation id conversations.history needs for where a message was posted: a
        channel id as is, a user id's direct message through conversations.open; None for a
        channel name (set `slack.channel` to the channel's id to have it looked up)."""
        if _CHANNEL_ID.fullmatch(channel):
            return channel
        if channel in self._conversations:
            return self._conversations[channel]
        if not _USER_ID.fullmatch(channel):
            return None
        opened = self._call("conversations.open", client.conversations_open, users=channel)
        self._conversations[channel] = str(opened["channel"]["id"])
        return self._conversations[channel]

    def _call(self, method: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """One call to Slack; any failure becomes `_SendFailed` naming the method and the error
        (never the request: it carries the token or the webhook URL)."""
        try:
            return fn(**kwargs)
        except SlackApiError as exc:
            resp = exc.response
            code = str(resp.get("error") or "") if isinstance(resp.data, dict) else ""
            status, retry = resp.status_code, _retry_after(resp.headers)
            error = f"{method}: HTTP {status} {code or 'error'}"
            raise _SendFailed(error, status, retry, code=code, method=method) from None
        except _NETWORK_ERRORS as exc:
            error = f"{method}: {self._redact(f'{type(exc).__name__}: {exc}')}"
            raise _SendFailed(error, method=method, maybe_sent=_maybe_sent(exc)) from None

    def _terminal(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)
        else:
            log.info("%s", text)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _buttons(n: Notice, url: str) -> ActionsBlock:
    arn = n.resource.arn
    verb = _verb(n).split(" ")[0].capitalize()  # "Stop", "Delete", "Scale"
    confirm = ConfirmObject(  # its text is mrkdwn
        title=f"{verb} now?", text=_esc(f"{verb} {n.resource.name} now?"), confirm=verb,
        deny="Cancel",
    )  # fmt: skip
    stop = ButtonElement(
        text=f"{verb} now", action_id="stop_now", value=arn, style="danger", confirm=confirm
    )
    return ActionsBlock(
        block_id=f"episode-{n.episode_id}",  # lets the interactivity handler find the episode
        elements=[
            ButtonElement(text="Snooze 4h", action_id="snooze_4h", value=arn),
            ButtonElement(text="Keep 24h", action_id="keep_24h", value=arn),
            # a notify-only rule has nothing to do now
            *([stop] if n.action in KINDS[n.resource.kind].actions else []),
            ButtonElement(text="Open console", action_id="open_console", url=url),
        ],
    )


def _verb(n: Notice, past: bool = False) -> str:
    spec = KINDS[n.resource.kind].actions.get(n.action)
    if spec is None:
        return "notified" if past else "notify"
    return spec.verb_past if past else spec.verb_would.removeprefix("would ")


def _keeps(n: Notice) -> str:
    """What the owner keeps after the action (their files, the endpoint config...)."""
    spec = KINDS[n.resource.kind].actions.get(n.action)
    return keeps(spec, n.resource) if spec else ""


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _backoff(attempts: int, retry_after: float | None) -> timedelta:
    if retry_after is not None:
        return timedelta(seconds=max(retry_after, 1))
    return min(BACKOFF_BASE * (1 << min(attempts, 10)), BACKOFF_CAP)


def _maybe_sent(exc: BaseException) -> bool:
    """Could Slack have taken a request that failed this way? Not when the connection was
    refused or the name did not resolve; a timeout or a reset says nothing."""
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket's error
    cause = reason if isinstance(reason, BaseException) else exc
    return not isinstance(cause, ConnectionRefusedError | socket.gaierror | SlackClientError)


def _replace_text(node: Any, old: str, new: str) -> Any:
    """Block Kit `node` with every text equal to `old` replaced by `new`."""
    if isinstance(node, list):
        return [_replace_text(item, old, new) for item in node]
    if isinstance(node, dict):
        return {k: new if v == old else _replace_text(v, old, new) for k, v in node.items()}
    return node


def _retry_after(headers: dict[str, Any]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _span(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _ours(*mentions: str) -> frozenset[str]:
    """The mentions among these that cost-guard built (`<@U…>`: a resolved owner, the person
    who clicked), to be kept by `_esc`."""
    return frozenset(m for m in mentions if _MENTION.fullmatch(m))


def resource_page_url(cfg: Config, res: Resource) -> str | None:
    """The web console's page of `res` (guard/web/pages.py), when `serve.public_url` is set."""
    base = cfg.serve.base_url
    return None if base is None else f"{base}/resource/{quote(res.arn, safe=':/')}"


def _esc(text: str, ours: Collection[str] = ()) -> str:
    """Text for Slack mrkdwn: &, < and > escaped (so no one else's text can mention a user,
    @channel or @here, or forge a link), except in the mentions in `ours`."""
    if not ours:
        return _escape_plain(text)
    pattern = "|".join(re.escape(m) for m in sorted(ours, key=len, reverse=True))
    parts = re.split(f"({pattern})", text)
    return "".join(part if part in ours else _escape_plain(part) for part in parts if part)


def _escape_plain(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """Escaped text cut to `limit` characters without leaving half an entity (`&am`)."""
    return text if len(text) <= limit else re.sub(r"&[a-z]{0,3}$", "", text[:limit])
