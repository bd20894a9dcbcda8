"""Trust under failure, AWS side: every fault kind of the simulator (guard/sim/faults.py), over
HTTP, at the client and at the cycle. No traceback, every failure reported once with its
operation, account and region, nothing acted on from failed evidence, and an action whose
answer was lost settled once by the next cycle's reconcile."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.config import Config as BotoConfig

from guard.aws import AWS_ERRORS, Aws, error_text
from guard.config import Account, Config, Secrets
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.sim import Simulator
from guard.wiring import build_guard
from tests.factories import notebook

ACCOUNT = "123456789012"
LIST = "sagemaker:ListNotebookInstances"
STOP = "sagemaker:StopNotebookInstance"
DESCRIBE = "sagemaker:DescribeNotebookInstance"
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "0s"}
# What each kind looks like in one line: (error kind, words in the line)
KINDS: dict[str, str] = {
    "denied": "AccessDeniedException: simulated failure",
    "reset": "connection reset before a complete answer (http://127.0.0.1:",
    "reset-mid": "connection reset before a complete answer (http://127.0.0.1:",
    "timeout": "read timeout: no answer in time (http://127.0.0.1:",
    "expired": "ExpiredTokenException: The security token included in the request is expired",
    "throttle": "ThrottlingException: Rate exceeded",
    "5xx": "ServiceUnavailableException: Service is unavailable",
    "html502": "HTTP 502 Bad Gateway",
    "applied-reset": "connection reset before a complete answer (http://127.0.0.1:",
}


HANG = 6  # seconds a "timeout" fault holds the answer: past fast_aws' read timeout


def fast_aws() -> Aws:
    """One attempt per call and a 3 s read timeout: a fault is seen at once (the retries and
    their backoff are botocore's, tested there), while a loaded CI machine's slow answer is
    not taken for one."""
    return Aws(
        config=BotoConfig(
            retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=3, connect_timeout=3
        )
    )


def make_guard(clock: ManualClock, db_url: str, **settings: Any) -> Guard:
    cfg = Config.model_validate(
        {
            "database_url": db_url,
            "secrets": Secrets.model_validate({}),
            "kinds": ["notebook"],
            "pricing": {"source": "bundled"},
            "rules": [IDLE_STOP],
            **settings,
        }
    )
    return build_guard(cfg, clock, aws=fast_aws())


def seed_idle(sim: Simulator, clock: ManualClock, name: str = "idle") -> str:
    arn = sim.add_notebook(name, "ml.m5.xlarge", in_service_since=clock.now() - timedelta(hours=5))
    sim.jupyter_activity(name, clock.now() - timedelta(hours=3))
    return arn


def one_line(text: str) -> None:
    assert "\n" not in text and "Traceback" not in text and "<html" not in text.lower(), text
    assert "internal error" not in text and "TypeError" not in text, text


# --- the client: each kind becomes one readable line, counted once -------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_fault_kind_is_one_line_naming_operation_account_and_region(
    kind: str, aws_env: Simulator
) -> None:
    aws = fast_aws()
    aws.account_id(None, "us-east-1")  # the default account's id, for the label
    client = aws.client(None, "us-east-1", "sagemaker")
    aws_env.inject(kind, LIST, seconds=HANG if kind == "timeout" else None)
    with pytest.raises(AWS_ERRORS) as failed:
        client.list_notebook_instances()
    text = error_text(failed.value)
    one_line(text)
    assert text.startswith(f"{LIST} in {ACCOUNT}/us-east-1: "), text
    assert KINDS[kind] in text, text
    assert aws.counter.errors() == {LIST: 1}  # once: a connection failure used to be a TypeError


def test_an_accounts_regions_scanned_at_once_verify_it_with_one_call(aws_env: Simulator) -> None:
    """An account's regions are scanned at once: each thread but the first waits for its
    GetCallerIdentity (slowed here, so that all of them ask while it is on its way) rather
    than asking too. A failed answer is not kept: the next caller asks again."""
    aws = fast_aws()
    aws_env.slow("sts:GetCallerIdentity", seconds=0.3)
    configured = Account(id=ACCOUNT, name="platform")
    asks = [(who, region) for who in (None, configured) for region in ("us-east-1", "us-west-2")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda ask: aws.account_id(*ask), asks * 2))
    assert ids == [ACCOUNT] * 8
    assert aws.counter.snapshot() == {"sts:GetCallerIdentity": 2}  # the default and the one

    aws_env.heal()
    aws = fast_aws()
    aws_env.inject("denied", "sts:GetCallerIdentity", times=1)
    with pytest.raises(AWS_ERRORS):
        aws.account_id(configured, "us-east-1")
    assert aws.account_id(configured, "us-west-2") == ACCOUNT
    assert aws.counter.snapshot() == {"sts:GetCallerIdentity": 2}


def test_connection_refused_and_missing_credentials_are_one_line(
    aws_env: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = fast_aws()
    client = aws.client(None, "us-east-1", "sagemaker")
    with aws_env.outage(), pytest.raises(AWS_ERRORS) as refused:
        client.list_notebook_instances()
    text = error_text(refused.value)
    one_line(text)
    assert (
        text == f"{LIST} in default account/us-east-1: connection refused ({aws_env.endpoint_url}/)"
    )
    assert client.list_notebook_instances()["NotebookInstances"] == []  # back up: it answers

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bare = fast_aws()
    with pytest.raises(AWS_ERRORS) as no_credentials:
        bare.client(None, "eu-west-1", "sagemaker").list_notebook_instances()
    text = error_text(no_credentials.value)
    one_line(text)
    assert text.startswith(f"{LIST} in default account/eu-west-1: no AWS credentials found")
    assert bare.counter.errors() == {LIST: 1}


def test_faults_narrow_by_account_region_times_and_rate(aws_env: Simulator) -> None:
    aws = fast_aws()
    east = aws.client(None, "us-east-1", "sagemaker")
    west = aws.client(None, "us-west-2", "sagemaker")
    fault = aws_env.inject("throttle", LIST, region="us-west-2", times=2)
    east.list_notebook_instances()
    for _ in range(2):
        with pytest.raises(AWS_ERRORS):
            west.list_notebook_instances()
    west.list_notebook_instances()  # ran out
    assert fault.hits == 2
    other = aws_env.inject("reset", "sagemaker:*", account="210987654321")
    east.list_notebook_instances()  # another account's fault
    other.off()
    later = aws_env.inject("denied", LIST, after=STOP)
    east.list_notebook_instances()  # no stop yet
    assert later.hits == 0
    later.off()
    flaky = aws_env.inject("5xx", LIST, rate=0.5)
    outcomes = []
    for _ in range(20):
        try:
            east.list_notebook_instances()
            outcomes.append(True)
        except AWS_ERRORS:
            outcomes.append(False)
    assert 0 < flaky.hits < 20 and outcomes.count(False) == flaky.hits


def test_a_transient_fault_is_absorbed_by_botocores_retries(
    aws_env: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")  # the standard variable is honoured
    aws = Aws()
    aws_env.inject("html502", LIST, times=1)
    aws_env.inject("reset", LIST, times=1)
    assert aws.client(None, "us-east-1", "sagemaker").list_notebook_instances() is not None
    assert aws.counter.errors() == {}


# --- the cycle: no traceback, reported once, unknown never acted on ------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_failing_listing_is_one_blind_spot_and_the_cycle_completes(
    kind: str, aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed_idle(aws_env, clock)
    guard = make_guard(clock, fresh_sqlite_url, mode="enforce")
    aws_env.inject(kind, LIST, seconds=HANG if kind == "timeout" else None)
    report = run_cycle(guard)
    for error in report["errors"]:
        one_line(error)
    [error] = report["errors"]
    assert f"{LIST} in {ACCOUNT}/us-east-1: {KINDS[kind]}" in error, error
    assert report["actions"] == [] and STOP not in aws_env.request_counts
    assert report["api_errors"] == {LIST: 1}
    pending = guard.store.pending_messages()
    blind = [m for m in pending if "cannot see" in str(m.title if hasattr(m, "title") else m)]
    assert len(blind) <= 1


@pytest.mark.parametrize("kind", ["reset", "timeout", "expired", "throttle", "5xx", "html502"])
def test_failed_evidence_makes_the_notebook_unknown_and_it_is_not_stopped(
    kind: str, aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed_idle(aws_env, clock)
    guard = make_guard(clock, fresh_sqlite_url, mode="enforce")
    aws_env.inject(kind, "logs:*", seconds=HANG if kind == "timeout" else None)
    report = run_cycle(guard)
    assert report["by_kind"]["notebook"]["unknown"] == 1
    assert report["actions"] == [] and STOP not in aws_env.request_counts
    assert report["errors"], report
    for error in report["errors"]:
        one_line(error)
    assert any("logs:" in e and f"in {ACCOUNT}/us-east-1: " in e for e in report["errors"])

    aws_env.heal()  # the evidence is back: the idle notebook is stopped
    report = run_cycle(guard)
    assert [a["outcome"] for a in report["actions"]] == ["done"], report["actions"]


@pytest.mark.parametrize("kind", ["reset", "timeout", "throttle", "5xx", "html502", "expired"])
def test_a_failing_stop_is_one_failed_action_and_no_traceback(
    kind: str, aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed_idle(aws_env, clock)
    guard = make_guard(clock, fresh_sqlite_url, mode="enforce")
    aws_env.inject(kind, STOP, seconds=HANG if kind == "timeout" else None)
    report = run_cycle(guard)
    [action] = report["actions"]
    assert action["outcome"] == "failed", action
    one_line(action["detail"])
    assert f"{STOP} in {ACCOUNT}/us-east-1: {KINDS[kind]}" in action["detail"]
    assert aws_env.notebook_status("idle") == "InService"
    assert guard.store.unfinished_actions() == []  # no answer, but the resource was checked
    assert [a.outcome for a in guard.store.audit(clock.now()) if a.action == "stop"] == ["failed"]


def test_a_stop_applied_but_answered_by_a_reset_is_done_at_once(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed_idle(aws_env, clock)
    guard = make_guard(clock, fresh_sqlite_url, mode="enforce")
    aws_env.inject("applied-reset", STOP)
    report = run_cycle(guard)
    [action] = report["actions"]
    assert action["outcome"] == "done", action
    assert "its answer was lost" in action["detail"] and "connection reset" in action["detail"]
    assert aws_env.notebook_status("idle") == "Stopping"


def test_a_lost_answer_that_cannot_be_checked_is_settled_once_by_the_next_cycle(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed_idle(aws_env, clock)
    guard = make_guard(clock, fresh_sqlite_url, mode="enforce")
    aws_env.inject("applied-reset", STOP)
    aws_env.inject("reset", DESCRIBE, after=STOP)  # the re-check after the stop fails too
    report = run_cycle(guard)
    [action] = report["actions"]
    assert action["outcome"] == "failed"
    assert "AWS may have applied it" in action["detail"] and "next cycle" in action["detail"]
    [row] = guard.store.unfinished_actions()
    assert row.outcome == "sending"

    aws_env.heal()
    clock.advance(timedelta(minutes=10))
    report = run_cycle(guard)
    assert guard.store.unfinished_actions() == []
    stops = [a for a in guard.store.audit(clock.now() - timedelta(days=1)) if a.action == "stop"]
    assert [a.outcome for a in stops] == ["done"], [(a.outcome, a.detail) for a in stops]
    assert "after the call was sent" in stops[0].detail and "(reconciled)" in stops[0].detail
    assert aws_env.request_counts[STOP] == 1  # never stopped twice
    assert len(guard.store.savings(clock.now())) == 1


# --- reconcile: from the live state, every cycle, never raising ----------------------------


def _intent(guard: Guard, clock: ManualClock, arn: str, outcome: str, episode: int | None) -> int:
    res = notebook(clock.now(), "idle", arn=arn)  # Resource is slotted: no __dict__ to copy
    action_id = guard.store.record_action(
        res, rule_id="idle", episode_id=episode, action="stop", mode="enforce",
        outcome="intended", detail="idle", now=clock.now(),
    )  # fmt: skip
    if outcome == "sending":
        guard.store.mark_action_sending(action_id, clock.now())
    return action_id


def test_reconcile_records_what_really_happened(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    arn = seed_idle(aws_env, clock)
    guard = make_guard(clock, fresh_sqlite_url)  # dry-run: the cycle only saves the snapshot
    run_cycle(guard)
    episode = guard.store.start_episode(arn, "idle", clock.now(), clock.now())

    never_sent = _intent(guard, clock, arn, "intended", episode)
    sent_no_effect = _intent(guard, clock, arn, "sending", episode)
    settled = guard.actions.reconcile()
    assert settled.errors == []
    rows = {a.id: a for a in guard.store.audit(clock.now() - timedelta(days=1))}
    assert rows[never_sent].outcome == "failed"
    assert "interrupted before the call was sent" in rows[never_sent].detail
    assert rows[sent_no_effect].outcome == "failed"
    assert "after the call was sent" in rows[sent_no_effect].detail

    aws_env.client("sagemaker").stop_notebook_instance(NotebookInstanceName="idle")
    sent = _intent(guard, clock, arn, "sending", episode)
    clock.advance(timedelta(minutes=1))
    retry_not_sent = _intent(guard, clock, arn, "intended", episode)
    guard.actions.reconcile()
    rows = {a.id: a for a in guard.store.audit(clock.now() - timedelta(days=1))}
    assert (rows[sent].outcome, "(reconciled)" in rows[sent].detail) == ("done", True)
    # Its call never went out, and the stop is already recorded as done: not a second one.
    assert rows[retry_not_sent].outcome == "skipped", rows[retry_not_sent].detail
    assert f"action {sent} did it" in rows[retry_not_sent].detail
    assert len(guard.store.savings(clock.now())) == 1


def test_savings_count_one_done_action_per_episode(
    clock: ManualClock, fresh_sqlite_url: str, aws_env: Simulator
) -> None:
    guard = make_guard(clock, fresh_sqlite_url)
    res = notebook(clock.now(), "nb", usd_per_hour=Decimal("1"))
    episode = guard.store.start_episode(res.arn, "idle", clock.now(), clock.now())
    for _ in range(2):  # e.g. an interrupted stop settled as done, and the stop that followed
        guard.store.record_action(
            res, rule_id="idle", episode_id=episode, action="stop", mode="enforce",
            outcome="done", detail="", now=clock.now(),
        )  # fmt: skip
    clock.advance(timedelta(hours=2))
    [saving] = guard.store.savings(clock.now())
    assert saving.usd(clock.now() - timedelta(days=1)) == Decimal("2")


def test_reconcile_runs_every_cycle_and_never_raises_while_aws_is_down(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    arn = seed_idle(aws_env, clock)
    guard = make_guard(clock, fresh_sqlite_url)
    run_cycle(guard)
    left = _intent(guard, clock, arn, "intended", None)
    with aws_env.outage():
        # A process starting now (daemon, Lambda cold start) builds its guard anyway.
        rebuilt = make_guard(clock, fresh_sqlite_url)
        report = run_cycle(rebuilt)
    assert [r.id for r in rebuilt.store.unfinished_actions()] == [left]
    reconcile_errors = [e for e in report["errors"] if f"action {left}" in e]
    [error] = reconcile_errors
    one_line(error)
    # A fresh process has not learnt its own account id yet (STS is down too): "default".
    assert f"{DESCRIBE} in default account/us-east-1: connection refused" in error
    for error in report["errors"]:
        one_line(error)

    report = run_cycle(rebuilt)  # AWS is back: the same long-running guard settles it
    assert rebuilt.store.unfinished_actions() == []
    assert not report["errors"]


# --- the account id is checked, not trusted ------------------------------------------------


def test_a_configured_account_id_that_the_credentials_do_not_belong_to_is_a_blind_spot(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed_idle(aws_env, clock)  # in 123456789012, the default credentials' account
    guard = make_guard(
        clock, fresh_sqlite_url, accounts=[{"id": "111111111111", "name": "platform"}]
    )
    report = run_cycle(guard)
    assert report["resources"] == 0  # nothing reported under the wrong account
    assert not [r for r in guard.store.resources(include_gone=True) if r.account == "111111111111"]
    [error] = report["errors"]
    one_line(error)
    assert "111111111111" in error and "belong(s) to account 123456789012" in error

    guard = make_guard(clock, fresh_sqlite_url, accounts=[{"id": ACCOUNT, "name": "platform"}])
    report = run_cycle(guard)
    assert report["resources"] == 1 and not report["errors"]
    calls = report["api_calls"].get("sts:GetCallerIdentity")
    run_cycle(guard)
    assert calls == 1 and guard.aws.counter.snapshot().get("sts:GetCallerIdentity") is None


@pytest.mark.parametrize("kind", ["reset", "timeout", "html502", "throttle"])
def test_price_list_and_cost_explorer_failures_are_reported_once_without_a_page(
    kind: str, aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed_idle(aws_env, clock)
    budget = {"id": "ml-month", "period": "month", "limit_usd": 1000, "warn_at": [0.5]}
    guard = make_guard(
        clock, fresh_sqlite_url, budgets=[budget], cost_explorer={"enabled": True},
        pricing={"source": "api"},
    )  # fmt: skip
    seconds = HANG if kind == "timeout" else None
    aws_env.inject(kind, "ce:*", seconds=seconds)
    aws_env.inject(kind, "pricing:*", seconds=seconds)
    report = run_cycle(guard)
    for error in report["errors"]:
        one_line(error)
    [ce] = [e for e in report["errors"] if "ce:GetCostAndUsage" in e]
    assert f"ce:GetCostAndUsage in {ACCOUNT}/us-east-1: {KINDS[kind]}" in ce, ce
    status = report["prices"]["status"]
    one_line(status)
    assert "pricing:GetProducts in default account/us-east-1: " + KINDS[kind] in status, status
    assert report["resources"] == 1  # the rest of the cycle went on


def test_twelve_enforce_cycles_under_random_faults_never_raise_nor_act_twice(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    for i in range(4):
        seed_idle(aws_env, clock, f"idle-{i}")
    guard = make_guard(clock, fresh_sqlite_url, mode="enforce", pricing={"source": "api"})
    aws_env.inject("5xx", "*", rate=0.15)
    aws_env.inject("throttle", "*", rate=0.1)
    aws_env.inject("html502", "*", rate=0.05)
    aws_env.inject("reset", "*", rate=0.05)
    aws_env.inject("applied-reset", STOP, rate=0.5)
    for _ in range(12):
        report = run_cycle(guard)  # never raises
        for error in report["errors"]:
            one_line(error)
        for action in report["actions"]:
            one_line(action["detail"])
        aws_env.settle()
        clock.advance(timedelta(minutes=10))
    aws_env.heal()
    report = run_cycle(guard)
    assert not report["errors"], report["errors"]
    assert guard.store.unfinished_actions() == []
    done = [
        a.name for a in guard.store.audit(clock.now() - timedelta(days=1)) if a.outcome == "done"
    ]
    assert sorted(done) == [f"idle-{i}" for i in range(4)], done  # each stopped, once
    aws_env.settle()  # a stop retried in the healed cycle is still Stopping
    assert {aws_env.notebook_status(f"idle-{i}") for i in range(4)} == {"Stopped"}


def test_a_cycle_that_stops_taking_parts_starts_no_other_target(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the cycle fails while judging (the database went away), the scans queued behind
    the running one are cancelled, not run for nothing: one worker, three regions, the cycle
    gives up after the first part; the second region's queued scan and the third's (never
    queued) make no call. (Without the cancel, leaving the pool would run the queued one.)"""
    from guard import inventory
    from guard.pricing import PriceBook
    from guard.scanning import ScanContext

    monkeypatch.setattr(inventory, "MAX_SCAN_WORKERS", 1)
    regions = ["us-east-1", "us-west-2", "eu-west-1"]
    aws_env.add_notebook("nb")
    # the first region's second kind takes a while: its scan still runs when the cycle fails
    aws_env.inject("slow", "sagemaker:ListEndpoints", region="us-east-1", seconds=5)
    seen = {region: aws_env.inject("slow", region=region, seconds=0) for region in regions}
    cfg = Config.model_validate(
        {"database_url": fresh_sqlite_url, "regions": regions, "kinds": ["notebook", "endpoint"],
         "secrets": Secrets.model_validate({})}
    )  # fmt: skip
    guard = build_guard(cfg, clock)
    ctx = ScanContext(guard.cfg, guard.aws, guard.store, PriceBook(), clock.now())
    parts = inventory.scan_targets(ctx)
    first = next(parts)
    assert first.order == (0, 0) and [r.name for r in first.resources] == ["nb"]
    assert seen["us-west-2"].hits == 0  # queued behind the running scan
    parts.close()  # the cycle failed: its `for` loop over the parts is left
    assert seen["us-east-1"].hits > 0
    assert seen["us-west-2"].hits == seen["eu-west-1"].hits == 0
