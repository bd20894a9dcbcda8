"""Rebuild the bundled price table (`guard/data/prices.csv`) from an AWS Price List bulk offer
file for SageMaker, JSON or CSV, as downloaded from
https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/index.json
(or `index.csv`). `make prices OFFER=path/to/index.json` runs it.

Every on-demand hourly price of an `ml.` instance in an AWS Region is kept, for every
component the offer names (Notebook, Hosting, Training, Processing, BatchTransform, Studio
apps, and whatever else it carries under `platoinstancetype`/`component`, such as HyperPod
clusters or Canvas), with the same filters as the live Price List API refresh
(`pricing.parse_price_item`). Each row names the offer file and its publication date. Rows of
the existing table that the offer does not have are kept, with their own source.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from guard.pricing import Key, parse_price_item

COLUMNS = ["instance_type", "region", "component", "usd_per_hour", "source", "as_of"]
OFFER_URL = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/"


def json_items(offer: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The JSON offer file's products, each with its on-demand terms, shaped like one
    `GetProducts` PriceList item."""
    on_demand = offer.get("terms", {}).get("OnDemand", {})
    for sku, product in offer.get("products", {}).items():
        yield {"product": product, "terms": {"OnDemand": on_demand.get(sku, {})}}


# bulk CSV column -> product attribute (the CSV uses display names)
_CSV_ATTRIBUTES = {
    "Location Type": "locationType",
    "Region Code": "regionCode",
    "usageType": "usagetype",
    "Instance Name": "instanceName",
    "Instance Type": "instanceType",
    "Component": "component",
    "Platoinstancetype": "platoinstancetype",
    "Product Family": "productFamily",
}


def csv_items(text: str) -> tuple[dict[str, str], Iterator[dict[str, Any]]]:
    """The CSV offer file: its metadata lines ("Publication Date", …) and its rows as items;
    only `OnDemand` rows in USD carry a price."""
    lines = text.splitlines()
    meta: dict[str, str] = {}
    start = 0
    for i, line in enumerate(lines):
        cells = next(csv.reader([line]), [])
        if cells and cells[0] == "SKU":
            start = i
            break
        if len(cells) >= 2:
            meta[cells[0]] = cells[1]

    def items() -> Iterator[dict[str, Any]]:
        for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
            if row.get("TermType") != "OnDemand" or row.get("Currency", "USD") != "USD":
                continue
            attrs = {ours: row[col] for col, ours in _CSV_ATTRIBUTES.items() if row.get(col)}
            dimension = {"unit": row.get("Unit"), "pricePerUnit": {"USD": row.get("PricePerUnit")}}
            term = {"priceDimensions": {row.get("RateCode", ""): dimension}}
            yield {"product": {"attributes": attrs}, "terms": {"OnDemand": {"t": term}}}

    return meta, items()


def parse(path: Path) -> tuple[dict[Key, Decimal], str, Counter[str]]:
    """(prices, publication date, skipped items by reason) of one offer file."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        offer = json.loads(text)
        published = str(offer.get("publicationDate", ""))
        items: Iterable[dict[str, Any]] = json_items(offer)
    else:
        meta, items = csv_items(text)
        published = meta.get("Publication Date", "")
    prices: dict[Key, Decimal] = {}
    skipped: Counter[str] = Counter()
    for item in items:
        parsed = parse_price_item(item)
        if isinstance(parsed, str):
            skipped[parsed] += 1
            continue
        key, usd, _ = parsed
        # several SKUs for one key (a Region's variants): the highest, as the API refresh does
        prices[key] = max(usd, prices.get(key, usd))
    return prices, published, skipped


def _plain(usd: Decimal) -> str:
    """ "3.8250000000" -> "3.825" (no exponent: "1E+1" -> "10")."""
    text = f"{usd.normalize():f}"
    return text


def rebuild(
    offer: Path, table: Path, source: str | None = None
) -> tuple[list[dict[str, str]], Counter[str]]:
    """The new table: the offer's prices, plus the existing rows it does not cover."""
    prices, published, skipped = parse(offer)
    as_of = published[:10]
    where = source or f"aws-offer-file:AmazonSageMaker {OFFER_URL}{offer.name}"
    label = f"{where} (publicationDate {published}; on-demand, unit Hrs, AWS Region only)"
    rows = [
        {
            "instance_type": itype,
            "region": region,
            "component": component,
            "usd_per_hour": _plain(usd),
            "source": label,
            "as_of": as_of,
        }
        for (itype, region, component), usd in prices.items()
    ]
    if table.exists():
        for row in csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"))):
            if (row["instance_type"], row["region"], row["component"]) not in prices:
                rows.append({c: row[c] for c in COLUMNS})
    rows.sort(key=lambda r: (r["instance_type"], r["region"], r["component"]))
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("offer", type=Path, help="the downloaded index.json or index.csv")
    parser.add_argument("--table", type=Path, default=Path("guard/data/prices.csv"))
    parser.add_argument("--source", help="how to name the offer file in each row's source")
    args = parser.parse_args(argv)
    rows, skipped = rebuild(args.offer, args.table, args.source)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    args.table.write_text(out.getvalue(), encoding="utf-8", newline="")
    reasons = ", ".join(f"{why}: {n}" for why, n in skipped.most_common())
    print(f"{args.table}: {len(rows)} rows; skipped offer items: {reasons or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
