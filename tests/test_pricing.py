"""Live prices: the AWS Price List API (simulated over HTTP), cached in the database, with the
bundled table as the fallback and unknown (never $0) where neither knows a price."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy import func, select

from guard.aws import Aws
from guard.cli import main
from guard.config import Config
from guard.cycle import Guard, run_cycle
from guard.iam import policy
from guard.model import ManualClock, Resource
from guard.pricing import Price, PriceBook, parse_price_item, refresh_prices
from guard.reports import inventory_for, inventory_table
from guard.sim import Simulator
from guard.sim.pricing import product
from guard.store import Store
from guard.tables import PriceRefreshRow, PriceRow
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

GET_PRODUCTS = "pricing:GetProducts"
UNAVAILABLE = (
    "Price List API unavailable (pricing:GetProducts in default account/us-east-1: "
    "AccessDeniedException: simulated failure of pricing:GetProducts) since 2026-11-23 09:00 UTC"
)


def make_guard(clock: ManualClock, db_url: str, kinds: list[str], **extra: Any) -> Guard:
    return guard_for(clock, db_url, [], kinds=kinds, **extra)


def by_name(guard: Guard) -> dict[str, Resource]:
    return {res.name: res for res in guard.store.resources()}


def calls(sim: Simulator) -> int:
    return sim.request_counts.get(GET_PRODUCTS, 0)


def cli(args: list[str], sim: Simulator, config: Path) -> Any:
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    env = {**clean, **sim.env(), "AWS_DEFAULT_REGION": "us-east-1", "COLUMNS": "200"}
    return CliRunner().invoke(
        main, [*args, "--config", str(config)], env=env, catch_exceptions=False
    )


def write_config(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "cost-guard.yaml"
    path.write_text(f"database_url: {db_url}\n{extra}")
    return path


def products(sim: Simulator, region: str, component: str) -> int:
    """How many prices of `component` in `region` the simulated Price List holds: the bundled
    table grows as sources are found, so the tests count instead of hard-coding."""
    return sum(1 for _, r, c in sim.price_list.priced() if (r, c) == (region, component))


def pages(sim: Simulator, region: str) -> int:
    """GetProducts calls (100 items a page, decoys included) one region's refresh takes."""
    found = sum(
        1
        for attrs, _ in sim.price_list.items()
        if attrs.get("productFamily") == "ML Instance" and attrs.get("regionCode") == region
    )
    return max(1, -(-found // 100))


def words(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_a_cycle_refreshes_prices_and_the_api_price_wins_over_the_bundled_one(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_endpoint("cheaper-now", "ml.g5.2xlarge")  # API 1.212, bundled table 1.515
    sim.add_endpoint("same", "ml.m5.xlarge")  # an Outposts SKU at 9.99 must not win
    guard = make_guard(clock, db_url, ["endpoint"])

    report = run_cycle(guard)

    assert report["api_calls"][GET_PRODUCTS] == pages(sim, "us-east-1")  # one region
    resources = by_name(guard)
    cheaper, same = resources["cheaper-now"], resources["same"]
    assert (cheaper.usd_per_hour, cheaper.price_source) == (Decimal("1.212"), "api")
    assert (same.usd_per_hour, same.price_source) == (Decimal("0.23"), "api")
    prices = report["prices"]
    assert prices["source"] == "api"
    assert prices["fetched_at"] == clock.now().isoformat()
    assert prices["by_source"] == {"api": 2, "bundled": 0, "unknown": 0}
    assert prices["unknown"] == 0
    assert prices["status"] == (
        "Prices from the AWS Price List API, fetched 2026-11-23 09:00 UTC; "
        "bundled where the API has none."
    )
    assert prices["refresh"]["ok"] is True

    # The cache is used by the next cycles, not fetched again until a day has passed.
    clock.advance(timedelta(hours=23))
    again = run_cycle(guard)
    assert GET_PRODUCTS not in again["api_calls"]
    assert by_name(guard)["cheaper-now"].usd_per_hour == Decimal("1.212")
    clock.advance(timedelta(hours=1))
    assert run_cycle(guard)["api_calls"][GET_PRODUCTS] == pages(sim, "us-east-1")


def test_refresh_keeps_only_hourly_on_demand_region_prices(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    cfg = Config.model_validate({"database_url": db_url, "regions": ["us-east-1", "eu-west-1"]})
    # more products than one page holds: the refresh follows NextToken
    for size in range(150):
        sim.set_price(f"ml.fake.{size}xlarge", "Hosting", Decimal("0.5"))
    store = Store(db_url)
    try:
        done = refresh_prices(cfg, Aws(), store, clock.now())
        assert done.ok, done.error
        assert calls(sim) == pages(sim, "us-east-1") + pages(sim, "eu-west-1")
        assert done.by_region["eu-west-1"] == {"Studio-JupyterLab": 21}
        us = done.by_region["us-east-1"]
        assert us["BatchTransform"] == 2 and us["Studio-CodeEditor"] == 2
        assert us["Hosting"] == products(sim, "us-east-1", "Hosting")  # the 150 included
        book = PriceBook.load(store, cfg)

        def api(instance_type: str, component: str) -> Decimal | None:
            price = book.price(instance_type, "us-east-1", component)
            assert price.source == "api", (instance_type, component)
            return price.usd_per_hour

        assert api("ml.t3.medium", "Notebook") == Decimal("0.05")  # not the $0 free tier
        assert api("ml.m5.xlarge", "Training") == Decimal("0.23")  # not the Quantity dimension
        assert api("ml.g5.xlarge", "Training") == Decimal("1.408")  # not the SpotTraining SKU
        assert api("ml.m5.xlarge", "Hosting") == Decimal("0.23")  # not the Outposts SKU
        assert api("ml.t3.medium", "Studio-CodeEditor") == Decimal("0.05")  # "studio-codeeditor"
        with store.session() as s:
            row = s.get(PriceRow, ("ml.m5.xlarge", "us-east-1", "BatchTransform"))
            assert row is not None and row.usage_type == "USE1-Tsform:ml.m5.xlarge"
            assert row.fetched_at == clock.now()
            assert s.scalar(select(func.count()).select_from(PriceRow)) == done.prices
            [attempt] = s.scalars(select(PriceRefreshRow)).all()
            assert attempt.ok and attempt.prices == done.prices

        # a second refresh updates in place
        sim.set_price("ml.m5.xlarge", "Hosting", Decimal("0.25"))
        clock.advance(timedelta(days=1))
        assert refresh_prices(cfg, Aws(), store, clock.now()).ok
        again = PriceBook.load(store, cfg).price("ml.m5.xlarge", "us-east-1", "Hosting")
        assert again == Price(Decimal("0.25"), "api")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (product("ml.t3.medium", "us-east-1", "Studio-JupyterLab", "0.05"),
         ("ml.t3.medium", "us-east-1", "Studio-JupyterLab")),
        (product("ml.m5.xlarge", "us-east-1", "Hosting", "0.23", location_type="AWS Outposts"),
         "not an AWS Region"),
        (product("ml.m5.xlarge", "us-east-1", "Hosting", "0.23", unit="GB-Mo"),
         "no hourly on-demand price"),
        (product("ml.m5.xlarge", "us-east-1", "AsyncInf", "0.23"), "component not used"),
    ],
)  # fmt: skip
def test_price_list_items_are_read_by_what_they_say(item: dict[str, Any], expected: Any) -> None:
    parsed = parse_price_item(json.dumps(item))
    assert (parsed if isinstance(parsed, str) else parsed[0]) == expected


def test_studio_component_comes_from_the_usage_type_when_attributes_lack_it() -> None:
    item = product("ml.g5.xlarge", "us-east-1", "Studio-JupyterLab", "1.41")
    attrs = item["product"]["attributes"]
    del attrs["platoinstancetype"], attrs["component"], attrs["instanceName"]
    attrs["instanceType"] = "NA"
    parsed = parse_price_item(item)
    assert not isinstance(parsed, str)
    assert parsed[:2] == (("ml.g5.xlarge", "us-east-1", "Studio-JupyterLab"), Decimal("1.41"))


def test_batch_transform_job_is_priced_from_the_api(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_transform_job("scoring", "ml.m5.xlarge", 2, started_at=clock.now())
    guard = make_guard(clock, db_url, ["transform_job"])
    run_cycle(guard)
    job = by_name(guard)["scoring"]
    assert (job.usd_per_hour, job.price_source) == (Decimal("0.46"), "api")
    # the bundled table alone has no BatchTransform rows: unknown, never $0
    bundled = make_guard(clock, db_url, ["transform_job"], pricing={"source": "bundled"})
    clock.advance(timedelta(minutes=5))
    report = run_cycle(bundled)
    job = by_name(bundled)["scoring"]
    assert (job.usd_per_hour, job.price_source) == (None, "unknown")
    assert report["prices"]["unknown"] == 1


def test_api_unavailable_the_cycle_runs_on_bundled_prices_and_says_so(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    sim.add_notebook("nb", "ml.t3.medium", in_service_since=clock.now() - timedelta(hours=1))
    sim.fail(GET_PRODUCTS)
    guard = make_guard(clock, db_url, ["notebook"])

    report = run_cycle(guard)

    assert report["errors"] == []
    nb = by_name(guard)["nb"]
    assert (nb.usd_per_hour, nb.price_source) == (Decimal("0.05"), "bundled")
    prices = report["prices"]
    assert prices["source"] == "bundled" and prices["fetched_at"] is None
    assert prices["status"] == f"{UNAVAILABLE}; using bundled prices."
    assert prices["by_source"] == {"api": 0, "bundled": 1, "unknown": 0}
    assert prices["refresh"]["ok"] is False
    with guard.store.session() as s:
        [attempt] = s.scalars(select(PriceRefreshRow)).all()
        assert not attempt.ok and "AccessDeniedException" in attempt.detail

    config = write_config(tmp_path, db_url, "kinds: [notebook]\n")
    text = words(cli(["inventory"], sim, config).output)
    assert f"prices: {UNAVAILABLE}; using bundled prices." in text
    items = json.loads(cli(["inventory", "--json"], sim, config).output)  # JSON stays a list
    assert [i["price_source"] for i in items] == ["bundled"]
    once = cli(["once"], sim, config)
    assert once.exit_code == 0 and UNAVAILABLE in words(once.output)


def test_a_failed_refresh_keeps_the_cached_prices(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_endpoint("ep", "ml.g5.2xlarge")
    guard = make_guard(clock, db_url, ["endpoint"])
    run_cycle(guard)
    clock.advance(timedelta(days=1, hours=1))
    sim.fail(GET_PRODUCTS)

    report = run_cycle(guard)

    assert report["prices"]["refresh"]["ok"] is False
    ep = by_name(guard)["ep"]
    assert (ep.usd_per_hour, ep.price_source) == (Decimal("1.212"), "api")
    assert report["prices"]["source"] == "api"
    assert report["prices"]["status"] == (
        "Price List API unavailable (pricing:GetProducts in 123456789012/us-east-1: "
        "AccessDeniedException: simulated failure of "
        "pricing:GetProducts) since 2026-11-24 10:00 UTC; using the prices fetched "
        "2026-11-23 09:00 UTC, bundled where missing."
    )


def test_after_a_failure_the_api_is_tried_again_only_after_retry_after(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("nb", "ml.t3.medium")
    sim.fail(GET_PRODUCTS)
    guard = make_guard(clock, db_url, ["notebook"])
    run_cycle(guard)
    assert calls(sim) == 1  # AccessDenied is not retried by botocore
    for _ in range(11):  # every 5 minutes for 55 minutes: no call
        clock.advance(timedelta(minutes=5))
        report = run_cycle(guard)
    assert calls(sim) == 1
    assert report["prices"]["status"].startswith(UNAVAILABLE)

    clock.advance(timedelta(minutes=5))  # an hour after the failure
    run_cycle(guard)
    assert calls(sim) == 2
    sim.heal()
    clock.advance(timedelta(minutes=30))
    assert calls(sim) == 2 and GET_PRODUCTS not in run_cycle(guard)["api_calls"]
    clock.advance(timedelta(minutes=30))
    report = run_cycle(guard)
    assert calls(sim) == 2 + pages(sim, "us-east-1") and report["prices"]["source"] == "api"
    assert report["prices"]["status"].startswith("Prices from the AWS Price List API, fetched")
    assert by_name(guard)["nb"].price_source == "api"


def test_a_type_neither_source_knows_is_unknown_and_counted(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    sim.add_notebook("mystery", "ml.r5.xlarge")  # no API price, no bundled row
    sim.add_notebook("known", "ml.t3.medium")
    guard = make_guard(clock, db_url, ["notebook"])

    report = run_cycle(guard)

    mystery = by_name(guard)["mystery"]
    assert (mystery.usd_per_hour, mystery.price_source) == (None, "unknown")
    assert report["prices"]["unknown"] == 1
    assert report["prices"]["by_source"] == {"api": 1, "bundled": 0, "unknown": 1}
    assert report["by_kind"]["notebook"]["unpriced"] == 1
    assert report["usd_per_hour"] == "0.0500"  # the known one only: unknown is not $0

    config = write_config(tmp_path, db_url, "kinds: [notebook]\n")
    result = cli(["inventory"], sim, config)
    row = next(line for line in result.output.splitlines() if "notebook/mystery" in line)
    assert "unknown" in row and "0.000" not in row
    assert "1 running resource has no known price (shown as unknown, not $0)" in words(
        result.output
    )

    # What it spent this month is unknown too, not $0.00 (the table, its total, the console)
    clock.advance(timedelta(hours=1))
    run_cycle(guard)
    items = {i["name"]: i for i in inventory_for(guard.store, guard.cfg, clock.now())}
    assert items["mystery"]["unpriced_month_hours"] == 1.0
    assert items["known"]["unpriced_month_hours"] == 0
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(inventory_table(list(items.values()), guard.cfg, clock.now()))
    table = console.export_text()
    mystery_row = next(line for line in table.splitlines() if "notebook/mystery" in line)
    assert "0.00 " not in mystery_row and mystery_row.count("unknown") >= 2  # $/h and month
    total_row = next(line for line in table.splitlines() if "total: 2" in line)
    assert "0.05+?" in total_row  # the month's total says part of it is unknown
    from guard.web.pages import _build_fleet

    rows = {r["name"]: r for r in _build_fleet(guard, clock.now())}
    assert rows["mystery"]["month"] is None and rows["known"]["month"] == Decimal("0.05")


def test_managed_spot_training_is_priced_as_an_estimate(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_training_job("spot", "ml.g5.xlarge", 2, spot=True, started_at=clock.now())
    sim.add_training_job("on-demand", "ml.g5.xlarge", 2, started_at=clock.now())
    guard = make_guard(clock, db_url, ["training_job"])

    report = run_cycle(guard)

    jobs = by_name(guard)
    assert (jobs["on-demand"].usd_per_hour, jobs["on-demand"].price_source) == (
        Decimal("2.816"),
        "api",
    )
    # 2 x 1.408 x (1 - 0.7): not the SpotTraining SKU's figure
    assert (jobs["spot"].usd_per_hour, jobs["spot"].price_source) == (
        Decimal("0.8448"),
        "spot-estimate",
    )
    assert report["prices"]["by_source"]["spot-estimate"] == 1

    half = make_guard(clock, db_url, ["training_job"], pricing={"spot_savings": "0.5"})
    clock.advance(timedelta(minutes=5))
    run_cycle(half)
    assert by_name(half)["spot"].usd_per_hour == Decimal("1.408")


def test_bundled_source_never_calls_the_price_list_api(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_endpoint("ep", "ml.g5.2xlarge")
    guard = make_guard(clock, db_url, ["endpoint"], pricing={"source": "bundled"})
    for _ in range(2):
        report = run_cycle(guard)
        clock.advance(timedelta(days=2))
    assert calls(sim) == 0
    ep = by_name(guard)["ep"]
    assert (ep.usd_per_hour, ep.price_source) == (Decimal("1.515"), "bundled")
    assert report["prices"]["source"] == "bundled"
    assert "pricing.source: bundled" in report["prices"]["status"]
    assert "pricing:GetProducts" not in str(policy(guard.cfg))
    assert (
        "pricing:GetProducts"
        in policy(make_guard(clock, db_url, ["endpoint"]).cfg)["Statement"][0]["Action"]
    )


def test_pricing_refresh_command(sim: Simulator, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'guard.db'}"
    config = write_config(tmp_path, db, "regions: [us-east-1, eu-west-1]\n")

    result = cli(["pricing", "refresh"], sim, config)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        lines[0].startswith("stored ") and "prices from the AWS Price List API, fetched" in lines[0]
    )
    assert "  eu-west-1: Studio-JupyterLab 21" in lines
    us = next(line for line in lines if line.startswith("  us-east-1: "))
    hosting, notebook = (products(sim, "us-east-1", c) for c in ("Hosting", "Notebook"))
    assert "BatchTransform 2" in us and f"Hosting {hosting}" in us and f"Notebook {notebook}" in us
    assert calls(sim) == pages(sim, "us-east-1") + pages(sim, "eu-west-1")
    store = Store(db)
    try:
        with store.session() as s:
            stored = s.scalar(select(func.count()).select_from(PriceRow))
        assert lines[0].startswith(f"stored {stored} prices")

        sim.fail(GET_PRODUCTS)
        failed = cli(["pricing", "refresh"], sim, config)
        assert failed.exit_code == 1
        assert (
            "Price List API refresh failed: pricing:GetProducts in default account/us-east-1: "
            "AccessDeniedException"
        ) in words(failed.output)
        assert "cached prices are unchanged" in words(failed.output)
        with store.session() as s:
            assert s.scalar(select(func.count()).select_from(PriceRow)) == stored
    finally:
        store.close()

    bundled = write_config(tmp_path, db, "pricing: {source: bundled}\n")
    refused = cli(["pricing", "refresh"], sim, bundled)
    assert refused.exit_code == 2 and "pricing.source is bundled" in refused.output


def _offer_json() -> dict[str, Any]:
    """A small offer file in the shape of AmazonSageMaker/current/index.json."""

    def product(sku: str, usage: str, **attrs: str) -> dict[str, Any]:
        base = {"regionCode": "us-east-1", "locationType": "AWS Region", "usagetype": usage}
        return {"sku": sku, "productFamily": "ML Instance", "attributes": base | attrs}

    def term(sku: str, usd: str, unit: str = "Hrs") -> dict[str, Any]:
        dim = {"unit": unit, "pricePerUnit": {"USD": usd}}
        return {f"{sku}.T": {"priceDimensions": {f"{sku}.T.R": dim}}}

    products = {
        "A": product("A", "USE1-Notebk:ml.p3.2xlarge", instanceName="ml.p3.2xlarge",
                     component="Notebook"),
        "B": product("B", "USE1-Train:ml.p5.48xlarge", instanceName="ml.p5.48xlarge",
                     component="Training"),
        "C": product("C", "USE1-Studio:JupyterLab-ml.trn1.2xlarge",
                     platoinstancetype="Studio-JupyterLab"),
        "D": product("D", "USE1-Host:ml.m5.xlarge", instanceName="ml.m5.xlarge",
                     component="Hosting", locationType="AWS Outposts"),
        "E": product("E", "USE1-Notebk:ml.t3.medium", instanceName="ml.t3.medium",
                     component="Notebook"),
    }  # fmt: skip
    terms = {"A": term("A", "3.8250000000"), "B": term("B", "55.0400000000"),
             "C": term("C", "1.5000000000"), "D": term("D", "0.3"),
             "E": term("E", "0.0")}  # fmt: skip
    return {"publicationDate": "2026-11-20T18:00:00Z", "products": products,
            "terms": {"OnDemand": terms}}  # fmt: skip


def test_the_bundled_table_is_rebuilt_from_an_offer_file_json_or_csv(tmp_path: Path) -> None:
    from guard import offer_file

    table = tmp_path / "prices.csv"
    table.write_text(
        "instance_type,region,component,usd_per_hour,source,as_of\r\n"
        "ml.g5.xlarge,eu-west-1,Studio-JupyterLab,1.57,github:x/y@1:z,2026-09-24\r\n",
        encoding="utf-8",
    )
    offer = tmp_path / "index.json"
    offer.write_text(json.dumps(_offer_json()), encoding="utf-8")
    assert offer_file.main([str(offer), "--table", str(table)]) == 0
    rows = {(r["instance_type"], r["region"], r["component"]): r
            for r in csv.DictReader(io.StringIO(table.read_text(encoding="utf-8")))}  # fmt: skip
    assert rows[("ml.p3.2xlarge", "us-east-1", "Notebook")]["usd_per_hour"] == "3.825"
    assert rows[("ml.p5.48xlarge", "us-east-1", "Training")]["usd_per_hour"] == "55.04"
    assert rows[("ml.trn1.2xlarge", "us-east-1", "Studio-JupyterLab")]["as_of"] == "2026-11-20"
    assert "publicationDate 2026-11-20T18:00:00Z" in rows[("ml.p3.2xlarge", "us-east-1",
                                                             "Notebook")]["source"]  # fmt: skip
    # Outposts and $0 (free tier) SKUs are not prices; rows the offer lacks are kept
    assert ("ml.m5.xlarge", "us-east-1", "Hosting") not in rows
    assert ("ml.t3.medium", "us-east-1", "Notebook") not in rows
    assert rows[("ml.g5.xlarge", "eu-west-1", "Studio-JupyterLab")]["source"] == "github:x/y@1:z"

    # the bulk CSV: metadata lines, then a header of display names
    csv_offer = tmp_path / "index.csv"
    csv_offer.write_text(
        '"FormatVersion","v1.0"\n"Publication Date","2026-11-20T18:00:00Z"\n'
        '"SKU","OfferTermCode","RateCode","TermType","Unit","PricePerUnit","Currency",'
        '"Location Type","Region Code","usageType","Instance Name","Component"\n'
        '"A","T","A.T.R","OnDemand","Hrs","3.8250000000","USD","AWS Region","us-west-2",'
        '"USW2-Notebk:ml.p3.2xlarge","ml.p3.2xlarge","Notebook"\n'
        '"A","R","A.R.R","Reserved","Hrs","1.0","USD","AWS Region","us-west-2",'
        '"USW2-Notebk:ml.p3.2xlarge","ml.p3.2xlarge","Notebook"\n',
        encoding="utf-8",
    )
    prices, published, _ = offer_file.parse(csv_offer)
    assert prices == {("ml.p3.2xlarge", "us-west-2", "Notebook"): Decimal("3.825")}
    assert published == "2026-11-20T18:00:00Z"


def test_every_bundled_row_names_its_source_and_date() -> None:
    text = (Path(__file__).parents[1] / "guard/data/prices.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) >= 230
    for row in rows:
        assert row["source"].startswith(("github:", "aws-offer-file:")), row
        assert date.fromisoformat(row["as_of"]) and Decimal(row["usd_per_hour"]) > 0
    keys = [(r["instance_type"], r["region"], r["component"]) for r in rows]
    assert len(keys) == len(set(keys))
