"""The AWS Price List API in the simulator: `pricing:GetProducts`, which moto does not have.

A small WSGI layer in front of moto (behind the fault injector, so `sim.fail(
"pricing:GetProducts")` works as for any other operation) answers JSON-protocol requests
with target `AWSPriceListService.GetProducts`:

- products of ServiceCode `AmazonSageMaker` only, each PriceList item a JSON string shaped as
  the real API's (`product.attributes` with servicecode, productFamily, regionCode, location,
  locationType, instanceName, component, platoinstancetype, usagetype; `terms.OnDemand.<sku>
  .priceDimensions.<rate>` with unit and `pricePerUnit.USD`);
- prices from the bundled table (`guard/data/prices.csv`), plus `EXTRA_PRICES` (rows it
  lacks, and one figure that differs from it so tests can tell the sources apart), plus
  decoys every reader must skip: an Outposts SKU, a free-tier $0 SKU, a non-hourly
  dimension, a SpotTraining SKU and an "ML Storage" product;
- Filters (TERM_MATCH / EQUALS / CONTAINS / ANY_OF / NONE_OF on product attributes) and
  paging by NextToken, MaxResults 1..100 (default 100).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

from guard.pricing import bundled_prices
from guard.sim.base import SimBase

TARGET_PREFIX = "AWSPriceListService."
SERVICE_CODE = "AmazonSageMaker"
MAX_RESULTS = 100
PUBLICATION = "2026-11-01T00:00:00Z"

# Prices the bundled table lacks, and one it knows at another figure (a price change since
# the table's date): (instance type, region, component) -> USD per hour.
EXTRA_PRICES: dict[tuple[str, str, str], Decimal] = {
    ("ml.m5.xlarge", "us-east-1", "BatchTransform"): Decimal("0.23"),
    ("ml.c5.xlarge", "us-east-1", "BatchTransform"): Decimal("0.204"),
    ("ml.t3.medium", "us-east-1", "Studio-CodeEditor"): Decimal("0.05"),
    ("ml.m5.xlarge", "us-east-1", "Studio-CodeEditor"): Decimal("0.23"),
    ("ml.g5.2xlarge", "us-east-1", "Hosting"): Decimal("1.212"),  # bundled: 1.515
}

_REGIONS = {  # regionCode -> (usage type prefix, location)
    "us-east-1": ("USE1", "US East (N. Virginia)"),
    "us-east-2": ("USE2", "US East (Ohio)"),
    "us-west-2": ("USW2", "US West (Oregon)"),
    "eu-west-1": ("EU", "EU (Ireland)"),
    "eu-central-1": ("EUC1", "EU (Frankfurt)"),
    "ap-south-1": ("APS3", "Asia Pacific (Mumbai)"),
}
# component -> (platoinstancetype, component attribute, usage type operation). Studio values
# vary in case on AWS; the simulator keeps that variety.
_NAMES = {
    "Notebook": ("Notebook", "Notebook", "Notebk:{t}"),
    "Hosting": ("Hosting", "Hosting", "Host:{t}"),
    "Training": ("Training", "Training", "Train:{t}"),
    "Processing": ("Processing", "Processing", "Processing:{t}"),
    "BatchTransform": ("BatchTransform", "BatchTransform", "Tsform:{t}"),
    "Studio-JupyterLab": ("Studio-JupyterLab", "studio-jupyterlab", "Studio:JupyterLab-{t}"),
    "Studio-CodeEditor": ("studio-codeeditor", "Studio-CodeEditor", "Studio:CodeEditor-{t}"),
}


def _sku(*parts: str) -> str:
    digest = hashlib.sha1("|".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def product(
    instance_type: str,
    region: str,
    component: str,
    usd: Decimal | str,
    *,
    location_type: str = "AWS Region",
    unit: str = "Hrs",
    platoinstancetype: str | None = None,
    product_family: str = "ML Instance",
    extra_dimensions: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """One product as GetProducts describes it (before it is serialized to a string)."""
    prefix, location = _REGIONS.get(region, (region.upper().replace("-", ""), region))
    plato, component_attr, operation = _NAMES.get(component, (component, component, "{t}"))
    usage_type = f"{prefix}-{operation.format(t=instance_type)}"
    plato = platoinstancetype or plato
    sku = _sku(instance_type, region, plato, location_type, str(usd), unit, product_family)
    term = f"{sku}.JRTCKXETXF"
    dimensions = {}
    for i, (dim_unit, dim_usd) in enumerate([(unit, str(usd)), *extra_dimensions]):
        rate = f"{term}.{6 + i}YS6EN2CT7"
        dimensions[rate] = {
            "unit": dim_unit,
            "endRange": "Inf",
            "description": f"${Decimal(dim_usd):.4f} per {dim_unit} for {usage_type}",
            "appliesTo": [],
            "rateCode": rate,
            "beginRange": "0",
            "pricePerUnit": {"USD": f"{Decimal(dim_usd):.10f}"},
        }
    return {
        "product": {
            "productFamily": product_family,
            "attributes": {
                "servicecode": SERVICE_CODE,
                "servicename": "Amazon SageMaker",
                "productFamily": product_family,
                "regionCode": region,
                "location": location,
                "locationType": location_type,
                "instanceName": instance_type,
                "instanceType": instance_type,
                "component": component_attr,
                "platoinstancetype": plato,
                "usagetype": usage_type,
                "operation": "RunInstance",
            },
            "sku": sku,
        },
        "serviceCode": SERVICE_CODE,
        "terms": {
            "OnDemand": {
                term: {
                    "priceDimensions": dimensions,
                    "sku": sku,
                    "effectiveDate": PUBLICATION,
                    "offerTermCode": "JRTCKXETXF",
                    "termAttributes": {},
                }
            }
        },
        "version": "20261101000000",
        "publicationDate": PUBLICATION,
    }


def _decoys() -> list[dict[str, Any]]:
    """Products a reader must not take as the on-demand $/h of an ML instance."""
    return [
        # an Outposts SKU of a type we price: not "AWS Region"
        product("ml.m5.xlarge", "us-east-1", "Hosting", "9.99", location_type="AWS Outposts"),
        # the notebook free tier: $0 per hour
        product("ml.t3.medium", "us-east-1", "Notebook", "0", platoinstancetype="Notebook-Free"),
        product("ml.t3.medium", "us-east-1", "Notebook", "0"),
        # a training SKU with a second, non-hourly dimension that must be ignored
        product(
            "ml.m5.xlarge", "us-east-1", "Training", "0.23", extra_dimensions=[("Quantity", "5")]
        ),
        # managed spot training: billed for fewer seconds, not at this per-hour figure
        product(
            "ml.g5.xlarge", "us-east-1", "Training", "0.4224", platoinstancetype="SpotTraining"
        ),
        # another product family (filtered out by the query)
        product(
            "ml.m5.xlarge",
            "us-east-1",
            "Notebook",
            "0.14",
            unit="GB-Mo",
            product_family="ML Storage",
        ),
    ]


class PriceList:
    """The price list the simulator serves; tests may change it (reset with the simulator)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prices: dict[tuple[str, str, str], Decimal] = {}
        self._items: list[tuple[dict[str, Any], str]] | None = None
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._prices = {**bundled_prices(), **EXTRA_PRICES}
            self._items = None

    def set_price(self, instance_type: str, region: str, component: str, usd: Decimal) -> None:
        with self._lock:
            self._prices[(instance_type, region, component)] = Decimal(usd)
            self._items = None

    def remove_price(self, instance_type: str, region: str, component: str) -> None:
        with self._lock:
            self._prices.pop((instance_type, region, component), None)
            self._items = None

    def priced(self) -> dict[tuple[str, str, str], Decimal]:
        """(instance type, region, component) -> USD per hour: what a refresh should store."""
        with self._lock:
            return dict(self._prices)

    def items(self) -> list[tuple[dict[str, Any], str]]:
        """Every product (attributes, serialized item), built once per change."""
        with self._lock:
            if self._items is None:
                products = [
                    product(t, r, c, usd) for (t, r, c), usd in sorted(self._prices.items())
                ] + _decoys()
                self._items = [
                    (p["product"]["attributes"], json.dumps(p, separators=(",", ":")))
                    for p in products
                ]
            return self._items

    def get_products(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if body.get("ServiceCode") != SERVICE_CODE:
            return {"FormatVersion": "aws_v1", "PriceList": []}
        limit = int(body.get("MaxResults") or MAX_RESULTS)
        if not 1 <= limit <= MAX_RESULTS:
            raise _Invalid(f"MaxResults must be between 1 and {MAX_RESULTS}")
        filters = list(body.get("Filters") or [])
        matching = [item for attrs, item in self.items() if _matches(attrs, filters)]
        start = _offset(body.get("NextToken"))
        page = matching[start : start + limit]
        answer: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": page}
        if start + limit < len(matching):
            answer["NextToken"] = base64.b64encode(str(start + limit).encode()).decode()
        return answer


class _Invalid(Exception):
    pass


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.b64decode(token).decode())
    except ValueError as exc:
        raise _Invalid("invalid NextToken") from exc


def _matches(attrs: Mapping[str, str], filters: Iterable[Mapping[str, str]]) -> bool:
    for f in filters:
        value, wanted = attrs.get(f.get("Field", "")), f.get("Value", "")
        kind = f.get("Type", "TERM_MATCH")
        if kind in ("TERM_MATCH", "EQUALS"):
            ok = value == wanted
        elif kind == "CONTAINS":
            ok = value is not None and wanted in value
        elif kind == "ANY_OF":
            ok = value in wanted.split(",")
        elif kind == "NONE_OF":
            ok = value not in wanted.split(",")
        else:
            raise _Invalid(f"unknown filter type {kind!r}")
        if not ok:
            return False
    return True


class PriceListApp:
    """WSGI: answers the Price List API's requests, passes everything else to moto."""

    def __init__(self, app: Callable[..., Any], prices: PriceList) -> None:
        self.app = app
        self.prices = prices

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(TARGET_PREFIX):
            return self.app(environ, start_response)
        request = Request(environ)
        operation = target[len(TARGET_PREFIX) :]
        try:
            if operation != "GetProducts":
                raise _Invalid(f"the simulator does not offer {operation}")
            answer = self.prices.get_products(json.loads(request.get_data() or b"{}"))
        except _Invalid as exc:
            error = {"__type": "InvalidParameterException", "Message": str(exc)}
            return _json(error, 400)(environ, start_response)
        return _json(answer, 200)(environ, start_response)


def _json(body: Mapping[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/x-amz-json-1.1")


class PricingSeeding(SimBase):
    """The Price List API (`pricing.GetProducts`), served from `self.price_list`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.price_list = PriceList()
        faults = self._server.faults
        faults.app = PriceListApp(faults.app, self.price_list)

    def reset(self) -> None:
        super().reset()
        self.price_list.reset()

    def set_price(
        self, instance_type: str, component: str, usd: Decimal | str, *, region: str | None = None
    ) -> None:
        """Make the Price List API answer `usd` for this (type, region, component)."""
        self.price_list.set_price(instance_type, region or self.regions[0], component, Decimal(usd))

    def remove_price(
        self, instance_type: str, component: str, *, region: str | None = None
    ) -> None:
        self.price_list.remove_price(instance_type, region or self.regions[0], component)
