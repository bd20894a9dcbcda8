"""`make chaos`: the guard for 1,000+ cycles over a changing fleet, under random faults.

One simulated account (guard/sim), a FakeSlack (tests/fakeslack.py) and a Postgres database of
its own behind a TCP proxy (tests/tcpproxy.py), all on 127.0.0.1. Each cycle moves the injected
clock 5 minutes; between cycles the "people" change the fleet: notebooks get busy or idle, are
started again after the guard stopped them, get snoozed; endpoints get invoked, are recreated
after a delete; training jobs stall or work and new ones start. Two notebooks carry the exempt
tag. Then, at random:

- AWS faults through the simulator's fault layer (denied, resets, timeouts, slow, expired
  credentials, throttling, 5xx, HTML 502, "applied then dropped"), 1-3 requests each;
- Slack faults through FakeSlack (429 + Retry-After, 5xx, HTML 502, ok:false, hang past the
  client's timeout, reset before or after Slack took the message);
- SIGKILLs: a sample of cycles runs in a child process (`--child`) with COST_GUARD_FAILPOINT
  naming a failpoint (guard/failpoints.py), so it dies there if the cycle gets that far;
- database outages: the proxy cuts every connection mid-cycle and refuses new ones for a few
  seconds, while cycles keep being attempted.

At the end every fault is removed, cycles run until the Slack outbox is drained, and the
actions are reconciled once more. It prints the figures and exits 1 unless every one of these
is 0: wrong actions (a stop/delete on a resource that was busy, exempt or snoozed at that
cycle), double actions (two done actions in one episode), crashes (a cycle that raised for
another reason than the injected database outage, or a traceback in the log), messages lost
(an episode warned about with no top-level Slack post), messages duplicated (more than one
top-level post for one episode), intents without outcome.

    python -m bench.chaos [--cycles 1000] [--seed 7] [--db postgres|sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from guard.config import Config, Secrets
from guard.cycle import Guard, run_cycle
from guard.failpoints import ENV as FAILPOINT_ENV
from guard.failpoints import POINTS
from guard.model import ManualClock
from guard.sim import Simulator
from guard.store import Store, normalize_url, upgrade
from guard.wiring import build_guard
from tests.fakeslack import FakeSlack
from tests.tcpproxy import TcpProxy

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
CHANNEL = "C0CHAOS01"
TOKEN = "xoxb-chaos"
IDLE = {
    "notebook": timedelta(hours=1),
    "endpoint": timedelta(hours=2),
    "training_job": timedelta(minutes=30),
}
AWS_FAULTS = (
    "denied", "reset", "reset-mid", "timeout", "slow", "expired", "throttle", "5xx", "html502",
    "applied-reset",
)  # fmt: skip
AWS_OPERATIONS = (
    "*", "sagemaker:*", "logs:*", "cloudwatch:*", "tagging:*",
    "sagemaker:DescribeNotebookInstance", "sagemaker:StopNotebookInstance",
    "sagemaker:DescribeEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpointConfig",
    "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
)  # fmt: skip
CHILD_TIMEOUT = 120  # seconds: a child cycle that hangs fails the run instead of stalling it
MAX_DRAIN_CYCLES = 30
LOG_PATH = Path(tempfile.gettempdir()) / "cost-guard-chaos.log"  # warnings and errors

log = logging.getLogger("chaos")


def guard_config(db_url: str, slack_url: str) -> dict[str, Any]:
    return {
        "database_url": db_url,
        "mode": "enforce",
        "scan_interval": "5m",
        "kinds": ["notebook", "endpoint", "training_job"],
        "pricing": {"source": "bundled"},
        "slack": {"channel": CHANNEL, "base_url": slack_url, "timeout_seconds": 1},
        "rules": [
            {"id": "idle-notebooks", "kind": "notebook", "idle_for": "1h", "action": "stop",
             "grace": "15m"},
            {"id": "idle-endpoints", "kind": "endpoint", "idle_for": "2h", "action": "delete",
             "grace": "30m"},
            {"id": "stalled-training", "kind": "training_job",
             "utilization_below": {"gpu": 5, "for": "30m"}, "action": "stop", "grace": "10m"},
        ],
    }  # fmt: skip


def make_guard(settings: dict[str, Any], clock: ManualClock) -> Guard:
    secrets = Secrets.model_validate({"SLACK_BOT_TOKEN": TOKEN})
    return build_guard(Config.model_validate({**settings, "secrets": secrets}), clock)


# --- the fleet and its people ------------------------------------------------------------------


@dataclass
class Thing:
    kind: str
    name: str
    arn: str
    busy: bool
    exempt: bool = False
    last_active: datetime | None = None
    back_at: datetime | None = None  # stopped/deleted/finished: its owner brings it back then
    slot: int = 0
    gen: int = 0


class World:
    """The fleet's truth, changed between cycles; `protected(now)` says what must not be
    acted on at `now` (busy by the rule's own measure, exempt, or snoozed)."""

    def __init__(self, sim: Simulator, people: Store, rng: random.Random) -> None:
        self.sim, self.people, self.rng = sim, people, rng
        self.things: list[Thing] = []
        self.snoozed: dict[str, datetime] = {}
        self.history: dict[datetime, dict[str, str]] = {}

    def seed(self, now: datetime) -> None:
        sim = self.sim
        for i in range(10):
            name = f"nb-{i:02d}"
            exempt = i < 2
            tags = {"owner": f"user{i}@example.com"}
            if exempt:
                tags["cost-guard:exempt"] = "true"
            arn = sim.add_notebook(name, in_service_since=now - timedelta(hours=6), tags=tags)
            thing = Thing("notebook", name, arn, busy=i % 3 == 0, exempt=exempt)
            if not thing.busy:
                thing.last_active = now - timedelta(minutes=self.rng.randint(10, 180))
                sim.jupyter_activity(name, thing.last_active)
            self.things.append(thing)
        for i in range(4):
            name = f"ep-{i}"
            arn = sim.add_endpoint(
                name, created_at=now - timedelta(days=1), tags={"owner": f"team{i}@example.com"}
            )
            self.things.append(Thing("endpoint", name, arn, busy=i == 0))
        for slot in range(3):
            self._new_job(slot, 0, now)

    def _new_job(self, slot: int, gen: int, now: datetime) -> None:
        name = f"train-{slot}-{gen}"
        arn = self.sim.add_training_job(name, started_at=now, tags={"owner": "ml@example.com"})
        busy = self.rng.random() < 0.5
        self.things = [t for t in self.things if not (t.kind == "training_job" and t.slot == slot)]
        self.things.append(Thing("training_job", name, arn, busy=busy, slot=slot, gen=gen))

    def step(self, now: datetime, calm: bool = False) -> None:
        """What people do in the 5 minutes before the cycle at `now`."""
        rng, sim = self.rng, self.sim
        sim.settle()
        for thing in list(self.things):
            if thing.kind == "notebook":
                self._notebook(thing, now, calm)
            elif thing.kind == "endpoint":
                self._endpoint(thing, now, calm)
            else:
                self._job(thing, now, calm)
        if not calm and rng.random() < 0.04:  # someone snoozes a resource (Slack, CLI)
            thing = rng.choice([t for t in self.things if not t.exempt])
            until = now + timedelta(minutes=rng.choice([30, 60, 120, 240]))
            self.people.snooze(thing.arn, until, "chaos", "chaos-person", now)
            self.snoozed[thing.arn] = until
        self.history[now] = self.protected(now)

    def _active(self, thing: Thing, now: datetime) -> None:
        thing.last_active = now - timedelta(minutes=1)
        if thing.kind == "notebook":
            self.sim.jupyter_activity(thing.name, thing.last_active)
        elif thing.kind == "endpoint":
            self.sim.invocations(thing.name, [thing.last_active])

    def _toggle(self, thing: Thing, p: float, calm: bool) -> None:
        if not calm and not thing.exempt and self.rng.random() < p:
            thing.busy = not thing.busy

    def _notebook(self, thing: Thing, now: datetime, calm: bool) -> None:
        status = self.sim.notebook_status(thing.name)
        if status in ("Stopping", "Stopped"):
            if thing.back_at is None:
                thing.back_at = now + timedelta(minutes=self.rng.randint(30, 240))
            elif now >= thing.back_at and not calm:  # its owner starts it again, to work
                self.sim.start_notebook(thing.name)
                thing.back_at, thing.busy = None, True
                self._active(thing, now)
            return
        self._toggle(thing, 0.04, calm)
        if thing.busy:
            self._active(thing, now)

    def _endpoint(self, thing: Thing, now: datetime, calm: bool) -> None:
        if self.sim.endpoint_status(thing.name) is None:
            if thing.back_at is None:
                thing.back_at = now + timedelta(minutes=self.rng.randint(60, 300))
            elif now >= thing.back_at and not calm:  # its team deploys it again
                client = self.sim.client("sagemaker")
                client.create_endpoint(
                    EndpointName=thing.name, EndpointConfigName=f"{thing.name}-config"
                )
                endpoint = self.sim._sagemaker(self.sim.regions[0]).endpoints[thing.name]
                endpoint.endpoint_status = "InService"
                thing.back_at, thing.busy = None, True
                self._active(thing, now)
            return
        self._toggle(thing, 0.03, calm)
        if thing.busy:
            self._active(thing, now)

    def _job(self, thing: Thing, now: datetime, calm: bool) -> None:
        status = self.sim.job_status("training_job", thing.name)
        if status != "InProgress":
            if thing.back_at is None:
                thing.back_at = now + timedelta(minutes=self.rng.randint(10, 60))
            elif now >= thing.back_at and not calm:
                self._new_job(thing.slot, thing.gen + 1, now)
            return
        if not calm and thing.busy and self.rng.random() < 0.05:
            thing.busy = False  # a hung data loader
        gpu = 85.0 if thing.busy else 1.0
        self.sim.gpu_utilization(thing.name, [(now - timedelta(minutes=1), gpu)])
        if thing.busy:
            thing.last_active = now - timedelta(minutes=1)

    def protected(self, now: datetime) -> dict[str, str]:
        found: dict[str, str] = {}
        for thing in self.things:
            if thing.exempt:
                found[thing.arn] = "exempt"
            elif self.snoozed.get(thing.arn, now) > now:
                found[thing.arn] = "snoozed"
            elif thing.last_active is not None and thing.last_active > now - IDLE[thing.kind]:
                found[thing.arn] = "busy"
        return found


# --- faults --------------------------------------------------------------------------------------


def aws_fault(sim: Simulator, rng: random.Random, faults: Counter[str]) -> None:
    kind = rng.choice(AWS_FAULTS)
    seconds = {"timeout": 1.0, "slow": 0.3}.get(kind)
    sim.inject(kind, rng.choice(AWS_OPERATIONS), times=rng.randint(1, 3), seconds=seconds)
    faults[f"aws:{kind}"] += 1


def slack_fault(slack: FakeSlack, rng: random.Random, faults: Counter[str]) -> None:
    method = rng.choice([None, "chat.postMessage", "chat.postMessage", "chat.update"])
    count = rng.randint(1, 3)
    choice = rng.randrange(7)
    if choice == 0:
        slack.fail(method, "status", count, status=429, retry_after=rng.choice([1, 30, 120]))
        faults["slack:429"] += 1
    elif choice == 1:
        slack.fail(method, "status", count, status=rng.choice([500, 503]))
        faults["slack:5xx"] += 1
    elif choice == 2:
        slack.fail(method, "status", count, status=502, html=True)
        faults["slack:html502"] += 1
    elif choice == 3:
        slack.fail(method, "error", count, error=rng.choice(["internal_error", "fatal_error"]))
        faults["slack:ok-false"] += 1
    elif choice == 4:
        slack.fail(method, "hang", 1)  # longer than the client's 1 s timeout
        faults["slack:timeout"] += 1
    else:
        accept = choice == 6
        slack.fail(method, "reset", count, accept=accept)
        faults["slack:reset-after-accept" if accept else "slack:reset"] += 1


def clear_slack_faults(slack: FakeSlack) -> None:
    with slack._lock:
        slack._faults.clear()


# --- the run -------------------------------------------------------------------------------------


class Tracebacks(logging.Handler):
    """Counts log records that carry a traceback (a bug, or a failure told too loudly)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def chaos_database(kind: str) -> Any:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/chaos.db"
            upgrade(url)
            yield url
        return
    admin_url = make_url(
        normalize_url(
            os.environ.get(
                "COST_GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
            )
        )
    )
    if admin_url.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"chaos runs on a local Postgres only, not {admin_url.host}")
    name = f"cost_guard_chaos_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def child_cycle(settings_path: str, now: str) -> None:
    """`--child`: one cycle at `now`, in a process the parent may see killed at a failpoint."""
    logging.basicConfig(level=logging.WARNING, format="child %(levelname)s %(name)s %(message)s")
    settings = json.loads(Path(settings_path).read_text())
    run_cycle(make_guard(settings, ManualClock(datetime.fromisoformat(now))))


def run(cycles: int, seed: int, db: str, kill_share: float, outages: int) -> int:
    wall = time.monotonic()
    rng = random.Random(seed)
    logging.basicConfig(
        level=logging.WARNING, filename=LOG_PATH, filemode="w",
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )  # fmt: skip
    tracebacks = Tracebacks()
    logging.getLogger().addHandler(tracebacks)
    clock = ManualClock(START)
    sim = Simulator(clock).start()
    slack = FakeSlack(clock=lambda: clock.now().timestamp()).start()  # ts on the same clock
    faults: Counter[str] = Counter()
    figures: Counter[str] = Counter()
    crashes: list[str] = []
    try:
        with chaos_database(db) as url, sim.environment(), tempfile.TemporaryDirectory() as tmp:
            os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
            proxy: TcpProxy | None = None
            guard_url = url
            if db == "postgres":
                parsed = make_url(normalize_url(url))
                proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432).start()
                guard_url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
                    hide_password=False
                )
            settings = guard_config(guard_url, slack.api_url)
            child_settings = Path(tmp) / "child.json"
            child_settings.write_text(json.dumps(guard_config(url, slack.api_url)))
            people = Store(url)  # the people's side (snoozes) and the final checks: no proxy
            world = World(sim, people, rng)
            world.seed(clock.now())
            guard = make_guard(settings, clock)
            replica = make_guard(settings, clock)  # a second replica on the same database
            open_since: dict[int, int] = {}  # intent id -> the cycle that first saw it open
            window = range(min(50, cycles // 4), max(cycles - 20, cycles // 2))
            outage_at = set(rng.sample(window, min(outages, len(window)))) if proxy else set()
            for n in range(cycles):
                clock.advance(STEP)
                now = clock.now()
                sim.heal()
                slack.release()
                slack._release.clear()
                world.step(now)
                if rng.random() < 0.2:
                    aws_fault(sim, rng, faults)
                if rng.random() < 0.2:
                    slack_fault(slack, rng, faults)
                figures["cycles"] += 1
                if n in outage_at and proxy is not None:
                    faults["db-outage"] += 1
                    database_outage(guard, proxy, rng, figures, crashes)
                elif rng.random() < kill_share:
                    # armed at a few points: it dies at the first one its cycle reaches, if any
                    armed = rng.sample(POINTS, 4)
                    killed = run_child(child_settings, now, armed, sim, crashes)
                    figures["child cycles"] += 1
                    if killed:
                        faults[f"kill:{killed}"] += 1
                elif rng.random() < 0.25:
                    replicas_cycle(guard, replica, figures, crashes)
                else:
                    in_process_cycle(guard, figures, crashes)
                if n not in outage_at:
                    open_too_long(people, open_since, n, figures)
                if n % 100 == 99:
                    print(f"  {n + 1} cycles, {time.monotonic() - wall:.0f}s", flush=True)
            # The final drain: no faults, the clock past every backoff, the outbox emptied.
            sim.heal()
            clear_slack_faults(slack)
            slack.release()
            if proxy is not None:
                proxy.restore()
            for _ in range(MAX_DRAIN_CYCLES):
                clock.advance(timedelta(minutes=20))
                world.step(clock.now(), calm=True)
                in_process_cycle(guard, figures, crashes)
                figures["drain cycles"] += 1
                if not people.pending_messages() and figures["drain cycles"] >= 2:
                    break
            guard.actions.reconcile()
            result = judge(people, world, slack)
            result["intents open past their next cycle"] = figures.pop("intents open too long", 0)
            guard.store.close()
            replica.store.close()
            people.close()
            if proxy is not None:
                proxy.stop()
    finally:
        slack.stop()
        sim.stop()
    crashes.extend(f"traceback logged: {t}" for t in tracebacks.records)
    result["crashes"] = len(crashes)
    return report(figures, faults, result, crashes, time.monotonic() - wall)


def in_process_cycle(guard: Guard, figures: Counter[str], crashes: list[str]) -> None:
    try:
        report = run_cycle(guard)
    except Exception as exc:
        crashes.append(f"cycle raised {type(exc).__name__}: {str(exc)[:300]}")
        return
    if report.get("skipped"):
        figures["skipped (lock busy)"] += 1
        return
    figures["in-process cycles"] += 1
    figures["actions done"] += sum(a["outcome"] == "done" for a in report["actions"])
    figures["warnings"] += report["warnings"]


def replicas_cycle(guard: Guard, replica: Guard, figures: Counter[str], crashes: list[str]) -> None:
    """Both replicas start a cycle at once: the cycle lock lets one run it, the other skips
    (or waits its short turn and finds nothing left to do)."""
    other = threading.Thread(target=in_process_cycle, args=(replica, figures, crashes))
    other.start()
    in_process_cycle(guard, figures, crashes)
    other.join(timeout=CHILD_TIMEOUT)
    figures["cycles with two replicas"] += 1


def open_too_long(
    store: Store, open_since: dict[int, int], cycle: int, figures: Counter[str]
) -> None:
    """An intent still open after the cycle that follows the one that wrote it (every cycle
    reconciles first) is one left open too long. AWS failing the reconcile's own describe
    keeps it open rightly, and that is what this figure would show."""
    try:
        open_now = {row.id for row in store.unfinished_actions()}
    except SQLAlchemyError:
        return
    for action_id in list(open_since):
        if action_id not in open_now:
            del open_since[action_id]
    for action_id in open_now:
        first = open_since.setdefault(action_id, cycle)
        if cycle - first == 1:  # still open at the end of the cycle after it was seen open
            figures["intents open too long"] += 1


def database_outage(
    guard: Guard, proxy: TcpProxy, rng: random.Random, figures: Counter[str], crashes: list[str]
) -> None:
    """Cut every connection a moment into a cycle, refuse new ones for a few seconds while
    cycles keep coming, then let the database back."""
    cutter = threading.Timer(rng.uniform(0.0, 0.3), proxy.cut)
    cutter.start()
    until = time.monotonic() + rng.uniform(3.0, 8.0)
    try:
        for _ in range(20):  # bounded: a cycle a second at most
            try:
                run_cycle(guard)
                figures["cycles survived a cut"] += 1
            except SQLAlchemyError:
                figures["cycles failed: database down"] += 1  # expected: what the daemon logs
            except Exception as exc:
                crashes.append(f"cycle raised in an outage {type(exc).__name__}: {exc}"[:300])
            if time.monotonic() >= until:
                break
            time.sleep(1.0)
    finally:
        cutter.cancel()
        cutter.join()
        proxy.restore()


def run_child(
    settings: Path, now: datetime, points: list[str], sim: Simulator, crashes: list[str]
) -> str | None:
    """One cycle in a child process armed to die at `points`; the point it died at, if any."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COST_GUARD_", "SLACK_"))}
    env |= sim.env() | {FAILPOINT_ENV: ",".join(points), "AWS_DEFAULT_REGION": "us-east-1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--child", str(settings), "--now", now.isoformat()],
        env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False,
    )  # fmt: skip
    if proc.returncode == -signal.SIGKILL:
        died = [p for p in points if f"failpoint {p} reached" in proc.stderr]
        return died[0] if died else "unknown"
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        crashes.append(f"child cycle exited {proc.returncode}: {proc.stderr[-500:]}")
    return None


def judge(store: Store, world: World, slack: FakeSlack) -> dict[str, Any]:
    audit = store.audit(START - timedelta(days=1))
    acts = [a for a in audit if a.action in ("stop", "delete") and a.outcome == "done"]
    wrong = []
    for a in acts:
        at = a.at if a.at.tzinfo else a.at.replace(tzinfo=UTC)
        why = world.history.get(at, {}).get(a.arn)
        if why is not None:
            wrong.append(f"{a.action} {a.name} at {at.isoformat()}: it was {why}")
    per_episode = Counter(a.episode_id for a in acts if a.episode_id is not None)
    doubles = [e for e, n in per_episode.items() if n > 1]
    warned = {a.episode_id for a in audit if a.action == "warn" and a.episode_id is not None}
    posts: Counter[int] = Counter()
    for call in slack.accepted("chat.postMessage"):
        if call.body.get("thread_ts"):
            continue
        meta = call.body.get("metadata") or {}
        key = str((meta.get("event_payload") or {}).get("key", ""))
        if key.startswith("episode:") and not key.endswith(":dm"):
            posts[int(key.split(":")[1])] += 1
    return {
        "actions done (audit)": len(acts),
        "episodes warned": len(warned),
        "top-level posts": sum(posts.values()),
        "wrong actions": len(wrong),
        "double actions": len(doubles),
        "messages lost": len([e for e in warned if posts[e] == 0]),
        "messages duplicated": len([e for e, n in posts.items() if n > 1]),
        "messages still queued": len(store.pending_messages()),
        "intents without outcome": len(store.unfinished_actions()),
        "_wrong": wrong,
        "_doubles": doubles,
    }


MUST_BE_ZERO = (
    "wrong actions", "double actions", "crashes", "messages lost", "messages duplicated",
    "intents without outcome", "intents open past their next cycle",
)  # fmt: skip


def report(
    figures: Counter[str],
    faults: Counter[str],
    result: dict[str, Any],
    crashes: list[str],
    seconds: float,
) -> int:
    print("chaos run")
    for key, value in sorted(figures.items()):
        print(f"  {key}: {value}")
    print(f"  faults injected: {sum(faults.values())}")
    for key, value in sorted(faults.items()):
        print(f"    {key}: {value}")
    for key, value in result.items():
        if not key.startswith("_"):
            print(f"  {key}: {value}")
    print(f"  wall time: {seconds:.0f}s (log: {LOG_PATH})")
    for line in [*result["_wrong"], *crashes][:20]:
        print(f"  ! {line}")
    bad = [key for key in MUST_BE_ZERO if result[key]]
    print("FAILED: " + ", ".join(bad) if bad else "OK: every figure that must be 0 is 0")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--kill-share", type=float, default=0.12, help="cycles run as children")
    parser.add_argument("--outages", type=int, default=4, help="database outages (postgres)")
    parser.add_argument("--child", metavar="SETTINGS", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_cycle(args.child, args.now)
        return
    sys.exit(run(args.cycles, args.seed, args.db, args.kill_share, args.outages))


if __name__ == "__main__":
    main()
