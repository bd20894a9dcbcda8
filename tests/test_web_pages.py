"""The web console's pages in a real headless Chromium, against the real HTTP server
(guard/server.py) over a store seeded by the demo: a month of simulated history, then the
simulated account's evening run through real cycles (moto on 127.0.0.1)."""

from __future__ import annotations

import csv
import io
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from guard import demo
from guard import digest as demo_digest
from guard.config import Config, Secrets
from guard.cycle import Guard
from guard.model import ActivitySource, ManualClock, Resource
from guard.rules import owner_of
from guard.store import Store
from guard.wiring import build_guard

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
MORNING = demo.START + timedelta(hours=17)  # Tuesday 09:00, when the demo ends


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's database: a month of history and the evening (run once per session)."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    quiet = Console(file=io.StringIO(), width=120, force_terminal=True)
    demo.run_demo(quiet, pause=0, keep_db=path)
    return path


@pytest.fixture
def guard(demo_db: Path) -> Iterator[Guard]:
    cfg = Config.model_validate(
        {
            "database_url": f"sqlite:///{demo_db}",
            "rules": demo.RULES,
            "budgets": [{"id": "ml-month", "period": "month", "limit_usd": 3000}],
            "secrets": Secrets(),
        }
    )
    g = build_guard(cfg, ManualClock(MORNING), reconcile=False)
    yield g
    g.store.close()


@pytest.fixture
def console_url(guard: Guard, serve_console: Any) -> str:
    return str(serve_console(guard).url)


def _money(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", "").replace("/h", "").strip())


def _shot(page: Any, name: str) -> None:
    """A full-page screenshot for the README, 1440 px wide (a laptop)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.wait_for_timeout(200)  # the charts resize to the new width
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def _csv(url: str) -> list[dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(resp.read().decode())))


def _table(page: Any, selector: str) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))",
    )
    return rows


def test_now_lists_the_seeded_fleet_with_correct_totals(
    page: Any, console_url: str, guard: Guard
) -> None:
    running = [r for r in guard.store.resources() if r.running]
    kinds = {r.kind for r in running}
    assert len(running) >= 4 and len(kinds) >= 3  # a mixed fleet: notebooks, endpoints, jobs
    page.goto(console_url + "/")
    assert page.title() == "Now · cost-guard"
    arns = page.eval_on_selector_all(
        "#now-table tbody tr[data-arn]", "r => r.map(x => x.dataset.arn)"
    )
    assert sorted(arns) == sorted(r.arn for r in running)
    burn = sum((r.usd_per_hour for r in running if r.usd_per_hour is not None), Decimal(0))
    assert _money(page.inner_text("[data-total=usd_per_hour]")) == burn.quantize(Decimal("0.01"))
    assert page.inner_text("[data-total=count]") == str(len(running))
    # the exempt notebook says so, and a rule's countdown or state is shown per row
    carol = page.locator("tr", has_text="carol-exempt")
    assert "exempt" in carol.inner_text()
    _shot(page, "now.png")


def test_a_filter_narrows_the_list_and_its_totals(
    page: Any, console_url: str, guard: Guard
) -> None:
    running = [r for r in guard.store.resources() if r.running]
    endpoints = [r for r in running if r.kind == "endpoint"]
    assert 0 < len(endpoints) < len(running)
    page.goto(console_url + "/")
    page.get_by_label("Kind").select_option("endpoint")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**kind=endpoint**")
    arns = page.eval_on_selector_all(
        "#now-table tbody tr[data-arn]", "r => r.map(x => x.dataset.arn)"
    )
    assert sorted(arns) == sorted(r.arn for r in endpoints)
    burn = sum((r.usd_per_hour or Decimal(0) for r in endpoints), Decimal(0))
    assert _money(page.inner_text("[data-total=usd_per_hour]")) == burn.quantize(Decimal("0.01"))
    # free text, typed and submitted from the keyboard
    page.goto(console_url + "/")
    page.get_by_label("Text").fill("carol")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=carol**")
    names = [row[1] for row in _table(page, "#now-table")]
    assert names == ["carol-exempt"]
    # nothing matches: said so, totals zero
    page.goto(console_url + "/?q=no-such-thing")
    assert "Nothing matches" in page.inner_text("#now-table")
    assert page.inner_text("[data-total=count]") == "0"


def test_spend_chart_renders_the_series_of_the_store(
    page: Any, console_url: str, guard: Guard
) -> None:
    cfg, store = guard.cfg, guard.store
    today = MORNING.date()
    start = today - timedelta(days=29)
    known = {r.arn: r for r in store.resources(include_gone=True)}
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for arn, days in store.spent_by_day(start, today + timedelta(days=1)).items():
        team = known[arn].tags.get("team") or "(no team)"
        expected[team] += sum(days.values(), Decimal(0))
    assert len(expected) >= 4  # several teams over the month of history
    page.goto(console_url + "/spend?by=team")
    page.wait_for_function("() => window.Chart && Chart.getChart('daily-chart')")
    series = page.evaluate(
        """() => { const c = Chart.getChart('daily-chart');
            return {type: c.config.type, stacked: c.options.scales.y.stacked,
                    labels: c.data.labels,
                    datasets: c.data.datasets.map(d => ({label: d.label,
                        sum: d.data.reduce((a, b) => a + b, 0)}))}; }"""
    )
    assert series["type"] == "bar" and series["stacked"] is True
    assert len(series["labels"]) == 30 and series["labels"][-1] == today.isoformat()
    got = {d["label"]: d["sum"] for d in series["datasets"]}
    assert set(got) == set(expected)
    for team, usd in expected.items():
        assert got[team] == pytest.approx(float(usd), abs=0.05), team
    # the month chart: spend so far, the forecast and the budget line
    month = page.evaluate("() => Chart.getChart('month-chart').data.datasets.map(d => d.label)")
    assert month == ["month to date", "forecast at the current burn", "budget ml-month"]
    # by owner: the owners of the store, as the rules read them
    page.goto(console_url + "/spend?by=owner&days=90")
    page.wait_for_function("() => window.Chart && Chart.getChart('daily-chart')")
    owners = page.evaluate("() => Chart.getChart('daily-chart').data.datasets.map(d => d.label)")
    spenders = store.spent_by_day(today - timedelta(days=89), today + timedelta(days=1))
    assert set(owners) == {owner_of(known[a], cfg) or demo_digest.UNOWNED for a in spenders}
    page.goto(console_url + "/spend")
    page.wait_for_function("() => window.Chart && Chart.getChart('daily-chart')")
    _shot(page, "spend.png")


def test_csv_exports_match_the_tables(page: Any, console_url: str) -> None:
    page.goto(console_url + "/?sort=name&dir=asc")
    shown = _table(page, "#now-table")
    exported = _csv(console_url + "/?sort=name&dir=asc&format=csv")
    assert [r["name"] for r in exported] == [row[1] for row in shown]
    assert len(shown) == len(exported) >= 4
    for row, line in zip(shown, exported, strict=True):
        assert row[0] == line["kind"] and row[2] == (line["owner"] or "—")
        assert row[4].split() == [line["account"], line["region"]]
        for cell, key in ((6, "usd_per_hour"), (7, "accrued_usd"), (8, "month_usd")):
            assert (row[cell] == "unknown") == (line[key] == ""), key
            if line[key]:
                assert _money(row[cell]) == Decimal(line[key]), (line["name"], key)
        assert row[10].split()[0] == line["rule_state"]
    # the link in the page leads to the same file
    href = page.get_attribute("a.csv", "href")
    assert href is not None and "format=csv" in href
    page.goto(console_url + "/spend?by=kind")
    table = _table(page, "#daily-table")
    daily = _csv(console_url + "/spend?by=kind&format=csv&table=daily")
    assert len(daily) == len(table) == 30
    assert [list(r.values()) for r in reversed(daily)] == table
    idle = _csv(console_url + "/spend?format=csv&table=idle")
    assert [r["name"] for r in idle] == [row[1] for row in _table(page, "#idle-table")
                                         if len(row) > 1]  # fmt: skip
    saved = _csv(console_url + "/spend?format=csv&table=saved")
    assert saved and [r["team"] for r in saved] == [row[1] for row in _table(page, "#saved-table")]
    page.goto(console_url + "/audit?days=30&action=stop")
    audit_rows = _table(page, "#audit-table")
    audit = _csv(console_url + "/audit?days=30&action=stop&format=csv")
    assert audit and len(audit) == len(audit_rows)
    assert {r["action"] for r in audit} == {"stop"}
    assert [r["outcome"] for r in audit] == [row[5] for row in audit_rows]


def test_resource_page_history_chart_and_actions_need_sign_in(
    page: Any, console_url: str, guard: Guard
) -> None:
    page.goto(console_url + "/?sort=name&dir=asc")
    names = [row[1] for row in _table(page, "#now-table")]
    assert "search-ranker" in names, names  # what the page showed, should it ever not
    page.get_by_role("link", name="search-ranker").click()  # the deep link of a row
    page.wait_for_url("**/resource/**")
    assert "endpoint search-ranker" in page.inner_text("h1")
    page.wait_for_function("() => window.Chart && Chart.getChart('resource-chart')")
    data = page.evaluate("() => Chart.getChart('resource-chart').data.datasets[0].data")
    arn = page.url.split("/resource/", 1)[1]
    today = MORNING.date()
    spent = guard.store.spent_by_day_of(arn, today - timedelta(days=29), today + timedelta(days=1))
    days = [today - timedelta(days=n) for n in range(29, -1, -1)]
    assert data == [float(round(spent[d].usd, 2)) if d in spent else 0.0 for d in days]
    assert sum(data) > 0
    assert page.get_attribute("a[target=_blank]", "href", timeout=1000) is not None
    # Not signed in: the forms are there but disabled, and say why
    assert "Sign in to act" in page.inner_text("#signin-note")
    for name in ("Snooze", "Keep", "Stop now"):
        assert page.get_by_role("button", name=name).is_disabled()
    # A stopped notebook with a month of history and the guard's stop on it
    vision = guard.store.resource_by_name("notebook", "vision-sweep-gpu")
    assert vision is not None
    page.goto(f"{console_url}/resource/{vision.arn}")
    history = page.inner_text(".history")
    assert "stop: done" in history and "warn: warned" in history and "InService" in history
    _shot(page, "resource.png")
    assert page.goto(f"{console_url}/resource/arn:aws:sagemaker:nowhere").status == 404


def test_budgets_findings_and_audit_pages(page: Any, console_url: str) -> None:
    page.goto(console_url + "/budgets")
    assert "ml-month" in page.inner_text("#budgets-table")
    assert _csv(console_url + "/budgets?format=csv")[0]["id"] == "ml-month"
    page.goto(console_url + "/findings")
    assert "ml-studio" in page.inner_text("#findings-table")  # no idle shutdown on the domain
    page.goto(console_url + "/audit?days=30")
    page.get_by_label("Outcome").select_option("done")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**outcome=done**")
    outcomes = {row[5] for row in _table(page, "#audit-table")}
    assert outcomes == {"done"}


def test_pages_are_labelled_and_fit_a_phone(browser: Any, console_url: str, guard: Guard) -> None:
    ranker = guard.store.resource_by_name("endpoint", "search-ranker")
    assert ranker is not None
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        for path in ("/", "/spend", "/budgets", "/findings", "/audit", f"/resource/{ranker.arn}"):
            page.goto(console_url + path)
            unlabelled = page.evaluate(
                """() => Array.from(document.querySelectorAll('select, input:not([type=hidden])'))
                    .filter(c => c.labels.length === 0).map(c => c.name)"""
            )
            assert unlabelled == [], path
            # wide tables scroll inside their box; the page itself does not scroll sideways
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, (path, overflow)
        page.goto(console_url + "/")
        page.keyboard.press("Tab")  # the first stop is the skip link
        assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    finally:
        context.close()


def test_first_page_server_time_at_10000_resources(
    fresh_sqlite_url: str, serve_console: Any, page: Any
) -> None:
    now = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    store = Store(fresh_sqlite_url)
    fleet = [
        Resource(
            arn=f"arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/nb-{i:05d}",
            kind="notebook" if i % 3 else "endpoint",
            name=f"nb-{i:05d}",
            account="123456789012",
            region=("us-east-1", "eu-west-1")[i % 2],
            status="InService",
            running=True,
            instance_type="ml.m5.xlarge",
            instance_count=1,
            usd_per_hour=Decimal("0.23"),
            price_source="bundled",
            created_at=now,
            running_since=now - timedelta(hours=i % 48),
            last_activity=now - timedelta(hours=1),
            activity_source=ActivitySource.JUPYTER_LOG,
            tags={"owner": f"user{i % 40}@example.com", "team": f"team{i % 7}"},
        )
        for i in range(10_000)
    ]
    store.save_snapshot(fleet, set(), now)
    # one warned resource, its action due in 25 minutes
    store.start_episode(fleet[7].arn, "idle-notebooks", now, now + timedelta(minutes=25))
    store.close()
    cfg = Config.model_validate({"database_url": fresh_sqlite_url, "secrets": Secrets()})
    g = build_guard(cfg, ManualClock(now), reconcile=False)
    try:
        url = serve_console(g).url
        timings = []
        for _ in range(3):
            began = time.perf_counter()
            with urllib.request.urlopen(url + "/", timeout=60) as resp:
                body = resp.read().decode()
            timings.append(time.perf_counter() - began)
        assert "10000 resources billing now (page 1 of 200)" in body
        assert body.count("<tr data-arn=") == 50
        page.goto(url + "/?state=warned")  # the warned one, with its countdown
        assert _table(page, "#now-table") == [[
            "notebook", "nb-00007", "user7@example.com", "team0", "123456789012\neu-west-1",
            "ml.m5.xlarge \N{MULTIPLICATION SIGN} 1", "$0.2300", "$1.61", "$0.00",
            "Mon 23 Nov 15:00 UTC\njupyter-log",
            "warned", "in 25m\nidle-notebooks"]]  # fmt: skip
        spend = []
        for _ in range(2):
            began = time.perf_counter()
            with urllib.request.urlopen(url + "/spend", timeout=120) as resp:
                assert resp.status == 200
            spend.append(time.perf_counter() - began)
        print(
            f"\nfirst page at 10,000 resources: {timings[0] * 1000:.0f} ms cold, "
            f"{min(timings[1:]) * 1000:.0f} ms warm (server time on 127.0.0.1, SQLite); "
            f"Spend page {spend[0] * 1000:.0f} ms cold, {spend[1] * 1000:.0f} ms warm"
        )
    finally:
        g.store.close()


def test_slack_messages_link_to_the_resource_page_when_public_url_is_set(
    page: Any, guard: Guard, serve_console: Any
) -> None:
    from guard.notify import Notice, Notifier

    res = guard.store.resource_by_name("endpoint", "search-ranker")
    assert res is not None
    warned = Notice(res, "idle-endpoints", 1, "warned", "delete", "no invocations for 24 h",
                    MORNING + timedelta(minutes=30), "dry-run")  # fmt: skip
    plain = Notifier(guard.cfg, guard.store, guard.clock).render(warned, "grace", MORNING)
    assert "Open in cost-guard" not in str(plain["blocks"])  # no public_url: no link
    assert "cost-guard: " not in plain["plain"]
    url = serve_console(guard).url
    cfg = guard.cfg.model_copy(
        update={"serve": guard.cfg.serve.model_copy(update={"public_url": url + "/"})}
    )
    payload = Notifier(cfg, guard.store, guard.clock).render(warned, "grace", MORNING)
    link = payload["plain"].rsplit("cost-guard: ", 1)[1]
    assert link == f"{url}/resource/{res.arn}"
    assert f"<{link}|Open in cost-guard>" in str(payload["blocks"][-1])
    page.goto(link)  # the link Slack shows opens the resource's page
    assert "endpoint search-ranker" in page.inner_text("h1")
    with pytest.raises(ValueError, match="public_url"):
        Config.model_validate({"serve": {"public_url": "not a url"}, "secrets": Secrets()})


def test_demo_console_serves_until_ctrl_c(page: Any) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    # PYTHONFAULTHANDLER: a demo that does not stop is made to print every thread's stack
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", "PYTHONFAULTHANDLER": "1"}

    def ctrl_c_reaches_it() -> None:
        # In the full suite the demo never saw the SIGINT (faulthandler: its main thread still
        # waiting, 180 s on): an ignored SIGINT or a blocked one is inherited from the pytest
        # worker across exec. A terminal's Ctrl-C reaches a fresh process: so must this one.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.cli", "demo", "--speed", "0", "--console", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=ctrl_c_reaches_it,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            found = re.search(r"Web console: (http://127\.0\.0\.1:\d+)/", line)
            if found:
                url = found.group(1)
                break
            assert time.monotonic() < deadline, "the demo did not print the console's URL"
        assert url is not None, "the demo ended without serving the console"
        page.goto(url + "/spend")
        page.wait_for_function("() => window.Chart && Chart.getChart('daily-chart')")
        assert page.evaluate("() => Chart.getChart('daily-chart').data.datasets.length") >= 3
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints each thread's stack
            rest, _ = proc.communicate(timeout=30)
            raise AssertionError(f"the demo did not stop on Ctrl-C:\n{rest[-8000:]}") from None
        assert proc.returncode == 0, rest
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_console_store_queries_on_both_engines(store: Store) -> None:
    """The web console's Store block, on SQLite and Postgres."""
    now = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)

    def nb(name: str, running: bool) -> Resource:
        return Resource(
            arn=f"arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/{name}",
            kind="notebook", name=name, account="123456789012", region="us-east-1",
            status="InService" if running else "Stopped", running=running,
            instance_type="ml.m5.xlarge", instance_count=1 if running else 0,
            usd_per_hour=Decimal("0.23") if running else None,
            price_source="bundled" if running else "none", created_at=now,
            running_since=now - timedelta(hours=2) if running else None,
            last_activity=None, activity_source=ActivitySource.IN_SERVICE_SINCE,
            tags={"owner": "a@example.com"},
        )  # fmt: skip

    empty = store.console_version()
    store.save_snapshot([nb("a", True), nb("b", False)], set(), now)
    first = store.console_version()
    assert first != empty
    store.save_snapshot([nb("a", True), nb("b", False)], set(), now + timedelta(minutes=10))
    assert [r.name for r in store.running_resources()] == ["a"]
    assert store.running_resources() == [r for r in store.resources() if r.running]
    arn = nb("a", True).arn
    assert [e.status for e in store.resource_events(arn)] == ["InService"]
    day = now.date()
    spent = store.spent_by_day_of(arn, day, day + timedelta(days=1))
    assert spent[day].usd == Decimal("0.038333")  # 10 minutes at $0.23/h, to 6 places
    assert spent[day].running_seconds == 600
    assert store.spent_by_day_of(nb("b", False).arn, day, day + timedelta(days=1)) == {}
    second = store.console_version()
    assert second != first  # a snapshot moved last_seen
    store.record_action(nb("a", True), rule_id="r", episode_id=None, action="warn",
                        mode="dry-run", outcome="warned", detail="", now=now)  # fmt: skip
    assert [a.action for a in store.actions_of(arn)] == ["warn"]
    third = store.console_version()
    assert third != second
    store.snooze(arn, now + timedelta(hours=1), "r", "me", now)
    assert store.console_version() != third
    assert store.snooze_row(arn) is not None
    store.unsnooze(arn)
    assert store.snooze_row(arn) is None
    assert store.console_version() == third


def test_recommendations_page_and_usage_on_the_resource_page(
    page: Any, serve_console: Any, fresh_sqlite_url: str
) -> None:
    """Three recorded weeks (tests/test_profiles.py's `record`): the weekday notebook's pattern
    shows on its page, and the Recommendations page proposes its weekday schedule — the same
    proposal as `cost-guard recommend` — with a CSV of the same rows."""
    from guard.recommend import recommendations
    from tests.test_profiles import at_random, record, weekdays_9_to_18

    rules = [{"id": "idle-notebooks", "kind": "notebook", "idle_for": "12h", "action": "stop",
              "grace": "1h"}]  # fmt: skip
    cfg = Config.model_validate(
        {"database_url": fresh_sqlite_url, "rules": rules, "secrets": Secrets()}
    )
    g = build_guard(cfg, ManualClock(datetime(2026, 11, 2, tzinfo=UTC)), reconcile=False)
    try:
        end = record(g.store, {"office": weekdays_9_to_18, "random": at_random()})
        g.clock.set(end)  # type: ignore[attr-defined]
        url = str(serve_console(g).url)
        page.goto(url + "/recommendations")
        rows = _table(page, "#recommendations-table")
        expected = recommendations(g.store, cfg, end)
        assert [r[0] for r in rows] == [r.title for r in expected]
        assert "notebook/office: stop on schedule '0 19 * * 1-5'" in [r[0] for r in rows]
        assert not any("random" in r[0] for r in rows)  # no pattern, nothing proposed
        assert [c["title"] for c in _csv(url + "/recommendations?format=csv")] == [
            r.title for r in expected
        ]
        office = g.store.resource_by_name("notebook", "office")
        assert office is not None
        page.goto(f"{url}/resource/{office.arn}")
        usage = page.locator("dt:text('Usage') + dd").inner_text()
        assert usage.startswith("used weekdays 09–18")  # noqa: RUF001
    finally:
        g.store.close()
