"""`cost-guard`: parses arguments, wires the pieces, prints. No logic a test would need."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from guard import __version__
from guard.config import Config, ConfigError, config_path, load_config, parse_duration
from guard.kinds import KINDS
from guard.lifecycle import LIFECYCLE_SCRIPTS

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err = Console(stderr=True)


def _setup_logging(verbose: bool, fmt: str | None = None) -> None:
    """Text or JSON lines on stderr. `main` runs first, before any config is read, so it takes
    the format from COST_GUARD_LOG_FORMAT; `run`/`serve` re-run this with the config's
    `log_format` once loaded. Secret-bearing loggers stay at WARNING even with --verbose."""
    from guard import logs

    logs.setup(verbose, "json" if (fmt or logs.env_format()) == "json" else "text")


def with_config(func: F) -> F:
    """Adds `--config PATH` and passes the validated, frozen `Config` as `cfg`."""

    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML config (default: $COST_GUARD_CONFIG, then ./cost-guard.yaml).",
    )
    @wraps(func)
    def wrapper(*args: Any, config_file: str | None, **kwargs: Any) -> Any:
        try:
            cfg = load_config(config_path(config_file))
        except ConfigError as exc:
            click.echo(f"invalid configuration:\n{exc}", err=True)  # unwrapped: paths are long
            sys.exit(2)
        return func(*args, cfg=cfg, **kwargs)

    return wrapper  # type: ignore[return-value]


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group()
@click.version_option(__version__, prog_name="cost-guard")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Stops Amazon SageMaker from quietly burning money."""
    ctx.obj = {"verbose": verbose}
    _setup_logging(verbose)


@main.command()
@click.option(
    "--speed", type=float, default=1.0, help="Pause multiplier between demo steps (0 = no pauses)."
)
def demo(speed: float) -> None:
    """A simulated SageMaker account walked through an evening, in the terminal."""
    from guard.demo import run_demo

    run_demo(console, pause=speed)


def _relog(cfg: Config) -> None:
    """Switch to the config's `log_format` (the environment's was applied before it loaded)."""
    ctx = click.get_current_context(silent=True)
    verbose = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("verbose"))
    _setup_logging(verbose, cfg.log_format)


@main.command()
@click.option(
    "--serve", "with_server", is_flag=True,
    help="Also serve /healthz, /metrics (and /slack/events) on serve.host:serve.port.",
)  # fmt: skip
@with_config
def run(cfg: Config, with_server: bool) -> None:
    """The daemon: a cycle every scan_interval until SIGTERM (finishes the running cycle)."""
    from guard.daemon import Daemon, run_forever
    from guard.wiring import build_guard

    _relog(cfg)
    guard = build_guard(cfg)
    daemon = Daemon(guard)
    server = None
    if with_server:
        from guard.server import Server

        server = Server(guard, alive=daemon.liveness).start()
    try:
        run_forever(guard, daemon)
    finally:
        if server is not None:
            server.stop()


@main.command()
@click.option("--host", default=None, help="Address to bind (default: serve.host, 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port (default: serve.port, 8080).")
@with_config
def serve(cfg: Config, host: str | None, port: int | None) -> None:
    """HTTP: /healthz, /metrics (Prometheus) and /slack/events, until SIGTERM."""
    from guard.server import Server, serve_until_signal
    from guard.wiring import build_guard

    _relog(cfg)
    # Reads the database only: no reconcile (which needs AWS); the daemon does that.
    guard = build_guard(cfg, reconcile=False)
    serve_until_signal(Server(guard, host, port))


@main.command()
@click.option("--enforce", is_flag=True, help="Really stop resources (default: the config's mode).")
@click.option("--json", "as_json", is_flag=True, help="Print the cycle report as JSON.")
@with_config
def once(cfg: Config, enforce: bool, as_json: bool) -> None:
    """Run one cycle, then exit: 0 when it saw everything, 1 when something could not be
    scanned, checked or acted on (each such error on stderr, one line each)."""
    from guard.cycle import run_cycle
    from guard.reports import cycle_summary
    from guard.wiring import build_guard

    if enforce:
        cfg = cfg.with_overrides(mode="enforce")
    report = run_cycle(build_guard(cfg))
    if as_json:
        _dump(report)
    else:
        console.print(cycle_summary(report), highlight=False, markup=False)
        for action in report.get("actions", []):
            console.print(
                f"  {action['outcome']}: {action['action']} {action['kind']}/{action['name']}"
                f" — {action['detail']}",
                highlight=False,
                markup=False,
            )
    errors = [str(e) for e in report.get("errors", [])]
    for error in errors:
        click.echo(f"error: {error}", err=True)  # plain: one line each, never wrapped
    if errors:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per resource).")
@click.option(
    "--scan", is_flag=True, help="Scan AWS now instead of showing the last cycle's snapshot."
)
@click.option("--all", "show_all", is_flag=True, help="Include stopped resources.")
@with_config
def inventory(cfg: Config, as_json: bool, scan: bool, show_all: bool) -> None:
    """What is running now, what it costs, and what the rules think of it."""
    from guard.cycle import LOCK_WAIT_SECONDS
    from guard.inventory import ScanContext
    from guard.inventory import scan as scan_aws
    from guard.pricing import PriceBook, prices_report
    from guard.reports import finding_text, inventory_for, inventory_table, prices_line
    from guard.wiring import build_guard

    guard = build_guard(cfg, reconcile=scan)
    now = guard.clock.now()
    prices = guard.prices or PriceBook.load(guard.store, cfg)
    scanned: list[dict[str, Any]] = []
    if scan:
        # A snapshot accrues spend: under the cycle lock, or a running daemon's cycle and
        # this scan would both count the same hours.
        with guard.store.cycle_lock(timeout=LOCK_WAIT_SECONDS) as held:
            if not held:
                raise click.ClickException(
                    "not scanned: another cost-guard process is running a cycle on this "
                    "database (it holds the cycle lock). Try again in a moment, or drop --scan "
                    "to see the last cycle's snapshot."
                )
            result = scan_aws(ScanContext(cfg, guard.aws, guard.store, prices, now))
            scanned = [asdict(f) for f in result.findings]
            guard.store.save_snapshot(result.resources, result.scanned, now, cfg.accrual_policy)
        for error in result.errors:
            err.print(f"[red]scan error[/red]: {error}", highlight=False)
    resources = [r for r in guard.store.resources() if show_all or r.running]
    items = inventory_for(guard.store, cfg, now, show_all)
    if as_json:
        _dump(items)
        return
    if not items:
        console.print("Nothing running (run `cost-guard once` or `inventory --scan` to scan).")
    else:
        console.print(inventory_table(items, cfg, now))
    # plain echo: one line, never wrapped or read as markup
    click.echo(prices_line(prices_report(prices, resources)))
    for finding in scanned if scan else _last_findings(guard.store):
        console.print(f"[yellow]finding[/yellow]: {escape(finding_text(finding))}", highlight=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of findings).")
@with_config
def findings(cfg: Config, as_json: bool) -> None:
    """Settings that let SageMaker bill idle time (e.g. Studio domains without idle shutdown),
    as found by the last cycle."""
    from guard.reports import finding_text
    from guard.wiring import build_guard

    found = _last_findings(build_guard(cfg, reconcile=False).store)
    if as_json:
        _dump(found)
    elif not found:
        console.print("No findings in the last cycle.")
    for finding in [] if as_json else found:
        console.print(f"- {finding_text(finding)}", highlight=False, markup=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object).")
@with_config
def digest(cfg: Config, as_json: bool) -> None:
    """The money digest now: spend by kind, owner and team, top idle spenders, and what
    cost-guard saved (the same message Slack gets on the `slack.digest` cron)."""
    from guard import digest as money_digest
    from guard.wiring import build_guard

    guard = build_guard(cfg, reconcile=False)
    data = money_digest.build(cfg, guard.store, guard.clock.now())
    if as_json:
        _dump(data)
        return
    title, lines = money_digest.text(data)
    click.echo("\n".join([title.removeprefix(":moneybag: "), *lines]))


def _last_findings(store: Any) -> list[dict[str, Any]]:
    last = store.last_cycle() or {}
    return list(last.get("findings", []))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per budget).")
@with_config
def budget(cfg: Config, as_json: bool) -> None:
    """Each budget: spend so far this period, forecast, limit, thresholds crossed."""
    from guard.budgets import budget_notes, budget_table, statuses
    from guard.wiring import build_guard

    guard = build_guard(cfg, reconcile=False)
    found = statuses(cfg, guard.store, guard.clock.now())
    if as_json:
        _dump([st.to_json() for st in found])
    elif not found:
        console.print("No budgets configured (see `budgets:` in the README).")
    else:
        console.print(budget_table(found, cfg))
        for note in budget_notes(found):
            console.print(note, highlight=False)


@main.command()
@click.option("--since", default="7d", show_default=True, help="How far back, e.g. 24h, 7d.")
@click.option("--json", "as_json", is_flag=True)
@with_config
def audit(cfg: Config, since: str, as_json: bool) -> None:
    """Every warning and action, with its mode, outcome and reason."""
    from guard.reports import audit_entries, audit_table
    from guard.wiring import build_guard

    guard = build_guard(cfg, reconcile=False)
    entries = audit_entries(guard.store.audit(guard.clock.now() - parse_duration(since)))
    if as_json:
        _dump(entries)
    else:
        console.print(audit_table(entries, cfg))


def _resolve(cfg: Config, target: str) -> tuple[Any, str]:
    from guard.wiring import build_guard

    kind, _, name = target.partition("/")
    if kind not in KINDS or not name:
        raise click.BadParameter(
            f"use KIND/NAME with KIND one of {', '.join(KINDS)}", param_hint="TARGET"
        )
    guard = build_guard(cfg, reconcile=False)
    res = guard.store.resource_by_name(kind, name)
    if res is None:
        raise click.ClickException(
            f"{target} is not known yet: "
            "run `cost-guard once` or `cost-guard inventory --scan` first"
        )
    return guard, res.arn


@main.command()
@click.argument("target", metavar="KIND/NAME")
@click.option("--for", "duration", default="4h", show_default=True, help="How long, e.g. 4h, 2d.")
@click.option("--reason", default="", help="Shown in the audit trail and inventory.")
@with_config
def snooze(cfg: Config, target: str, duration: str, reason: str) -> None:
    """No warning and no action for a resource until the snooze ends."""
    import getpass

    from guard import interactions

    guard, arn = _resolve(cfg, target)
    res = guard.store.resource(arn)
    assert res is not None
    answer = interactions.snooze(
        guard, res, parse_duration(duration), by=f"{getpass.getuser()} (cli)", reason=reason
    )
    interactions.deliver_now(guard)  # the Slack message says so now, or after the next cycle
    console.print(f"{target}: {answer.text}", highlight=False, markup=False)


@main.command()
@click.argument("target", metavar="KIND/NAME")
@with_config
def unsnooze(cfg: Config, target: str) -> None:
    """End a stored snooze now."""
    guard, arn = _resolve(cfg, target)
    removed = guard.store.unsnooze(arn)
    console.print(f"{target}: {'snooze removed' if removed else 'was not snoozed'}", markup=False)


@main.group()
def restore() -> None:
    """Bring back what cost-guard deleted, from the record it saved first."""


@restore.command("endpoint")
@click.argument("name")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for InService.")
@click.option("--timeout", default="30m", show_default=True, help="How long to wait, e.g. 45m.")
@with_config
def restore_endpoint(cfg: Config, name: str, wait: bool, timeout: str) -> None:
    """Recreate a deleted endpoint with its endpoint config and tags."""
    import time

    from guard.endpoint_actions import RestoreError
    from guard.endpoint_actions import restore_endpoint as restore_it
    from guard.wiring import build_guard

    guard = build_guard(cfg, reconcile=False)

    def sagemaker(account_id: str, region: str) -> Any:
        # None = the caller's own account (the default credential chain)
        account = next((a for a in cfg.accounts if a.id == account_id), None)
        return guard.aws.client(account, region, "sagemaker")

    try:
        done = restore_it(
            guard.store, sagemaker, name, clock=guard.clock, sleep=time.sleep,
            wait=wait, timeout=parse_duration(timeout),
        )  # fmt: skip
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from exc
    # Plain echo, not rich: these lines are read by scripts too and must not be wrapped.
    where = f"{done.account} {done.region}"
    if not done.created:
        click.echo(f"{done.message} in {where}: nothing recreated.")
        return
    click.echo(f"recreated endpoint {name} in {where} from endpoint config {done.config_name}")
    if done.in_service_at is not None:
        when = done.in_service_at.astimezone(cfg.tz)
        click.echo(f"{done.message} at {when:%Y-%m-%d %H:%M %Z}")
    elif wait:
        raise click.ClickException(done.message)
    else:
        click.echo(f"{done.message}; `aws sagemaker describe-endpoint` shows when it is ready")


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@with_config
def db_upgrade(cfg: Config) -> None:
    """Apply the Alembic migrations up to head (the daemon also does this at start)."""
    from guard.config import mask_url
    from guard.store import upgrade

    upgrade(cfg.database_url)
    console.print(
        f"database at {mask_url(cfg.database_url)} is at the latest schema", highlight=False
    )


@main.group()
def pricing() -> None:
    """Prices from the AWS Price List API, cached in the database."""


@pricing.command("refresh")
@with_config
def pricing_refresh(cfg: Config) -> None:
    """Fetch prices from the AWS Price List API into the database now, whatever their age."""
    from guard.pricing import refresh_prices
    from guard.wiring import build_guard

    if cfg.pricing.source != "api":
        raise click.UsageError(
            "pricing.source is bundled: the Price List API is not used (set pricing.source: api)"
        )
    guard = build_guard(cfg, reconcile=False)
    done = refresh_prices(cfg, guard.aws, guard.store, guard.clock.now())
    if not done.ok:
        raise click.ClickException(
            f"Price List API refresh failed: {done.error}. The cached prices are unchanged."
        )
    when = f"{done.at.astimezone(cfg.tz):%Y-%m-%d %H:%M %Z}"
    click.echo(f"stored {done.prices} prices from the AWS Price List API, fetched {when}")
    for region, components in done.by_region.items():
        counts = ", ".join(f"{component} {n}" for component, n in components.items())
        click.echo(f"  {region}: {counts}")


@main.command("iam-policy")
@click.option("--read-only", is_flag=True, help="Only what a dry-run deployment needs.")
@with_config
def iam_policy(cfg: Config, read_only: bool) -> None:
    """Print the least-privilege IAM policy (JSON) for the enabled kinds and rules."""
    from guard.iam import policy

    _dump(policy(cfg, read_only=read_only))


@main.command("lifecycle-config")
@click.argument("target", type=click.Choice(sorted(LIFECYCLE_SCRIPTS)))
def lifecycle_config(target: str) -> None:
    """Print the lifecycle script that installs the activity heartbeat on TARGET."""
    click.echo(LIFECYCLE_SCRIPTS[target](), nl=False)


@main.command("check-config")
@with_config
def check_config(cfg: Config) -> None:
    """Validate the config and print the effective values (secrets masked)."""
    import yaml

    click.echo(yaml.safe_dump(cfg.effective(), sort_keys=False))


if __name__ == "__main__":
    main()
