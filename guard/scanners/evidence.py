"""What the on-instance heartbeat reported, read from the two tags it writes.

`cost-guard:last-activity` holds the newest activity it saw; `cost-guard:heartbeat` holds when
it last looked, whether Jupyter answered, and which evidence the activity came from
(`at=2026-12-01T15:05:00Z jupyter=ok by=terminal-job pid=4321 cmd=python train.py`). The
scanners fuse this with their own evidence (the newest wins) and turn a heartbeat that stopped
looking, or that could not reach Jupyter, into `unknown`: missing evidence is never idleness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from guard.config import Config
from guard.model import ActivitySource, Finding, parse_time
from guard.rules import human

# How far ahead of our clock a heartbeat's time may be before it is not believed.
CLOCK_SKEW = timedelta(minutes=10)

# The evidence codes the heartbeat writes (`by=`), in the words people read.
_WORDS = {
    "kernel-busy": "kernel busy",
    "kernel": "kernel used",
    "jupyter": "kernel or terminal used",
    "terminal": "terminal used",
    "code-editor": "Code Editor used",
}


@dataclass(frozen=True)
class Heartbeat:
    last_activity: datetime | None  # the last-activity tag
    at: datetime | None  # when it last looked; None for a heartbeat that does not say
    jupyter: str | None  # "ok", "down", "denied", "n/a"; None when not said
    evidence: str | None  # "terminal job `python train.py` running, pid 4321"

    def stopped(self, cfg: Config, now: datetime, running_since: datetime | None) -> bool:
        """It looked before, and has not for `heartbeat_stale_after` of this run. Tags outlive
        a stop: a look from before the current run only starts the wait at its start."""
        if self.at is None:
            return False  # an older heartbeat that does not say when it looks
        since = max(self.at, running_since) if running_since else self.at
        return now - since > cfg.heartbeat_stale_after

    def problem(self, cfg: Config, now: datetime, running_since: datetime | None) -> str | None:
        """Why this heartbeat's word cannot be trusted now, or None."""
        ahead = max(
            (t - now for t in (self.last_activity, self.at) if t is not None),
            default=timedelta(0),
        )
        if ahead > CLOCK_SKEW:
            # A wrong clock on the instance, or a hand-written tag: read as "active" it would
            # keep the resource running for ever, unseen. Unknown says so instead.
            return f"heartbeat tag dated {human(ahead)} in the future (the instance's clock?)"
        if self.stopped(cfg, now, running_since):
            assert self.at is not None
            return (
                f"heartbeat stopped: its last look was {human(now - self.at)} ago "
                f"(more than heartbeat_stale_after, {human(cfg.heartbeat_stale_after)})"
            )
        current = self.at is not None and (running_since is None or self.at >= running_since)
        if current and self.jupyter in ("down", "denied"):
            what = "unreachable" if self.jupyter == "down" else "refused the heartbeat (403)"
            return f"Jupyter {what} on the instance: kernels and terminals cannot be seen"
        return None


def read(tags: dict[str, str], cfg: Config) -> Heartbeat | None:
    """The heartbeat's report from a resource's tags; None when it never wrote one. A value
    that does not parse is ignored, never an error."""
    beat = parse_time(tags.get(cfg.tags.heartbeat))
    raw = tags.get(cfg.tags.heartbeat_state)
    if beat is None and not raw:
        return None
    fields: dict[str, str] = {}
    words = (raw or "").split(" ")
    for index, word in enumerate(words):
        key, sep, value = word.partition("=")
        if not sep:
            continue
        if key in ("cmd", "path"):  # free text, always last
            fields[key] = " ".join([value, *words[index + 1 :]]).strip()
            break
        fields[key] = value
    return Heartbeat(
        last_activity=beat,
        at=parse_time(fields.get("at")),
        jupyter=fields.get("jupyter"),
        evidence=_text(fields),
    )


def heartbeat_details(
    heartbeat: Heartbeat, source: ActivitySource, last_activity: datetime | None
) -> dict[str, Any]:
    """For `Resource.details`: the evidence text when the heartbeat's activity won, and when
    it last looked (stored with the snapshot, shown by the inventory and the messages)."""
    won = source is ActivitySource.HEARTBEAT_TAG and last_activity == heartbeat.last_activity
    return {
        "evidence": heartbeat.evidence if won else None,
        "heartbeat_at": heartbeat.at.isoformat() if heartbeat.at else None,
        "heartbeat_jupyter": heartbeat.jupyter,
    }


def _text(fields: dict[str, str]) -> str | None:
    code = fields.get("by")
    if not code:
        return None
    if code == "terminal-job":
        return f"terminal job `{fields.get('cmd', '?')}` running, pid {fields.get('pid', '?')}"
    if code == "process":
        return (
            f"process `{fields.get('cmd', '?')}` using {fields.get('cpu', '?')} % CPU, "
            f"pid {fields.get('pid', '?')}"
        )
    if code == "gpu":
        return f"GPU {fields.get('gpu', '?')} %"
    if code == "file":
        return f"file {fields.get('path', '?')} changed"
    return _WORDS.get(code, code)


def stopped_finding(account: str, region: str, what: str, names: list[str]) -> Finding:
    """One finding per account, region and kind: "heartbeat stopped on 3 notebooks"."""
    shown = ", ".join(sorted(names)[:5]) + (", …" if len(names) > 5 else "")
    plural = what if len(names) != 1 else what.removesuffix("s")
    return Finding(
        account=account,
        region=region,
        subject="heartbeat lifecycle script",
        problem=(
            f"heartbeat stopped on {len(names)} {plural} ({shown}): their activity is "
            "unknown, so no rule acts on them"
        ),
        fix=(
            "look at the heartbeat's log on the instance (notebook: "
            "/home/ec2-user/.cost-guard/heartbeat.log; Studio: /tmp/cost-guard/heartbeat.log), "
            "check the execution role may sagemaker:AddTags, and restart the resource so its "
            "lifecycle script runs again"
        ),
    )
