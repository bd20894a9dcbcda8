"""Every Studio app type (AppType of the SageMaker model) through the simulator over HTTP:
listed, priced by its component or per Canvas session-hour, and said so in the Slack message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import botocore.session
import pytest

from guard.config import Secrets
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock, Resource
from guard.pricing import PriceBook, bundled_prices, parse_price_item
from guard.sim import Simulator
from tests.factories import guard_for
from tests.fakeslack import FakeSlack

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

# Test figures only (no sourced bundled price exists for these: unknown in production).
CANVAS = ("canvas-session", "us-east-1", "Canvas")
RSESSION = ("ml.t3.medium", "us-east-1", "Studio-RSessionGateway")
TEST_PRICES = {CANVAS: Decimal("1.9"), RSESSION: Decimal("0.05")}
# app type -> (owner: "space" or "user", instance type as Studio gives it)
APPS: dict[str, tuple[str, str | None]] = {
    "JupyterLab": ("space", "ml.t3.medium"),
    "CodeEditor": ("space", "ml.t3.medium"),
    "KernelGateway": ("user", "ml.t3.medium"),
    "JupyterServer": ("user", "system"),
    "Canvas": ("user", None),
    "RStudioServerPro": ("user", "system"),
    "RSessionGateway": ("user", "ml.t3.medium"),
    "TensorBoard": ("user", "system"),
    "DetailedProfiler": ("user", "system"),
}
CANVAS_RULE = {"id": "canvas-day", "kind": "studio_app", "running_for": "8h", "action": "notify"}


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack(users={}).start()
    yield slack
    slack.stop()


def make_guard(
    clock: ManualClock, db_url: str, *rules: dict[str, Any], slack: FakeSlack | None = None,
    prices: bool = True,
) -> Guard:  # fmt: skip
    extra: dict[str, Any] = {}
    if slack is not None:
        extra["slack"] = {"channel": "C123", "base_url": slack.api_url}
        extra["secrets"] = Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-test"})
    guard = guard_for(clock, db_url, list(rules), kinds=["studio_app"], **extra)
    if prices:
        guard.prices = PriceBook({**bundled_prices(), **TEST_PRICES})
    return guard


def seed_every_type(sim: Simulator, clock: ManualClock) -> str:
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "alice", tags={"owner": "alice@example.com"})
    for app_type, (owner, instance_type) in APPS.items():
        where: dict[str, Any] = {"user": "alice"}
        if owner == "space":
            sim.add_space(domain, f"{app_type.lower()}-space", "alice")
            where = {"space": f"{app_type.lower()}-space"}
        sim.add_app(domain, app_type, instance_type=instance_type,
                    created_at=clock.now() - timedelta(hours=10), **where)  # fmt: skip
    return domain


def by_type(guard: Guard) -> dict[str, Resource]:
    return {res.details["app_type"]: res for res in guard.store.resources()}


def test_the_simulated_model_has_exactly_these_app_types() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    assert set(model.shape_for("AppType").enum) == set(APPS)


def test_every_app_type_is_listed_and_priced_by_how_it_bills(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    seed_every_type(sim, clock)
    guard = make_guard(clock, db_url)

    report = run_cycle(guard)

    assert report["errors"] == []
    apps = by_type(guard)
    assert set(apps) == set(APPS)
    # instance apps: price(type, Studio-<AppType>), from the bundled table or the test's
    assert (apps["JupyterLab"].usd_per_hour, apps["JupyterLab"].price_source) == (
        Decimal("0.05"), "bundled",
    )  # fmt: skip
    assert apps["RSessionGateway"].usd_per_hour == Decimal("0.05")
    # no sourced price for a KernelGateway ml.t3.medium in the bundled table: unknown, not $0
    kernel = apps["KernelGateway"]
    assert kernel.running and kernel.usd_per_hour is None and kernel.price_source == "unknown"
    # on the free system instance: $0 and never acted on, whatever the type
    for free in ("JupyterServer", "RStudioServerPro", "TensorBoard", "DetailedProfiler"):
        assert (apps[free].running, apps[free].usd_per_hour) == (False, Decimal(0)), free
    # Canvas: per session-hour, not per instance
    canvas = apps["Canvas"]
    assert canvas.running and canvas.instance_type == "canvas-session"
    assert (canvas.usd_per_hour, canvas.price_source) == (Decimal("1.9"), "bundled")
    assert canvas.details["billing"] == "per Canvas session-hour while the app runs"
    assert "billing" not in apps["JupyterLab"].details


def test_canvas_without_a_price_source_is_unknown_never_zero(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "bob")
    sim.add_app(domain, "Canvas", user="bob", instance_type=None,
                created_at=clock.now() - timedelta(hours=2))  # fmt: skip
    guard = make_guard(clock, db_url, prices=False)

    report = run_cycle(guard)

    [canvas] = guard.store.resources()
    assert canvas.running and canvas.usd_per_hour is None and canvas.price_source == "unknown"
    assert report["prices"]["unknown"] == 1


def test_the_slack_message_says_canvas_bills_per_session_hour(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    seed_every_type(sim, clock)
    guard = make_guard(clock, db_url, CANVAS_RULE, slack=fake_slack)

    report = run_cycle(guard)

    # every running app is over 8 h; the Canvas one's message says how it is billed
    warned = {w["name"].split("/")[2] for w in report["warned"]}
    assert {"Canvas", "JupyterLab", "KernelGateway", "RSessionGateway"} <= warned
    assert not warned & {"JupyterServer", "TensorBoard", "DetailedProfiler", "RStudioServerPro"}
    posts = [json.dumps(c.body) for c in fake_slack.accepted("chat.postMessage")]
    canvas = [p for p in posts if "/Canvas/" in p]
    assert canvas and all("per Canvas session-hour" in p for p in canvas)
    assert not [p for p in posts if "/JupyterLab/" in p and "session-hour" in p]


def test_price_list_items_for_canvas_sessions_and_rstudio_are_read() -> None:
    def item(usage_type: str, **attributes: str) -> dict[str, Any]:
        dimension = {"unit": "Hrs", "pricePerUnit": {"USD": "1.9"}}
        return {
            "product": {"attributes": {"regionCode": "us-east-1", "usagetype": usage_type,
                                       **attributes}},
            "terms": {"OnDemand": {"t": {"priceDimensions": {"d": dimension}}}},
        }  # fmt: skip

    assert parse_price_item(item("USE1-Canvas:Session-Hrs")) == (
        CANVAS, Decimal("1.9"), "USE1-Canvas:Session-Hrs",
    )  # fmt: skip
    assert parse_price_item(item("USE1-RStudio:RSessionGateway-ml.t3.medium")) == (
        RSESSION, Decimal("1.9"), "USE1-RStudio:RSessionGateway-ml.t3.medium",
    )  # fmt: skip
    assert parse_price_item(item("USE1-Canvas:Session")) == "not an ml. instance"
