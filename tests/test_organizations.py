"""AWS Organizations discovery through the simulator: nested OUs, excluded and suspended
accounts, a member role that cannot be assumed (a blind spot), an account created between
two cycles, a failing listing; and the IAM the discovery needs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from guard.aws import Aws
from guard.cli import _blind_spots
from guard.config import Config, ConfigError, load_config
from guard.cycle import run_cycle
from guard.iam import policy
from guard.model import ManualClock
from guard.organizations import discover
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

# The simulator's fault table names Organizations by its X-Amz-Target prefix.
LIST_ACCOUNTS = "awsorganizationsv20161128:ListAccounts"
OWN = "123456789012"  # the simulator's (management) account
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "0s"}


def _guard_roles(sim: Simulator, account: str) -> list[str]:
    """The roles the guard assumed in `account` (not the simulator's seeding role)."""
    return [arn for arn, _ in sim.assumed_roles(account) if not arn.endswith("/simulator-seed")]


def test_nested_ous_excluded_and_unassumable_accounts(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    root = sim.create_organization()
    prod = sim.add_ou("prod", root)
    ml = sim.add_ou("ml", prod)  # nested two levels under the root
    deep = sim.add_ou("ml-gpu", ml)
    sandbox = sim.add_ou("sandbox", root)
    research = sim.add_account("research", deep)
    serving = sim.add_account("serving", prod)
    legacy = sim.add_account("legacy", ml)  # excluded by id
    broken = sim.add_account("broken", ml)  # the member role was never deployed there
    outside = sim.add_account("outside", sandbox)  # not under include_ous
    sim.refuse_role(broken, "cost-guard-member")
    since = clock.now() - timedelta(hours=5)
    for account in (research, serving, legacy, outside):
        sim.add_notebook(f"nb-{account}", in_service_since=since, account=account)
    sim.add_notebook("own-nb", in_service_since=since)  # the management account: not in prod

    guard = guard_for(
        clock,
        db_url,
        [IDLE_STOP],
        mode="enforce",
        accounts={"organization": True, "include_ous": [prod], "exclude_accounts": [legacy]},
    )
    report = run_cycle(guard)

    assert {r.account for r in guard.store.resources()} == {research, serving}
    assert {a.id for a in guard.cfg.accounts} == {research, serving, broken}
    # Reached through the role named in the config, in each member account.
    assert sim.assumed_roles(research)[-1][0] == f"arn:aws:iam::{research}:role/cost-guard-member"
    assert not _guard_roles(sim, legacy) and not _guard_roles(sim, outside)
    # The account whose role cannot be assumed is a blind spot of the cycle, not a silence.
    blind = _blind_spots(report["errors"])
    assert blind and all(broken in e or "broken" in e for e in blind), report["errors"]
    assert any("AssumeRole" in e and "AccessDenied" in e for e in blind), blind
    # Actions reach a discovered account through its role too (enforce, grace 0).
    acted = {(a["name"], a["outcome"]) for a in report["actions"]}
    assert acted == {(f"nb-{research}", "done"), (f"nb-{serving}", "done")}, acted
    assert sim.notebook_status(f"nb-{research}", account=research) == "Stopping"
    assert sim.notebook_status(f"nb-{outside}", account=outside) == "InService"

    # An account created between two cycles is scanned in the second, no restart.
    newcomer = sim.add_account("newcomer", deep)
    sim.add_notebook("nb-new", in_service_since=since, account=newcomer)
    clock.advance(timedelta(minutes=5))
    report = run_cycle(guard)
    assert newcomer in {r.account for r in guard.store.resources()}
    assert ("nb-new", "done") in {(a["name"], a["outcome"]) for a in report["actions"]}


def test_all_accounts_the_own_one_without_a_role_suspended_ones_skipped(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    root = sim.create_organization()
    member = sim.add_account("member", root)
    closed = sim.add_account("closed", root)
    sim.suspend_account(closed)
    sim.add_notebook("own-nb")
    sim.add_notebook("member-nb", account=member)
    guard = guard_for(clock, db_url, [], accounts={"organization": True, "role_name": "scan"})
    report = run_cycle(guard)
    assert report["errors"] == []
    assert {r.account for r in guard.store.resources()} == {OWN, member}
    own = next(a for a in guard.cfg.accounts if a.id == OWN)
    assert own.role_arn is None and own.name == "master"  # its own credentials
    assert not _guard_roles(sim, closed)
    assert sim.assumed_roles(member)[-1][0] == f"arn:aws:iam::{member}:role/scan"


def test_listing_is_paged_through_every_ou_level(sim: Simulator, clock: ManualClock) -> None:
    root = sim.create_organization()
    team = sim.add_ou("team", root)
    child = sim.add_ou("child", team)
    many = {sim.add_account(f"acct-{i:02d}", team) for i in range(23)}  # > 20 a page
    many |= {sim.add_account(f"deep-{i:02d}", child) for i in range(3)}
    cfg = Config.model_validate({"accounts": {"organization": True, "include_ous": [team]}})
    assert cfg.organization is not None
    aws = Aws()
    found = discover(cfg.organization, aws, "us-east-1")
    assert {a.id for a in found} == many
    calls = aws.counter.snapshot()
    assert calls["organizations:ListAccountsForParent"] == 3  # team: 2 pages, child: 1
    every = discover(cfg.organization.model_copy(update={"include_ous": ()}), aws, "us-east-1")
    assert {a.id for a in every} == many | {OWN}


def test_a_failed_listing_scans_the_accounts_known_before(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    root = sim.create_organization()
    member = sim.add_account("member", root)
    sim.add_notebook("member-nb", account=member)
    org = {"organization": True}

    sim.fail(LIST_ACCOUNTS)
    fresh = guard_for(clock, db_url, [], accounts=org)
    report = run_cycle(fresh)  # never listed: nothing to scan, and said so
    assert fresh.store.resources() == []
    [error] = report["errors"]
    assert "cannot reach AWS Organizations" in error and "no account is scanned" in error
    assert _blind_spots(report["errors"]) == [error]

    sim.heal()
    clock.advance(timedelta(minutes=5))
    assert run_cycle(fresh)["errors"] == []
    sim.fail(LIST_ACCOUNTS)
    clock.advance(timedelta(minutes=5))
    report = run_cycle(fresh)
    assert any("scanning the 2 account(s) found before" in e for e in report["errors"])
    assert report["resources"] == 1  # the member's notebook, seen this cycle


def test_config_forms_and_errors(tmp_path: Any) -> None:
    path = tmp_path / "cost-guard.yaml"
    path.write_text(
        "accounts:\n  organization: true\n  role_name: Guard_scan+=,.@-1\n"
        "  include_ous: [ou-ab12-cdefgh34, r-ab12]\n  exclude_accounts: ['111111111111']\n"
    )
    cfg = load_config(path)
    assert cfg.accounts == () and cfg.organization is not None
    assert cfg.organization.include_ous == ("ou-ab12-cdefgh34", "r-ab12")
    assert cfg.with_overrides(mode="enforce").organization == cfg.organization
    # the explicit list keeps working
    path.write_text("accounts:\n  - {id: '111111111111', role_arn: arn:aws:iam::1:role/x}\n")
    assert load_config(path).organization is None
    for bad, words in (
        ("  organization: false\n", "organization"),
        ("  organization: true\n  include_ous: [prod]\n", "include_ous"),
        ("  organization: true\n  exclude_accounts: ['12']\n", "exclude_accounts"),
        # digits and letters beyond ASCII: a Unicode \d / \w pattern took both
        (f"  organization: true\n  exclude_accounts: ['{chr(0x661) * 12}']\n", "exclude_accounts"),
        ("  organization: true\n  role_name: rôle-scan\n", "role_name"),
        ("  organization: true\n  role: x\n", "unknown key"),
    ):
        path.write_text("accounts:\n" + bad)
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert words in str(err.value), str(err.value)


def test_generated_iam_lets_the_guard_discover_and_assume_the_role() -> None:
    cfg = Config.model_validate({"accounts": {"organization": True, "role_name": "scan"}})
    statements = {s["Sid"]: s for s in policy(cfg)["Statement"]}
    assert set(statements["DiscoverMemberAccounts"]["Action"]) == {
        "organizations:ListAccounts",
        "organizations:ListAccountsForParent",
        "organizations:ListOrganizationalUnitsForParent",
    }
    assert statements["AssumeMemberRoles"]["Resource"] == ["arn:aws:iam::*:role/scan"]
    # An explicit list needs neither.
    explicit = Config.model_validate({"accounts": [{"id": "111111111111"}]})
    assert "DiscoverMemberAccounts" not in {s["Sid"] for s in policy(explicit)["Statement"]}
