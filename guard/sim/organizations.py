"""Seeding an AWS Organization: nested OUs, member accounts, member roles that refuse.

moto serves Organizations (ListAccounts, ListAccountsForParent,
ListOrganizationalUnitsForParent, paged) and lets any role be assumed. Real AWS refuses an
AssumeRole into an account where the role is missing or does not trust the caller; the
simulator does the same for the roles named in `refuse_role`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from moto.backends import get_backend
from moto.core.exceptions import AccessDeniedError
from moto.sts.models import STSBackend, sts_backends

from guard.sim.base import SimBase
from guard.sim.moto_ext import naive_utc

_REFUSED = "cost_guard_refused_roles"  # on the target account's STS backend: reset clears it


class OrganizationSeeding(SimBase):
    """An organisation whose management account is the simulator's own account."""

    def create_organization(self) -> str:
        """Create the organisation (feature set ALL); return its root id (r-...)."""
        _refusing_assume_role()
        org = self.client("organizations")
        org.create_organization(FeatureSet="ALL")
        return str(org.list_roots()["Roots"][0]["Id"])

    def add_ou(self, name: str, parent: str) -> str:
        """An organisational unit under `parent` (the root or another OU); return its id."""
        unit = self.client("organizations").create_organizational_unit(ParentId=parent, Name=name)
        return str(unit["OrganizationalUnit"]["Id"])

    def add_account(self, name: str, parent: str | None = None, role_name: str = "") -> str:
        """A member account created through the API (with `role_name` as its access role,
        or moto's default), moved under `parent`; return its id."""
        _refusing_assume_role()
        org = self.client("organizations")
        extra = {"RoleName": role_name} if role_name else {}
        status = org.create_account(AccountName=name, Email=f"{name}@example.com", **extra)[
            "CreateAccountStatus"
        ]
        account_id = str(status["AccountId"])
        backend = self._organizations()
        member = backend.get_account_by_id(account_id)
        # ListAccounts pages by JoinedTimestamp: accounts created at the same (simulated)
        # instant would share it, so each joins one second after the previous.
        member.create_time = naive_utc(self.clock.now()) + timedelta(seconds=len(backend.accounts))
        if parent is not None:
            org.move_account(
                AccountId=account_id, SourceParentId=member.parent_id, DestinationParentId=parent
            )
        return account_id

    def suspend_account(self, account_id: str) -> None:
        """The account was closed: still listed, with Status SUSPENDED."""
        self.client("organizations").close_account(AccountId=account_id)

    def refuse_role(self, account_id: str, role_name: str) -> None:
        """AssumeRole of `role_name` in `account_id` is denied from now on (the StackSet never
        reached the account, or its trust policy names someone else)."""
        _refusing_assume_role()
        backend = sts_backends[account_id]["aws"]
        refused: set[str] = getattr(backend, _REFUSED, set())
        refused.add(role_name)
        setattr(backend, _REFUSED, refused)

    def _organizations(self) -> Any:
        return get_backend("organizations")[self.account_id]["aws"]


_original_assume_role = STSBackend.assume_role


def _refusing_assume_role() -> None:
    """Install (once) the check of `refuse_role` in moto's AssumeRole."""
    if getattr(STSBackend.assume_role, "cost_guard", False):
        return

    def assume_role(self: STSBackend, *args: Any, **kwargs: Any) -> Any:
        role_arn = str(kwargs.get("role_arn", ""))
        parts = role_arn.split(":")  # arn:aws:iam::<account>:role/<name>
        if len(parts) == 6 and parts[5].startswith("role/"):
            account, name = parts[4], parts[5].removeprefix("role/").rsplit("/", 1)[-1]
            if name in getattr(sts_backends[account]["aws"], _REFUSED, ()):
                raise AccessDeniedError(  # 403, as AWS answers it
                    f"arn:aws:iam::{self.account_id}:user/guard",
                    f"sts:AssumeRole on resource: {role_arn}",
                )
        return _original_assume_role(self, *args, **kwargs)

    assume_role.cost_guard = True  # type: ignore[attr-defined]
    STSBackend.assume_role = assume_role  # type: ignore[method-assign]
