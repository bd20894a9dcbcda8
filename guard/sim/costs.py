"""Cost Explorer in the simulator: what GetCostAndUsage answers.

Stock moto answers GetCostAndUsage from a queue of results configured over HTTP
(`POST /moto-api/static/ce/cost-and-usage-results`): each request with a body not seen before
takes the next result, a repeated body gets the same result again, and with the queue empty
the answer is empty. Nothing is patched here; these helpers fill the queue and show what the
guard asked.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from moto.backends import get_backend

from guard.sim.base import SimBase


class CostSeeding(SimBase):
    def set_cost_and_usage(self, results: Sequence[Mapping[str, Any]]) -> None:
        """Queue GetCostAndUsage answers (each a whole response: `ResultsByTime`, ...), one per
        distinct request, in the order the requests arrive."""
        body = json.dumps({"results": list(results), "account_id": self.account_id}).encode()
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/static/ce/cost-and-usage-results",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 201:
                raise RuntimeError(f"moto refused the Cost Explorer results: {response.status}")

    def queue_daily_costs(self, *answers: Mapping[date, Decimal | str | float]) -> None:
        """One DAILY UnblendedCost answer per mapping of day -> USD, queued in order."""
        self.set_cost_and_usage([daily_result(days) for days in answers])

    def cost_and_usage_requests(self) -> list[dict[str, Any]]:
        """The GetCostAndUsage requests that took a queued answer, oldest first."""
        backend = get_backend("ce")[self.account_id]["global"]
        return [json.loads(body) for body in backend.cost_usage_results]


def daily_result(days: Mapping[date, Decimal | str | float]) -> dict[str, Any]:
    return {
        "ResultsByTime": [
            {
                "TimePeriod": {
                    "Start": day.isoformat(),
                    "End": (day + timedelta(days=1)).isoformat(),
                },
                "Total": {"UnblendedCost": {"Amount": str(usd), "Unit": "USD"}},
                "Groups": [],
                "Estimated": False,
            }
            for day, usd in sorted(days.items())
        ],
        "DimensionValueAttributes": [],
    }
