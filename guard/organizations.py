"""The member accounts of an AWS Organization, found at every cycle.

With `accounts: {organization: true, role_name: ..., include_ous: [...], exclude_accounts:
[...]}` the guard lists the organisation's accounts (ListAccounts, or ListAccountsForParent
down every OU under `include_ous`) each cycle and reaches each by assuming `role_name` in it,
so an account created today is scanned at the next cycle, without a restart. An account
whose role cannot be assumed is scanned like any other and fails the same way: it is a blind
spot of the cycle ("cannot reach"), never silently dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from guard.aws import AWS_ERRORS, Aws, error_text, pages
from guard.config import Account, Config, Organization

log = logging.getLogger(__name__)

# Listed members whose Status is anything else (SUSPENDED, PENDING_CLOSURE) cannot be
# assumed into and bill nothing new.
ACTIVE = "ACTIVE"


@dataclass
class Discovery:
    accounts: tuple[Account, ...]
    errors: list[str] = field(default_factory=list)  # blind spots: the listing failed


def discover(org: Organization, aws: Aws, region: str) -> tuple[Account, ...]:
    """The organisation's active member accounts in scope, sorted by id. The account the
    guard's own credentials belong to is reached with them (no role); every other through
    `role_name`. Raises the AWS error when the listing fails."""
    client = aws.client(None, region, "organizations")
    if org.include_ous:
        listed = _under(client, org.include_ous)
    else:
        listed = list(pages(client, "list_accounts", "Accounts"))
    own = aws.account_id(None, region)
    partition = _partition(region)
    found: dict[str, Account] = {}
    for item in listed:
        account_id = str(item["Id"])
        if account_id in org.exclude_accounts or account_id in found:
            continue
        if item.get("Status", ACTIVE) != ACTIVE:
            continue
        role_arn = None
        if account_id != own:
            role_arn = f"arn:{partition}:iam::{account_id}:role/{org.role_name}"
        found[account_id] = Account(
            id=account_id,
            name=item.get("Name") or None,
            role_arn=role_arn,
            external_id=org.external_id if role_arn else None,
        )
    return tuple(found[k] for k in sorted(found))


def _under(client: Any, roots: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every account under the given OUs (or root), at any depth: breadth first, paged."""
    listed: list[dict[str, Any]] = []
    queue, visited = deque(roots), set()
    while queue:
        parent = queue.popleft()
        if parent in visited:
            continue
        visited.add(parent)
        listed.extend(pages(client, "list_accounts_for_parent", "Accounts", ParentId=parent))
        children = pages(
            client, "list_organizational_units_for_parent", "OrganizationalUnits", ParentId=parent
        )
        queue.extend(str(unit["Id"]) for unit in children)
    return listed


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class Members:
    """The member accounts of the last successful listing, kept across cycles so a failed
    listing (throttled, denied for a moment) scans the accounts known so far instead of none.
    """

    def __init__(self) -> None:
        self._known: tuple[Account, ...] | None = None
        self._lock = threading.Lock()

    def refresh(self, cfg: Config, aws: Aws) -> Discovery:
        """This cycle's accounts: the configured list, or the organisation's members now."""
        org = cfg.organization
        if org is None:
            return Discovery(cfg.accounts)
        region = cfg.regions[0]
        try:
            accounts = discover(org, aws, region)
        except AWS_ERRORS as exc:
            with self._lock:
                known = self._known
            fallback = (
                f"scanning the {len(known)} account(s) found before"
                if known is not None
                else "no account is scanned"
            )
            why = error_text(exc)
            log.warning("organization: cannot list the member accounts: %s; %s", why, fallback)
            text = f"organization {region}: cannot reach AWS Organizations: {why} ({fallback})"
            return Discovery(known or (), [text])
        with self._lock:
            before = {a.id for a in self._known or ()}
            self._known = accounts
        added = [a.id for a in accounts if a.id not in before]
        if added and before:
            log.info("organization: %d new member account(s): %s", len(added), ", ".join(added))
        return Discovery(accounts)
