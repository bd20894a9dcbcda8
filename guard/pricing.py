"""What an instance costs per hour, by (instance type, region, component).

The bundled table is `guard/data/prices.csv` (sourced SageMaker on-demand prices, each row
naming its source and date). A price that is not in the table is *unknown* — counted and
shown as unknown, never as $0.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Price:
    usd_per_hour: Decimal | None
    source: str  # "bundled" | "unknown"


@cache
def bundled_prices() -> dict[tuple[str, str, str], Decimal]:
    table: dict[tuple[str, str, str], Decimal] = {}
    text = resources.files("guard").joinpath("data/prices.csv").read_text(encoding="utf-8")
    for row in csv.DictReader(io.StringIO(text)):
        key = (row["instance_type"], row["region"], row["component"])
        table[key] = Decimal(row["usd_per_hour"])
    return table


class PriceBook:
    """Looks prices up; one instance per cycle."""

    def __init__(self, table: dict[tuple[str, str, str], Decimal] | None = None) -> None:
        self._table = bundled_prices() if table is None else table

    def price(self, instance_type: str | None, region: str, component: str) -> Price:
        if instance_type is None:
            return Price(None, "unknown")
        value = self._table.get((instance_type, region, component))
        if value is None:
            return Price(None, "unknown")
        return Price(value, "bundled")
