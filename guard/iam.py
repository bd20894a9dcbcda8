"""The least-privilege IAM policy, generated from what the kinds and rules declare.

Read permissions come from each enabled kind; a mutating action is granted only when a rule
uses it, only on that kind's ARNs, and never on resources tagged exempt.
"""

from __future__ import annotations

from typing import Any

from guard.config import Config
from guard.kinds import KINDS

ALWAYS = ("sts:GetCallerIdentity",)  # which account the default credentials belong to
DISCOVERY = (  # `accounts: {organization: true}`: ListAccounts, or the OUs under include_ous
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
)


def policy(cfg: Config, read_only: bool = False) -> dict[str, Any]:
    read_set = {p for kind in cfg.kinds for p in KINDS[kind].read_permissions} | set(ALWAYS)
    if cfg.pricing.source == "api":
        read_set.add("pricing:GetProducts")  # live prices from the AWS Price List API
    if cfg.cost_explorer.enabled and cfg.budgets:
        read_set.add("ce:GetCostAndUsage")  # budgets' actual cost of closed days
    used_set = {(r.kind, r.action) for r in cfg.rules if r.mutates and r.kind in cfg.kinds}
    for b in cfg.budgets:  # a budget's act_at action, on each kind in its scope that offers it
        kinds = [k for k in b.scope.kinds or cfg.kinds if k in cfg.kinds]
        used_set |= {(k, b.action) for k in kinds if b.action in KINDS[k].actions}
    used = sorted(used_set)
    if not read_only:
        # reads an action needs besides the scan's (e.g. the config saved before a delete)
        read_set |= {p for k, a in used for p in KINDS[k].actions[a].extra_permissions}
    read = sorted(read_set)
    statements: list[dict[str, Any]] = [
        {"Sid": "ScanSageMaker", "Effect": "Allow", "Action": read, "Resource": "*"}
    ]
    if cfg.billing.enabled:
        # The billing export (CUR 2.0 / FOCUS Parquet): list the prefix, read what is under it.
        bucket, prefix = cfg.billing.bucket, cfg.billing.prefix
        statements.append(
            {
                "Sid": "ListBillingExport",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            }
        )
        statements.append(
            {
                "Sid": "ReadBillingExport",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
            }
        )
    roles = sorted(a.role_arn for a in cfg.accounts if a.role_arn)
    if cfg.organization is not None:
        # Listing the members (guard/organizations.py): from the management account or a
        # delegated administrator; then the same role name in every member account.
        statements.append(
            {
                "Sid": "DiscoverMemberAccounts",
                "Effect": "Allow",
                "Action": list(DISCOVERY),
                "Resource": "*",
            }
        )
        roles.append(f"arn:aws:iam::*:role/{cfg.organization.role_name}")
    if roles:
        statements.append(
            {
                "Sid": "AssumeMemberRoles",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": roles,
            }
        )
    if not read_only:
        for kind_name, action_name in used:
            kind, action = KINDS[kind_name], KINDS[kind_name].actions[action_name]
            statements.append(
                {
                    "Sid": _sid(kind_name, action_name),
                    "Effect": "Allow",
                    "Action": action.permission,
                    "Resource": kind.arn_pattern,
                    # The guard never acts on exempt resources; IAM makes sure of it too.
                    "Condition": {
                        "StringNotEqualsIgnoreCase": {f"aws:ResourceTag/{cfg.tags.exempt}": "true"}
                    },
                }
            )
    return {"Version": "2012-10-17", "Statement": statements}


def _sid(kind: str, action: str) -> str:
    return "".join(part.capitalize() for part in f"{action}-{kind}".replace("_", "-").split("-"))
