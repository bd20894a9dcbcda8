"""The IAM of the deployment templates, generated from `guard.iam.policy` (and so from the
kind registry): `make iam` rewrites the marked `Policies:` block of each template.

- deploy/lambda/template.yaml: the Lambda's role gets the policy of a config with a rule for
  every kind and every action it offers (`typical_config`): the scan statements always, the
  mutating ones only under the template's `Enforce` condition.
- deploy/iam/member-account-role.yaml: the member role gets the read-only policy of the
  default config always, and, under `AllowActions`, the reads the actions need besides
  (`ReadBeforeActing`) and the mutating statements.

tests/test_iam_drift.py fails when a template differs from what this module writes.

    python -m guard.iam_templates           # rewrite the templates
    python -m guard.iam_templates --check   # exit 1 if a template drifted
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guard.config import Config
from guard.iam import policy
from guard.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_TEMPLATE = ROOT / "deploy" / "lambda" / "template.yaml"
MEMBER_TEMPLATE = ROOT / "deploy" / "iam" / "member-account-role.yaml"

BEGIN = "# BEGIN generated IAM: `make iam` writes this block from guard.iam.policy; do not edit"
END = "# END generated IAM"
READ_SID = "ScanSageMaker"


@contextlib.contextmanager
def _without_env() -> Iterator[None]:
    """The templates must not depend on the COST_GUARD_* variables of whoever runs `make iam`."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("COST_GUARD_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def typical_config() -> Config:
    """A rule for every kind and every action it offers: all that the guard may ever do."""
    rules = [
        {"id": f"{kind}-{action}", "kind": kind, "action": action, "running_for": "1d"}
        for kind, spec in KINDS.items()
        for action in spec.actions
    ]
    with _without_env():
        return Config.model_validate({"rules": rules})


def _default_config() -> Config:
    with _without_env():
        return Config()


def _scalar(value: Any) -> str:
    """A YAML scalar as the templates write it; anything else in JSON (flow YAML)."""
    if isinstance(value, str) and value and value != "*" and ": " not in value:
        return json.dumps(value) if value[0] in "!&*{[|>'\"%@`#" else value
    return json.dumps(value)


def _statement(statement: dict[str, Any], pad: str, comment: str = "") -> list[str]:
    """One statement as a YAML sequence item indented by `pad`."""
    lines: list[str] = []
    for i, (key, value) in enumerate(statement.items()):
        lead = f"{pad}- " if i == 0 else f"{pad}  "
        note = f"  # {comment}" if i == 0 and comment else ""
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            lines.append(f"{lead}{key}:{note}")
            lines += [f"{pad}    - {_scalar(v)}" for v in value]
        elif isinstance(value, dict):
            lines.append(f"{lead}{key}:{note}")
            lines += [f"{pad}    {k}: {json.dumps(v)}" for k, v in value.items()]
        else:
            lines.append(f"{lead}{key}: {_scalar(value)}{note}")
    return lines


def _split(generated: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(statements always granted, mutating statements): the mutating ones carry the
    exempt-tag condition."""
    statements = generated["Statement"]
    always = [s for s in statements if "Condition" not in s]
    return always, [s for s in statements if "Condition" in s]


def _act_policy(condition: str, head: list[str], mutating: list[dict[str, Any]]) -> list[str]:
    lines = [
        "  - !If",
        f"    - {condition}",
        "    - PolicyName: cost-guard-act",
        "      PolicyDocument:",
        '        Version: "2012-10-17"',
        "        # Never on resources tagged exempt: the guard skips them, and IAM makes sure of",
        "        # it too.",
        "        Statement:",
    ]
    lines += head
    for statement in mutating:
        lines += _statement(statement, "          ")
    return [*lines, "    - !Ref AWS::NoValue"]


def lambda_block() -> list[str]:
    """The Lambda role's `Policies:` (relative indentation, 0 = the `Policies:` key)."""
    always, mutating = _split(policy(typical_config()))
    lines = [
        "Policies:",
        "  - PolicyName: cost-guard-scan",
        "    PolicyDocument:",
        '      Version: "2012-10-17"',
        "      Statement:",
    ]
    for statement in always:
        lines += _statement(statement, "        ")
    lines += [
        "        - !If",
        "          - HasMemberRole",
        "          - Sid: AssumeMemberRoles",
        "            Effect: Allow",
        "            Action: sts:AssumeRole",
        '            Resource: !Sub "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"',
        "          - !Ref AWS::NoValue",
    ]
    return lines + _act_policy("Enforce", [], mutating)


def member_block() -> list[str]:
    """The member role's `Policies:` (relative indentation)."""
    read_only, _ = _split(policy(_default_config(), read_only=True))
    always, mutating = _split(policy(typical_config()))
    lines = [
        "Policies:",
        "  - PolicyName: cost-guard-scan",
        "    PolicyDocument:",
        '      Version: "2012-10-17"',
        "      Statement:",
    ]
    for statement in read_only:
        lines += _statement(statement, "        ")
    [read] = [s for s in read_only if s["Sid"] == READ_SID]
    [full] = [s for s in always if s["Sid"] == READ_SID]
    extra = sorted(set(full["Action"]) - set(read["Action"]))
    head: list[str] = []
    if extra:
        before = {"Sid": "ReadBeforeActing", "Effect": "Allow", "Action": extra, "Resource": "*"}
        head = _statement(before, "          ", "what an action reads first (e.g. saved tags)")
    return lines + _act_policy("AllowActions", head, mutating)


def rewrite(text: str, block: list[str]) -> str:
    """`text` with the lines between its BEGIN and END markers replaced by `block`, indented
    as the BEGIN marker is."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"expected one '{BEGIN}' line and one '{END}' line after it")
    begin = lines[starts[0]]
    indent = begin[: len(begin) - len(begin.lstrip())]
    body = [f"{indent}{line}\n" for line in block]
    return "".join([*lines[: starts[0] + 1], *body, *lines[ends[0] :]])


def generated() -> dict[Path, str]:
    """Each template's text as it should be."""
    return {
        LAMBDA_TEMPLATE: rewrite(LAMBDA_TEMPLATE.read_text(), lambda_block()),
        MEMBER_TEMPLATE: rewrite(MEMBER_TEMPLATE.read_text(), member_block()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guard.iam_templates", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only say whether one drifted")
    args = parser.parse_args(argv)
    drifted = [path for path, text in generated().items() if path.read_text() != text]
    for path in drifted:
        where = path.relative_to(ROOT)
        if args.check:
            print(f"{where}: IAM differs from the registry; run `make iam`", file=sys.stderr)
        else:
            path.write_text(generated()[path])
            print(f"{where}: IAM rewritten")
    return 1 if args.check and drifted else 0


if __name__ == "__main__":
    sys.exit(main())
