"""botocore's data files, loaded without what a daemon never reads.

botocore decodes its JSON models into `OrderedDict`s, documentation included, and keeps them
for the life of the process: SageMaker's model alone is ~9.4 MB of Python objects, of which
the documentation strings and the OrderedDicts' own overhead are most; `endpoints.json`
(every AWS service's endpoints in every partition) is another ~6.7 MB. The guard never shows a
docstring and only ever makes clients of `SERVICES`, so its loader keeps plain dicts (ordered
since Python 3.7, and all botocore asks of a mapping), empties the documentation strings, and
keeps the endpoints of `SERVICES` only.

A service given `operations` (SageMaker: the ~50 of its ~450 operations the kinds name,
`guard.kinds.operations`) keeps only those and the shapes they reach. botocore builds every
client's class anew, with a method and a docstring object per operation of the model: ~0.8 MB
per SageMaker client, one per account and region. Everything else is botocore's own data,
unchanged.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

import botocore.loaders

# Every service `Aws.client` makes clients of (`Aws.client` refuses any other: its endpoints
# would be missing from the trimmed endpoints data).
SERVICES = frozenset(
    {
        "sagemaker",
        "sts",
        "resourcegroupstaggingapi",
        "cloudwatch",
        "logs",
        "organizations",
        "pricing",
        "ce",
        "s3",
    }
)
_DOCUMENTATION = ("documentation", "documentationUrl")
# botocore's file name extensions, in its order (botocore.loaders._JSON_OPEN_METHODS)
_OPENERS: tuple[tuple[str, Callable[..., Any]], ...] = (
    (".json", open),
    (".json.gz", gzip.open),
)


def _without_documentation(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Emptied, not dropped: botocore reads some with [] (a client context parameter's). Only a
    # string is documentation: a member named "documentation" is a dict ({"shape": ...}).
    return {
        key: "" if key in _DOCUMENTATION and isinstance(value, str) else value
        for key, value in pairs
    }


class SlimJSONFileLoader:
    """botocore's `JSONFileLoader` (its `exists` / `load_file` interface), decoding into
    plain dicts with the documentation emptied, trimming `endpoints.json` to `SERVICES` and
    the model of a service in `operations` to those operations."""

    def __init__(self, operations: Mapping[str, Collection[str]] | None = None) -> None:
        self.operations = dict(operations or {})

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + ext) for ext, _ in _OPENERS)

    def load_file(self, file_path: str) -> Any:
        for ext, opener in _OPENERS:
            if os.path.isfile(file_path + ext):
                with opener(file_path + ext, "rb") as fp:
                    payload = fp.read().decode("utf-8")
                data = json.loads(payload, object_pairs_hook=_without_documentation)
                if os.path.basename(file_path) == "endpoints" and "partitions" in data:
                    for partition in data["partitions"]:
                        services = partition.get("services", {})
                        partition["services"] = {
                            name: services[name] for name in sorted(SERVICES) if name in services
                        }
                # .../data/<service>/<api version>/service-2
                service = os.path.basename(os.path.dirname(os.path.dirname(file_path)))
                if os.path.basename(file_path) == "service-2" and service in self.operations:
                    data = only(data, self.operations[service])
                return data
        return None


def only(model: dict[str, Any], operations: Collection[str]) -> dict[str, Any]:
    """`model` with only `operations` and the shapes they reach (members, list members, map
    keys and values, errors), in botocore's order. Exception shapes are all kept: botocore
    makes `client.exceptions` of them, and they are small."""
    wanted = set(operations)
    kept = {name: op for name, op in model["operations"].items() if name in wanted}
    shapes = model["shapes"]
    todo = [name for name, shape in shapes.items() if shape.get("exception")]
    for op in kept.values():
        todo += [op[key]["shape"] for key in ("input", "output") if key in op]
        todo += [error["shape"] for error in op.get("errors", [])]
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        shape = shapes[name]
        todo += [member["shape"] for member in shape.get("members", {}).values()]
        todo += [shape[key]["shape"] for key in ("member", "key", "value") if key in shape]
    return {
        **model,
        "operations": kept,
        "shapes": {name: shape for name, shape in shapes.items() if name in reached},
    }


def loader(operations: Mapping[str, Collection[str]] | None = None) -> botocore.loaders.Loader:
    """A loader over botocore's usual search paths (`AWS_DATA_PATH` included), slim; the
    model of each service in `operations` ({"sagemaker": {...}}) trimmed to those."""
    paths = os.environ.get("AWS_DATA_PATH")
    extra = [os.path.expanduser(p) for p in paths.split(os.pathsep)] if paths else None
    return botocore.loaders.Loader(
        extra_search_paths=extra, file_loader=SlimJSONFileLoader(operations)
    )
