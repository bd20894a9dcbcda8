"""SageMaker `Search` in the simulator, for the records the guard reads by the page.

moto 5.2's Search returns every match in one answer (no paging), knows a few filters, and
builds records that are not the service model's `SearchRecord`s. `install()` replaces it, for
the resources the guard searches, with one that follows botocore's model (sagemaker
2017-07-24) and the API reference:

- `Resource` `TrainingJob`, `Endpoint`, `ExperimentTrialComponent` and
  `HyperParameterTuningJob`; a record carries the same facts as the resource's Describe answer
  (moto's own Describe, so both always agree) cut to the members of the record's shape
  (`TrainingJob`, `Endpoint`, `TrialComponent`, `HyperParameterTuningJobSearchEntity`),
  plus its `Tags`. Every other `Resource` is still answered by moto.
- Jobs appear as trial components too, as SageMaker's automatic tracking creates them:
  `<job>-aws-training-job` (`-aws-processing-job`, `-aws-transform-job`) with `Source`
  (`SourceArn`, `SourceType` "SageMakerTrainingJob"/...), `Status.PrimaryStatus` and
  `SourceDetail` holding the full job record.
- `SearchExpression`: `Filters` (Name as a dotted property path, `Tags.<key>` for a tag's
  value; Operator Equals, NotEquals, GreaterThan, GreaterThanOrEqualTo, LessThan,
  LessThanOrEqualTo, Contains, Exists, NotExists, In; no Operator means Equals), `NestedFilters`,
  `SubExpressions` and `Operator` And/Or; at least one of them, at most 50 in all, at most one
  Contains, as the reference says. Timestamps compare as times (ISO 8601 or epoch seconds).
- `SortBy` (default `LastModifiedTime`), `SortOrder` (default `Descending`).
- Paging: `MaxResults` 1..100 (the reference names no default; 100 here), an opaque
  `NextToken` tied to the query (another query's token is a ValidationException), `TotalHits`.

Requests pass the fault injector like every other call (`sim.fail(["sagemaker:Search"])`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import botocore.session
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import AWSValidationException
from moto.sagemaker.responses import SageMakerResponse

MAX_RESULTS = 100
MAX_VALUE = 1024  # FilterValue's max length
MAX_CLAUSES = 50  # Filters + NestedFilters + SubExpressions, recursively
OPERATORS = (
    "Equals", "NotEquals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan",
    "LessThanOrEqualTo", "Contains", "Exists", "NotExists", "In",
)  # fmt: skip
# record shape -> (backend dict of jobs, its Describe method, trial component name suffix)
_JOBS = {
    "TrainingJob": ("training_jobs", "describe_training_job", "training-job"),
    "ProcessingJob": ("processing_jobs", "describe_processing_job", "processing-job"),
    "TransformJob": ("transform_jobs", "describe_transform_job", "transform-job"),
}

_installed = False


def install() -> None:
    """Answer Search for the guard's resources (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    original = SageMakerResponse.search

    def search(self: Any) -> ActionResult:
        resource = self._get_param("Resource")
        if resource not in _SOURCES:
            return original(self)
        return ActionResult(
            answer(
                _SOURCES[resource](self.sagemaker_backend),
                resource=resource,
                expression=self._get_param("SearchExpression"),
                sort_by=self._get_param("SortBy"),
                sort_order=self._get_param("SortOrder"),
                max_results=self._get_param("MaxResults"),
                token=self._get_param("NextToken"),
            )
        )

    SageMakerResponse.search = search  # type: ignore[method-assign]


# --- records -------------------------------------------------------------------------------


@functools.cache
def _members(shape: str) -> frozenset[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for(shape).members)


def _cut(described: dict[str, Any], shape: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    """A Describe answer as the record shape holds it, with the resource's tags."""
    record = {k: v for k, v in described.items() if k in _members(shape) and v is not None}
    record["Tags"] = [{"Key": t["Key"], "Value": t["Value"]} for t in tags]
    return record


def _job_records(backend: Any, noun: str) -> Iterator[dict[str, Any]]:
    jobs_attr, describe, _ = _JOBS[noun]
    for name, job in list(getattr(backend, jobs_attr).items()):
        yield _cut(getattr(backend, describe)(name), noun, list(job.tags or []))


def _training_jobs(backend: Any) -> Iterator[dict[str, Any]]:
    for record in _job_records(backend, "TrainingJob"):
        yield {"TrainingJob": record}


def _endpoints(backend: Any) -> Iterator[dict[str, Any]]:
    for name, endpoint in list(backend.endpoints.items()):
        described = backend.describe_endpoint(name)
        yield {"Endpoint": _cut(described, "Endpoint", list(endpoint.tags or []))}


def _trial_components(backend: Any) -> Iterator[dict[str, Any]]:
    for component in list(backend.trial_components.values()):
        yield {"TrialComponent": _cut(component.response_object, "TrialComponent", [])}
    for noun, (_, _, suffix) in _JOBS.items():
        for job in _job_records(backend, noun):
            arn = job[f"{noun}Arn"]
            name = f"{job[f'{noun}Name']}-aws-{suffix}"
            status = job[f"{noun}Status"]
            component = {
                "TrialComponentName": name,
                "DisplayName": name,
                "TrialComponentArn": (
                    arn.rsplit(":", 1)[0] + f":experiment-trial-component/{name.lower()}"
                ),
                "Source": {"SourceArn": arn, "SourceType": f"SageMaker{noun}"},
                "Status": {"PrimaryStatus": status},
                "StartTime": job.get(f"{noun.removesuffix('Job')}StartTime"),
                "EndTime": job.get(f"{noun.removesuffix('Job')}EndTime"),
                "CreationTime": job.get("CreationTime"),
                "LastModifiedTime": job.get("LastModifiedTime", job.get("CreationTime")),
                "SourceDetail": {"SourceArn": arn, noun: job},
            }
            yield {"TrialComponent": {k: v for k, v in component.items() if v is not None}}


def _tuning_jobs(backend: Any) -> Iterator[dict[str, Any]]:
    for name, job in list(backend.hyper_parameter_tuning_jobs.items()):
        described = backend.describe_hyper_parameter_tuning_job(name)
        record = _cut(described, "HyperParameterTuningJobSearchEntity", list(job.tags or []))
        yield {"HyperParameterTuningJob": record}


_SOURCES: dict[str, Callable[[Any], Iterable[dict[str, Any]]]] = {
    "TrainingJob": _training_jobs,
    "Endpoint": _endpoints,
    "ExperimentTrialComponent": _trial_components,
    "HyperParameterTuningJob": _tuning_jobs,
}


# --- the query -----------------------------------------------------------------------------


def answer(
    records: Iterable[dict[str, Any]],
    *,
    resource: str,
    expression: dict[str, Any] | None,
    sort_by: str | None,
    sort_order: str | None,
    max_results: int | None,
    token: str | None,
) -> dict[str, Any]:
    """One page of the matching records, as the Search response."""
    limit = MAX_RESULTS if max_results is None else int(max_results)
    if not 1 <= limit <= MAX_RESULTS:
        raise AWSValidationException(
            f"1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy "
            f"constraint: Member must have value less than or equal to {MAX_RESULTS}"
        )
    if sort_order not in (None, "Ascending", "Descending"):
        raise AWSValidationException(f"Invalid SortOrder {sort_order!r}")
    if expression is not None:
        _validate(expression)
    query = json.dumps([resource, expression, sort_by, sort_order], sort_keys=True, default=str)
    digest = hashlib.sha256(query.encode()).hexdigest()[:16]
    start = _offset(token, digest)
    found = [r for r in records if expression is None or _matches(_body(r), expression)]
    key = sort_by or "LastModifiedTime"
    present = [r for r in found if _value(_body(r), key) is not None]
    present.sort(key=lambda r: _sortable(_value(_body(r), key)))
    if sort_order != "Ascending":
        present.reverse()
    ordered = present + [r for r in found if _value(_body(r), key) is None]
    page = ordered[start : start + limit]
    response: dict[str, Any] = {
        "Results": page,
        "TotalHits": {"Value": len(ordered), "Relation": "EqualTo"},
    }
    if start + limit < len(ordered):
        response["NextToken"] = _token(start + limit, digest)
    return response


def _body(record: dict[str, Any]) -> dict[str, Any]:
    """The resource inside a SearchRecord ({"TrainingJob": {...}} -> {...})."""
    return next(iter(record.values()))


def _token(offset: int, digest: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": digest}).encode()).decode()


def _offset(token: str | None, digest: str) -> int:
    if not token:
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        if decoded["q"] != digest:
            raise ValueError("another query's token")
        return int(decoded["o"])
    except (ValueError, KeyError, TypeError):
        raise AWSValidationException("Invalid pagination token") from None


def _validate(expression: dict[str, Any]) -> None:
    counts = {"clauses": 0, "contains": 0}

    def walk(node: dict[str, Any]) -> None:
        filters = node.get("Filters") or []
        nested = node.get("NestedFilters") or []
        subs = node.get("SubExpressions") or []
        if not (filters or nested or subs):
            raise AWSValidationException(
                "A SearchExpression must have at least one Filter, NestedFilter or SubExpression"
            )
        if node.get("Operator") not in (None, "And", "Or"):
            raise AWSValidationException(f"Invalid Operator {node.get('Operator')!r}")
        counts["clauses"] += len(filters) + len(nested) + len(subs)
        for f in [*filters, *(f for n in nested for f in n.get("Filters") or [])]:
            operator = f.get("Operator", "Equals")
            if operator not in OPERATORS:
                raise AWSValidationException(f"Invalid Operator {operator!r}")
            counts["contains"] += operator == "Contains"
            if operator not in ("Exists", "NotExists") and f.get("Value") is None:
                raise AWSValidationException(f"Operator {operator} needs a Value")
            if len(str(f.get("Value") or "")) > MAX_VALUE:  # the model's FilterValue
                raise AWSValidationException(
                    f"1 validation error detected: Value at 'searchExpression.filters.value' "
                    f"failed to satisfy constraint: Member must have length less than or "
                    f"equal to {MAX_VALUE}"
                )
        for sub in subs:
            walk(sub)

    walk(expression)
    if counts["clauses"] > MAX_CLAUSES:
        raise AWSValidationException(
            f"A SearchExpression can include at most {MAX_CLAUSES} Filters, NestedFilters "
            "and SubExpressions"
        )
    if counts["contains"] > 1:
        raise AWSValidationException("A SearchExpression can include only one Contains operator")


def _matches(body: dict[str, Any], expression: dict[str, Any]) -> bool:
    results = [_filter(body, f) for f in expression.get("Filters") or []]
    results += [_nested(body, n) for n in expression.get("NestedFilters") or []]
    results += [_matches(body, sub) for sub in expression.get("SubExpressions") or []]
    return any(results) if expression.get("Operator") == "Or" else all(results)


def _nested(body: dict[str, Any], nested: dict[str, Any]) -> bool:
    """Some element of the list at NestedPropertyName satisfies every filter."""
    path = nested["NestedPropertyName"]
    items = _value(body, path)
    if not isinstance(items, list):
        return False
    prefix = path + "."
    return any(
        all(
            _filter(item, {**f, "Name": f["Name"].removeprefix(prefix)})
            for f in nested.get("Filters") or []
        )
        for item in items
        if isinstance(item, dict)
    )


def _value(body: Any, path: str) -> Any:
    value = body
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part == "Tags" and isinstance(value, dict) and isinstance(value.get("Tags"), list):
            tags = {t["Key"]: t["Value"] for t in value["Tags"]}
            return tags.get(".".join(parts[i + 1 :])) if i + 1 < len(parts) else tags
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _filter(body: dict[str, Any], f: dict[str, Any]) -> bool:
    operator = f.get("Operator", "Equals")
    actual = _value(body, f["Name"])
    if operator == "Exists":
        return actual is not None
    if operator == "NotExists":
        return actual is None
    if actual is None:
        return False
    wanted = str(f["Value"])
    if operator == "Contains":
        return wanted in str(actual)
    if operator == "In":
        return any(_compare(actual, v.strip()) == 0 for v in wanted.split(","))
    order = _compare(actual, wanted)
    return {
        "Equals": order == 0,
        "NotEquals": order != 0,
        "GreaterThan": order > 0,
        "GreaterThanOrEqualTo": order >= 0,
        "LessThan": order < 0,
        "LessThanOrEqualTo": order <= 0,
    }[operator]


def _compare(actual: Any, wanted: str) -> int:
    """-1, 0 or 1: `actual` against the filter's text, as a time, a number or text."""
    left: Any
    right: Any
    if isinstance(actual, datetime) or _looks_like_time(actual):
        left, right = _sortable(actual), _time(wanted)
    elif isinstance(actual, bool):
        left, right = str(actual).lower(), wanted.lower()
    elif isinstance(actual, int | float):
        try:
            left, right = float(actual), float(wanted)
        except ValueError:
            raise AWSValidationException(f"Value {wanted!r} is not a number") from None
    else:
        left, right = str(actual), wanted
    return int(left > right) - int(left < right)


def _looks_like_time(value: Any) -> bool:
    if not isinstance(value, str) or len(value) < 19 or value[4] != "-" or value[10] != "T":
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AWSValidationException(f"Value {text!r} is not a timestamp") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _sortable(value: Any) -> Any:
    """Times as epoch seconds (moto keeps naive UTC datetimes or ISO text)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if _looks_like_time(value):
        return _time(str(value))
    return value
