"""`cost-guard`: parses arguments, wires the pieces, prints. No logic a test would need.

Every expected failure (a bad argument or config, a database that cannot be opened, AWS or
Slack unreachable or refusing the credentials) ends in one or two sentences and an exit code
from `EXIT_CODES`; the traceback only with `--verbose`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from guard import __version__
from guard.config import (
    Config,
    ConfigError,
    config_path,
    format_duration,
    load_config,
    parse_duration,
)
from guard.kinds import KINDS, RestoreSpec, load
from guard.lifecycle import LIFECYCLE_SCRIPTS

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
err = Console(stderr=True)

# The exit codes, as documented in the README's "Commands".
EXIT_FAILED = 1  # the command ran but something failed (a cycle error, a restore not ready)
EXIT_USAGE = 2  # a bad argument or configuration
EXIT_DATABASE = 3  # the database cannot be opened, created or written
EXIT_AWS = 4  # AWS unreachable, or refusing the credentials
EXIT_SLACK = 5  # Slack unreachable, or refusing the token
EXIT_CODES = {
    0: "success",
    EXIT_FAILED: "ran, but something failed (each error on stderr)",
    EXIT_USAGE: "bad argument or configuration",
    EXIT_DATABASE: "database cannot be opened, created or written",
    EXIT_AWS: "AWS unreachable or refusing the credentials",
    EXIT_SLACK: "Slack unreachable or refusing the token",
}


class Failure(click.ClickException):
    """An expected failure: a sentence for the user and an exit code from `EXIT_CODES`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click exits with it


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A command-line duration (`90s`, `15m`, `2h`, `3d`), checked like the config's."""

    name = "duration"

    def __init__(
        self, minimum: timedelta = timedelta(seconds=1), longest: timedelta | None = None
    ) -> None:
        self.minimum = minimum
        self.longest = longest

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            delta = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if delta < self.minimum:
            least = format_duration(self.minimum)
            self.fail(f"{value!r} is too short: use at least {least}", param, ctx)
        return delta if self.longest is None else min(delta, self.longest)


# `--since` further back than this means "everything recorded" (and stays inside the
# calendar when subtracted from now: `--since 1000000d` is not an error).
EVERYTHING = timedelta(days=100 * 365)


def _root_obj() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    return root.obj  # type: ignore[no-any-return]


def database_failure(url: str, exc: BaseException) -> str:
    """What is wrong with the database at `url`, naming the file or server to fix."""
    import os
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from guard.config import mask_url
    from guard.store import normalize_url

    masked = mask_url(url)
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = (lines[0] if lines else type(cause).__name__).removeprefix("connection failed: ")
    try:
        parsed = make_url(normalize_url(url))
    except Exception:
        return f"database_url {masked} is not a database URL: {reason}."
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database)).absolute()
        if not path.parent.is_dir():
            return (
                f"cannot create the database file {path}: the folder {path.parent} does not "
                "exist. Create it, or point database_url at a folder that exists."
            )
        writable = os.access(path if path.exists() else path.parent, os.W_OK)
        if not writable:
            what = "file" if path.exists() else "folder"
            return (
                f"cannot write the database file {path}: permission denied on the {what}. "
                "Fix its permissions, or change database_url."
            )
        return f"cannot open the database file {path}: {reason}. Check database_url."
    return (
        f"cannot open the database at {masked}: {reason}. Check database_url (host, port, "
        "database, user, password) and that the server accepts connections."
    )


def aws_failure(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    from guard.aws import connection_failed, error_text

    text = error_text(exc).rstrip(".")
    if connection_failed(exc):
        hint = "Check the network, the regions and AWS_ENDPOINT_URL if set."
    elif isinstance(exc, ClientError):
        hint = "Check the AWS credentials (environment, profile or role) and their permissions."
    else:
        hint = "Check the AWS credentials (environment, profile or role)."
    return f"AWS failed: {text}. {hint}"


def expected_failure(exc: BaseException) -> Failure | None:
    """The sentence and exit code for an expected failure; None for a bug."""
    from slack_sdk.errors import SlackClientError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

    from guard.aws import AWS_ERRORS
    from guard.tables import MigrationFailed, MigrationKilled

    cfg = _root_obj().get("cfg")
    url = cfg.database_url if cfg is not None else ""
    if isinstance(exc, (OperationalError, DBAPIError, ArgumentError, NoSuchModuleError)):
        return Failure(database_failure(url, exc), EXIT_DATABASE)
    if isinstance(exc, MigrationKilled):
        return Failure(
            f"cannot migrate the database: {exc}. Each migration is applied whole or not at "
            "all: start again to finish it.",
            EXIT_DATABASE,
        )
    if isinstance(exc, MigrationFailed):
        return Failure(f"cannot migrate the database: {exc}. Check database_url.", EXIT_DATABASE)
    if isinstance(exc, AWS_ERRORS):
        return Failure(aws_failure(exc), EXIT_AWS)
    if isinstance(exc, SlackClientError):
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return Failure(
            f"Slack failed: {first}. Check SLACK_BOT_TOKEN and that slack.com is reachable.",
            EXIT_SLACK,
        )
    return None


class GuardGroup(click.Group):
    """The root command: turns expected failures into a sentence and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            failure = expected_failure(exc)
            if failure is None:
                raise  # a bug: the traceback is what whoever fixes it needs
            if (ctx.obj or {}).get("verbose"):
                traceback.print_exc()
            raise failure from exc


def _setup_logging(verbose: bool, fmt: str | None = None) -> None:
    """Text or JSON lines on stderr. `main` runs first, before any config is read, so it takes
    the format from COST_GUARD_LOG_FORMAT; `run`/`serve` re-run this with the config's
    `log_format` once loaded. Secret-bearing loggers stay at WARNING even with --verbose."""
    from guard import logs

    logs.setup(verbose, "json" if (fmt or logs.env_format()) == "json" else "text")


CONFIG_HELP = "YAML config (default: $COST_GUARD_CONFIG, then ./cost-guard.yaml)."


def with_config(func: F) -> F:
    """Adds `--config PATH` (also accepted before the command) and passes the validated,
    frozen `Config` as `cfg`."""

    @click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), default=None, help=CONFIG_HELP
    )
    @wraps(func)
    def wrapper(*args: Any, config_file: str | None, **kwargs: Any) -> Any:
        obj = _root_obj()
        try:
            cfg = load_config(config_path(config_file or obj.get("config")))
        except ConfigError as exc:
            click.echo(f"invalid configuration:\n{exc}", err=True)  # unwrapped: paths are long
            sys.exit(EXIT_USAGE)
        obj["cfg"] = cfg
        return func(*args, cfg=cfg, **kwargs)

    return wrapper  # type: ignore[return-value]


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(cls=GuardGroup, epilog="Exit codes: " + "; ".join(
    f"{code} {what}" for code, what in EXIT_CODES.items()
) + ".")  # fmt: skip
@click.version_option(__version__, prog_name="cost-guard")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, and tracebacks on errors.")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), default=None, help=CONFIG_HELP
)
@click.pass_context
def main(ctx: click.Context, verbose: bool, config_file: str | None) -> None:
    """Stops Amazon SageMaker from quietly burning money."""
    ctx.obj = {"verbose": verbose, "config": config_file}
    _setup_logging(verbose)


@main.command()
@click.option(
    "--speed", type=float, default=1.0, help="Pause multiplier between demo steps (0 = no pauses)."
)
@click.option(
    "--keep-db", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Leave the demo's SQLite database at this path (default: a temporary one, removed).",
)  # fmt: skip
@click.option(
    "--console", "web", is_flag=True,
    help="Then serve the web console on 127.0.0.1 (the simulated account kept up) until Ctrl-C.",
)  # fmt: skip
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
    help="With --console: the port (0: any free one).",
)  # fmt: skip
def demo(speed: float, keep_db: Path | None, web: bool, port: int) -> None:
    """A simulated SageMaker account walked through an evening, in the terminal
    (and with --console, in the web console)."""
    import importlib.util

    if importlib.util.find_spec("moto") is None:
        raise Failure(
            "the demo needs the simulator (moto), which is not installed: "
            "pip install 'sagemaker-cost-guard[demo]' (in a checkout: pip install '.[demo]', "
            "or `make demo`).",
            EXIT_USAGE,
        )
    from guard.demo import run_demo

    if keep_db is not None:
        keep_db = keep_db.absolute()
        if not keep_db.parent.is_dir():
            raise Failure(f"--keep-db: the folder {keep_db.parent} does not exist.", EXIT_USAGE)
        keep_db.unlink(missing_ok=True)  # a fresh evening, not one on top of the last
    run_demo(console, pause=speed, keep_db=keep_db, web=port if web else None)


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
    guard = build_guard(cfg)
    with _scan_progress():
        report = run_cycle(guard)
    if as_json:
        _dump(report)
    else:
        click.echo(cycle_summary(report))  # plain: the prices line is read whole
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
@click.option("--wide", is_flag=True, help="Every column and every name in full, however wide.")
@click.option("--summary", is_flag=True, help="Only the totals per kind (and account, region).")
@with_config
def inventory(
    cfg: Config, as_json: bool, scan: bool, show_all: bool, wide: bool, summary: bool
) -> None:
    """What is running now, what it costs, and what the rules think of it; then what the last
    scan could not see. With many resources, a summary per kind and account follows."""
    from guard.cycle import LOCK_WAIT_SECONDS
    from guard.digest import saved_lines, saved_this_month
    from guard.inventory import ScanContext
    from guard.inventory import scan as scan_aws
    from guard.pricing import PriceBook, prices_report
    from guard.reports import (
        SUMMARY_FROM,
        billing_differences,
        finding_text,
        inventory_for,
        inventory_summary,
        inventory_table,
        prices_line,
    )
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
            with _scan_progress():
                result = scan_aws(ScanContext(cfg, guard.aws, guard.store, prices, now))
            scanned = [asdict(f) for f in result.findings]
            guard.store.save_snapshot(result.resources, result.scanned, now, cfg.accrual_policy)
        for error in result.errors:
            err.print(f"[red]scan error[/red]: {error}", highlight=False)
    resources = [r for r in guard.store.resources() if show_all or r.running]
    items = inventory_for(guard.store, cfg, now, show_all)
    from guard.profiles import MAX_LISTED, profiles_of  # weekly usage patterns

    usage = profiles_of(guard.store, cfg, [i["arn"] for i in items[:MAX_LISTED]], now)
    for item in items:
        found = usage.get(item["arn"])
        item["usage"] = found.to_json() if found is not None else None
    if as_json:
        _dump(items)
        return
    if not items:
        console.print("Nothing running (run `cost-guard once` or `inventory --scan` to scan).")
    else:
        if not summary:
            _show(inventory_table(items, cfg, now, None if wide else console.width), wide)
        if summary or len(items) >= SUMMARY_FROM:
            _show(inventory_summary(items, cfg), wide)
        for item in items if not summary else []:
            if item["usage"] is not None:  # plain: names are people's text
                click.echo(f"usage of {item['kind']}/{item['name']}: {item['usage']['text']}")
    for line in billing_differences(items, cfg):
        click.echo(line)  # plain: resource names are people's text
    for line in saved_lines(saved_this_month(guard.store, cfg, now)):
        click.echo(line)
    # plain echo: one line, never wrapped or read as markup
    click.echo(prices_line(prices_report(prices, resources)))
    for finding in scanned if scan else _last_findings(guard.store):
        console.print(f"[yellow]finding[/yellow]: {escape(finding_text(finding))}", highlight=False)
    unseen = _blind_spots(list(result.errors) if scan else _last_errors(guard.store))
    if unseen:
        click.echo(f"not seen by the {'scan' if scan else 'last cycle'} (listed above only if an "
                   "earlier scan saw it):")  # fmt: skip
        for error in unseen:
            click.echo(f"  - {error}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of findings).")
@with_config
def findings(cfg: Config, as_json: bool) -> None:
    """Settings that let SageMaker bill idle time (e.g. Studio domains without idle shutdown),
    as found by the last cycle."""
    from guard.reports import finding_text
    from guard.wiring import build_guard

    store = build_guard(cfg, reconcile=False).store
    found = _last_findings(store)
    if as_json:
        _dump(found)
        return
    unseen = _blind_spots(_last_errors(store))
    if store.last_cycle() is None:
        click.echo("No cycle has run yet: run `cost-guard once` first.")
    elif not found and not unseen:
        click.echo("No findings in the last cycle.")
    for finding in found:
        click.echo(f"- {finding_text(finding)}")
    for error in unseen:  # a blind spot: whatever is there was not checked at all
        click.echo(f"- not scanned: {error}")


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


def _last_errors(store: Any) -> list[str]:
    last = store.last_cycle() or {}
    return [str(e) for e in last.get("errors", [])]


_BLIND = ("scan failed", "cannot reach", "unknown this cycle", "incomplete", "unavailable")


def _blind_spots(errors: list[str]) -> list[str]:
    """The errors that mean part of the fleet was not seen or not checked: a region or an
    account not reached, a kind not listed, activity or a setting that could not be read."""
    return [e for e in errors if any(word in e for word in _BLIND)]


def _show(renderable: Any, wide: bool) -> None:
    """Print; `wide`: as wide as the renderable wants, whatever the terminal's width."""
    if not wide:
        console.print(renderable)
        return
    from rich.measure import Measurement

    need = Measurement.get(console, console.options.update_width(10_000), renderable).maximum
    wide_console = Console(width=max(need, 40), force_terminal=console.is_terminal)
    wide_console.print(renderable)


class _ScanBar:
    """A rich progress bar on stderr over accounts, regions and kinds."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err, transient=True,
        )  # fmt: skip
        self.task: Any = None

    def start(self, total: int) -> None:
        self.task = self.bar.add_task("scanning", total=total)
        self.bar.start()

    def advance(self, what: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, advance=1, description=f"scanned {escape(what)}")


@contextlib.contextmanager
def _scan_progress() -> Iterator[None]:
    """A progress bar for the scan in this block, on a terminal only."""
    if not err.is_terminal:
        yield
        return
    from guard.inventory import reporting_progress

    bar = _ScanBar()
    try:
        with reporting_progress(bar):
            yield
    finally:
        bar.bar.stop()


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
        threshold = cfg.billing.threshold if cfg.billing.enabled else None
        for note in budget_notes(found, threshold):
            console.print(note, highlight=False)


@main.command()
@click.option(
    "--since",
    type=Duration(longest=EVERYTHING),
    default="7d",
    show_default=True,
    help="How far back, e.g. 24h, 7d.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--wide", is_flag=True, help="Every column and every name in full, however wide.")
@with_config
def audit(cfg: Config, since: timedelta, as_json: bool, wide: bool) -> None:
    """Every warning and action, with its mode, outcome and reason."""
    from guard.reports import audit_entries, audit_table
    from guard.wiring import build_guard

    guard = build_guard(cfg, reconcile=False)
    entries = audit_entries(guard.store.audit(guard.clock.now() - since))
    if as_json:
        _dump(entries)
    else:
        _show(audit_table(entries, cfg, None if wide else console.width), wide)


@main.command("backtest")
@click.option(
    "--rules", "rules_file", type=click.Path(dir_okay=False), required=True,
    help="Candidate rules: a YAML list of rules, or a config file with `rules:`.",
)  # fmt: skip
@click.option(
    "--since",
    type=Duration(longest=EVERYTHING),
    default="30d",
    show_default=True,
    help="How far back, e.g. 7d.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object).")
@with_config
def backtest_cmd(cfg: Config, rules_file: str, since: timedelta, as_json: bool) -> None:
    """Replay the recorded history through candidate rules, next to the current ones: $ each
    would have saved, its actions, its would-be busy stops. Reads the database only."""
    from guard import backtest
    from guard.wiring import build_guard

    try:
        candidate = backtest.load_rules(Path(rules_file), cfg)
    except ConfigError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    guard = build_guard(cfg, reconcile=False)
    now = guard.clock.now()
    end = guard.store.last_evidence_at(now) or now  # the window ends at the latest snapshot
    data = backtest.backtest(guard.store, cfg, candidate, end - since, end)
    if as_json:
        _dump(data)
    else:
        click.echo("\n".join(backtest.text(data, Path(rules_file).name)))


@main.command("recommend")
@click.option(
    "--since",
    type=Duration(longest=EVERYTHING),
    default="30d",
    show_default=True,
    help="How far back, e.g. 14d.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of proposals).")
@with_config
def recommend_cmd(cfg: Config, since: timedelta, as_json: bool) -> None:
    """Rules the recorded history proves would save more with no would-be busy stop, each
    with its $ per month, its risk and YAML to paste. Nothing is applied."""
    from guard import recommend
    from guard.wiring import build_guard

    guard = build_guard(cfg, reconcile=False)
    now = guard.clock.now()
    end = guard.store.last_evidence_at(now) or now  # the window ends at the latest snapshot
    found = recommend.recommendations(guard.store, cfg, end, since)
    if as_json:
        _dump([r.to_json() for r in found])
    else:
        click.echo("\n".join(recommend.text(found)))


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
@click.option(
    "--for", "duration", type=Duration(timedelta(minutes=1)), default="4h", show_default=True,
    help="How long, e.g. 4h, 2d (at least 1m).",
)  # fmt: skip
@click.option("--reason", default="", help="Shown in the audit trail and inventory.")
@with_config
def snooze(cfg: Config, target: str, duration: timedelta, reason: str) -> None:
    """No warning and no action for a resource until the snooze ends."""
    import getpass

    from guard import interactions

    guard, arn = _resolve(cfg, target)
    res = guard.store.resource(arn)
    assert res is not None
    answer = interactions.snooze(
        guard, res, duration, by=f"{getpass.getuser()} (cli)", reason=reason
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


def _restore_command(spec: RestoreSpec) -> click.Command:
    """`cost-guard restore <spec.command> NAME`, from a kind's registry entry."""

    @click.command(spec.command, help=spec.help)
    @click.argument("name")
    @click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for InService.")
    @click.option(
        "--timeout",
        type=Duration(),
        default="30m",
        show_default=True,
        help="How long to wait, e.g. 45m.",
    )
    @with_config
    def command(cfg: Config, name: str, wait: bool, timeout: timedelta) -> None:
        import time

        from guard.wiring import build_guard

        restore_it, error = load(spec.function), load(spec.error)
        guard = build_guard(cfg, reconcile=False)

        def sagemaker(account_id: str, region: str) -> Any:
            # None = the caller's own account (the default credential chain)
            account = next((a for a in cfg.accounts if a.id == account_id), None)
            return guard.aws.client(account, region, "sagemaker")

        try:
            done = restore_it(
                guard.store, sagemaker, name, clock=guard.clock, sleep=time.sleep,
                wait=wait, timeout=timeout,
            )  # fmt: skip
        except error as exc:
            raise click.ClickException(str(exc)) from exc
        # Plain echo, not rich: these lines are read by scripts too and must not be wrapped.
        where = f"{done.account} {done.region}"
        if not done.created:
            click.echo(f"{done.message} in {where}: nothing recreated.")
            return
        click.echo(done.recreated(where))
        if done.in_service_at is not None:
            when = done.in_service_at.astimezone(cfg.tz)
            click.echo(f"{done.message} at {when:%Y-%m-%d %H:%M %Z}")
        elif wait:
            raise click.ClickException(done.message)
        else:
            click.echo(f"{done.message}; {done.ready_hint}")

    return command


for _kind in KINDS.values():  # one `restore` command per kind whose entry has one
    if _kind.restore is not None:
        restore.add_command(_restore_command(_kind.restore))


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
    """Validate the config, open the database and check the AWS credentials; print the
    effective config as YAML (secrets masked; it loads back with --config) with each check as
    a `# ✓` / `# ✗` comment. Exits with the first failed check's code."""
    import yaml

    data = cfg.effective()
    secrets = data.pop("secrets", {})
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    set_secrets = [name.upper() for name, value in secrets.items() if value is not None]
    click.echo(f"# secrets (from the environment only): {', '.join(set_secrets) or 'none set'}")
    failed = 0
    for ok, line, code in (_check_database(cfg), *_check_aws(cfg)):
        click.echo(f"# {'✓' if ok else '✗'} {line}")
        failed = failed or (0 if ok else code)
    if failed:
        sys.exit(failed)


def _check_database(cfg: Config) -> tuple[bool, str, int]:
    """Open the database (creating nothing) and compare its schema with this version's."""
    from pathlib import Path

    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from guard.config import mask_url
    from guard.store import normalize_url
    from guard.tables import head_revision, in_memory, migration_scripts

    where = mask_url(cfg.database_url)
    if in_memory(normalize_url(cfg.database_url)):
        why = "an in-memory SQLite database cannot be migrated and kept: use a file"
        return False, f"database: {where}: {why}, e.g. sqlite:///cost-guard.db", EXIT_DATABASE
    try:
        url = make_url(normalize_url(cfg.database_url))
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(str(url.database)).absolute()
            if not path.exists():
                if path.parent.is_dir() and _writable(path.parent):
                    return True, f"database: {path} will be created by the first command", 0
                raise OSError("no such folder or not writable")
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError) as exc:
        return False, f"database: {database_failure(cfg.database_url, exc)}", EXIT_DATABASE
    head = head_revision(migration_scripts())
    if current == head:
        state = "at the latest schema"
    elif current is None:
        state = "empty: the first command creates the tables"
    else:
        state = f"at schema {current}: the next command upgrades it to {head}"
    return True, f"database: {where} opens, {state}", 0


def _writable(path: Any) -> bool:
    import os

    return os.access(path, os.W_OK)


def _check_aws(cfg: Config) -> list[tuple[bool, str, int]]:
    """Who the credentials are, per configured account (STS GetCallerIdentity)."""
    from guard.aws import AWS_ERRORS, Aws

    aws = Aws()
    region = cfg.regions[0]
    lines = []
    accounts: list[Any] = list(cfg.accounts) or [None]
    for account in accounts:
        label = f"account {account.name or account.id}" if account else "AWS credentials"
        try:
            account_id = aws.account_id(account, region)
        except AWS_ERRORS as exc:
            lines.append((False, f"{label}: {aws_failure(exc)}", EXIT_AWS))
            continue
        how = f" via {account.role_arn}" if account and account.role_arn else ""
        lines.append((True, f"{label}: account {account_id}{how} ({region})", 0))
    return lines


if __name__ == "__main__":
    main()
