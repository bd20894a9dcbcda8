"""Configuration: one YAML file plus `COST_GUARD_*` environment overrides, validated once.

Precedence, highest first: environment (`COST_GUARD_<KEY>`, nested with `__`), the YAML file,
defaults. Secrets are read from the environment only and never printed unmasked.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from guard import cron
from guard.accrual import Policy as AccrualPolicy
from guard.kinds import KINDS, NOTIFY

DEFAULT_CONFIG_FILE = "cost-guard.yaml"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ConfigError(Exception):
    """The configuration is invalid; the message names the file, rule and field."""


def parse_duration(value: Any) -> timedelta:
    """`90s`, `15m`, `2h`, `3d` (or a timedelta / number of seconds) -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(
            f"invalid duration {value!r}: use a number and a unit, e.g. 90s, 15m, 2h, 3d"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, when_used="json"),
]


def _check_kinds(cls: type, kinds: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; known kinds: {', '.join(sorted(KINDS))}")
    return kinds


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# utilization_below metric -> CloudWatch metric name in the job namespaces
UTILIZATION_METRICS = {
    "gpu": "GPUUtilization",
    "gpu_memory": "GPUMemoryUtilization",
    "cpu": "CPUUtilization",
    "memory": "MemoryUtilization",
}


class UtilizationBelow(_Frozen):
    """`utilization_below: {gpu: 5, for: 1h}`: every host's peak stayed under these percents
    for the whole window (a stalled job). Percentages are as CloudWatch reports them per host
    (GPU and CPU are summed over the host's GPUs and cores, so 4 GPUs range 0-400)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    window: Duration = Field(alias="for")
    gpu: float | None = None
    gpu_memory: float | None = None
    cpu: float | None = None
    memory: float | None = None

    @model_validator(mode="after")
    def _some_metric(self) -> UtilizationBelow:
        if not self.thresholds:
            raise ValueError(f"name at least one metric: {', '.join(UTILIZATION_METRICS)}")
        return self

    @property
    def thresholds(self) -> dict[str, float]:
        return {
            metric: value
            for metric in UTILIZATION_METRICS
            if (value := getattr(self, metric)) is not None
        }


class Rule(_Frozen):
    """One rule: selectors (all optional, ANDed) and what to do with what they select.

    ```yaml
    - id: idle-notebooks
      kind: notebook
      idle_for: 2h
      action: stop
      grace: 30m
    ```
    """

    id: str = Field(min_length=1)
    kind: str
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    instance_types: tuple[str, ...] = ()  # globs, e.g. "ml.g*"
    names: tuple[str, ...] = ()  # globs on the resource's name, e.g. "staging-*"
    tags: dict[str, str] = Field(default_factory=dict)  # key -> value, or "*" for any value
    idle_for: Duration | None = None
    running_for: Duration | None = None
    cost_per_hour_over: Decimal | None = None
    accrued_cost_over: Decimal | None = None
    schedule: str | None = None  # cron, in the configured timezone; or "learned"
    utilization_below: UtilizationBelow | None = None  # jobs: GPU/CPU/memory under, for a window
    action: str = NOTIFY
    grace: Duration = timedelta(0)
    channel: str | None = None  # Slack channel for this rule's messages
    # scale-to-zero of a kind with instance groups (ActionSpec.rule_options): which groups,
    # by name; empty = all of them
    instance_groups: tuple[str, ...] = ()

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        return kind

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, schedule: str | None) -> str | None:
        if schedule is not None and schedule != "learned":  # learned: guard/rules.py
            try:
                cron.validate(schedule)
            except ValueError as exc:
                raise ValueError(f"invalid cron expression {schedule!r}: {exc}") from exc
        return schedule

    @model_validator(mode="after")
    def _action_fits_kind(self) -> Rule:
        allowed = [NOTIFY, *KINDS[self.kind].actions]
        if self.action not in allowed:
            raise ValueError(
                f"action {self.action!r} is not available for kind {self.kind!r} "
                f"(available: {', '.join(allowed)})"
            )
        if self.schedule == "learned" and (self.idle_for is None or not KINDS[self.kind].idles):
            raise ValueError(
                "schedule: learned needs idle_for (the idle rule used while the usage "
                "pattern is not known well enough) and a kind with activity evidence"
            )
        if self.idle_for is not None and not KINDS[self.kind].idles:
            raise ValueError(
                f"idle_for is not available for kind {self.kind!r}: time without activity "
                f"evidence is not idleness for it (its evidence: {KINDS[self.kind].evidence}); "
                "use running_for, a schedule or utilization_below"
            )
        action = KINDS[self.kind].actions.get(self.action)
        for option in ("instance_groups",):
            if getattr(self, option) and option not in (action.rule_options if action else ()):
                takes = [
                    f"{k.name} {a.name}"
                    for k in KINDS.values()
                    for a in k.actions.values()
                    if option in a.rule_options
                ]
                raise ValueError(
                    f"{option} is not available for kind {self.kind!r} with action "
                    f"{self.action!r} (available for: {', '.join(takes) or 'none'})"
                )
        if self.utilization_below is not None and not KINDS[self.kind].utilization_namespace:
            with_metrics = [k.name for k in KINDS.values() if k.utilization_namespace]
            raise ValueError(
                f"utilization_below is not available for kind {self.kind!r} "
                f"(available for: {', '.join(with_metrics)})"
            )
        return self

    @property
    def mutates(self) -> bool:
        return self.action != NOTIFY


class Account(_Frozen):
    id: str
    role_arn: str | None = None
    name: str | None = None
    # sent with AssumeRole when the member role's trust policy requires one (not a secret:
    # it guards against the confused deputy, not against someone who knows it)
    external_id: str | None = None


# ASCII classes, never \d or \w: pydantic-core's regex engine reads those as Unicode. It
# accepted twelve Arabic-Indic digits as an account id, and compiled `[\w+=,.@-]{1,64}` into
# 6-10 MB of RSS held for the process's life (measured; the ASCII class: 0.01 MB).
_OuId = Annotated[str, Field(pattern=r"^(ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}|r-[0-9a-z]{4,32})$")]
_AccountId = Annotated[str, Field(pattern=r"^[0-9]{12}$")]


class Organization(_Frozen):
    """`accounts: {organization: true, role_name: ..., include_ous: [...], exclude_accounts:
    [...]}`: the member accounts are listed from AWS Organizations at every cycle (so a new
    account is scanned without a restart), each reached by assuming `role_name` in it."""

    organization: Literal[True]
    # IAM's role-name characters: ASCII letters and digits and _+=,.@-
    role_name: str = Field("cost-guard-member", pattern=r"^[A-Za-z0-9_+=,.@-]{1,64}$")
    # OU ids (ou-...) or the root (r-...): only accounts under them, at any depth; empty: all
    include_ous: tuple[_OuId, ...] = ()
    exclude_accounts: tuple[_AccountId, ...] = ()
    external_id: str | None = None  # sent with every AssumeRole, as accounts[].external_id


class ShardingConfig(_Frozen):
    """Split the accounts between replicas (daemons or Lambda invocations on one Postgres):
    each scans only the accounts it holds a lease on (guard/shards.py)."""

    enabled: bool = False
    # A lease not renewed for this long is free for another replica (default: scan_interval)
    lease_ttl: Duration | None = None


class TagKeys(_Frozen):
    exempt: str = "cost-guard:exempt"
    snooze: str = "cost-guard:snooze-until"
    owner: str = "owner"
    heartbeat: str = "cost-guard:last-activity"
    heartbeat_state: str = "cost-guard:heartbeat"  # the heartbeat's last look and evidence
    team: str = "team"  # spend by team in the digest


class SlackConfig(_Frozen):
    channel: str | None = None
    base_url: str = "https://slack.com/api/"
    digest: str = "0 9 * * MON-FRI"
    mention_owners: bool = True
    # Buttons (Snooze 4h / Keep 24h / Stop now) need Slack to reach this deployment's
    # interactivity endpoint; until it does, messages carry only the console link.
    interactive: bool = False
    timeout_seconds: int = 10
    # team tag value -> channel: a resource tagged team=<value> is announced there (a rule's
    # own `channel` wins over this, this wins over `channel`)
    team_channels: dict[str, str] = Field(default_factory=dict)
    dm_owners: bool = False  # also send each owner a direct message (needs a bot token)
    # Slack user ids (U...) and user group ids (S...) whose "Stop now" click is carried out;
    # empty: nobody's. Snooze and Keep are open to anyone who can see the message.
    stop_allowed: tuple[str, ...] = ()
    # Receive button clicks over Socket Mode (an outbound websocket, needs SLACK_APP_TOKEN)
    # instead of Slack calling `cost-guard serve` at /slack/events.
    socket_mode: bool = False
    stuck_after: Duration = timedelta(hours=1)  # an undelivered message older: logged as error

    @field_validator("digest")
    @classmethod
    def _valid_cron(cls, digest: str) -> str:
        try:
            cron.validate(digest)
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {digest!r}: {exc}") from exc
        return digest


class OwnersConfig(_Frozen):
    """Who owns what, besides the owner tag."""

    # Studio apps: user profile name -> owner (email or Slack user id), for profiles whose
    # apps carry no owner tag
    studio_profiles: dict[str, str] = Field(default_factory=dict)


class ServeConfig(_Frozen):
    """`cost-guard serve` / `run --serve`: /healthz, /metrics and /slack/events."""

    host: str = "0.0.0.0"  # all interfaces: in a container the port is published on purpose
    port: int = Field(default=8080, ge=0, le=65535)
    # /healthz fails when the last successful cycle is older than this
    # (default: three scan intervals)
    healthy_within: Duration | None = None
    # Where people reach the web console (https://cost-guard.example.com): Slack messages
    # then link to each resource's page there. None: no link.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")

    @property
    def base_url(self) -> str | None:
        return self.public_url.rstrip("/") if self.public_url else None


class OidcConfig(_Frozen):
    """`web.auth: oidc`: OpenID Connect sign-in against the organisation's IdP. The client
    secret is read from COST_GUARD_OIDC_CLIENT_SECRET only."""

    issuer: str | None = None  # its discovery document is <issuer>/.well-known/openid-configuration
    client_id: str | None = None
    scopes: str = "openid email profile"

    @model_validator(mode="before")
    @classmethod
    def _no_secret_here(cls, data: Any) -> Any:
        if isinstance(data, dict) and "client_secret" in data:
            raise ValueError(
                "client_secret is read from the environment only "
                "(COST_GUARD_OIDC_CLIENT_SECRET), never from the config file"
            )
        return data


class ProxyAuthConfig(_Frozen):
    """`web.auth: proxy`: the identity a proxy in front of the console (oauth2-proxy, an ALB's
    OIDC action) puts in headers, believed only from the proxy's own addresses."""

    trusted: tuple[str, ...] = ()  # addresses or networks of the proxy (10.0.0.0/8)
    email_header: str = "X-Forwarded-Email"  # ALB: x-amzn-oidc-identity
    name_header: str | None = "X-Forwarded-Preferred-Username"

    @field_validator("trusted")
    @classmethod
    def _networks(cls, trusted: tuple[str, ...]) -> tuple[str, ...]:
        for entry in trusted:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return trusted


class WebConfig(_Frozen):
    """The web console's sign-in and who may act from it (guard/web/auth.py, actions.py)."""

    # none: nobody signs in (the pages only, no actions); oidc: OpenID Connect login;
    # proxy: identity headers from a trusted proxy
    auth: Literal["none", "oidc", "proxy"] = "none"
    # who may read the pages: anyone who reaches the console, or signed-in people only;
    # unset: public without `auth`, authenticated with it. Actions always need a sign-in.
    read_only: Literal["public", "authenticated"] | None = None
    oidc: OidcConfig = OidcConfig()
    proxy: ProxyAuthConfig = ProxyAuthConfig()
    # Emails that may "Stop now" from the console, besides the people whose email Slack maps
    # to an id (or a group member) on slack.stop_allowed. Snooze and Keep: anyone signed in.
    stop_allowed: tuple[str, ...] = ()
    session_lifetime: Duration = timedelta(hours=12)  # a sign-in lasts this long

    @model_validator(mode="after")
    def _complete(self) -> WebConfig:
        if self.auth == "oidc" and not (self.oidc.issuer and self.oidc.client_id):
            raise ValueError("auth: oidc needs oidc.issuer and oidc.client_id")
        if self.auth == "proxy" and not self.proxy.trusted:
            raise ValueError(
                "auth: proxy needs proxy.trusted (the proxy's addresses): identity headers "
                "from anyone else would be believed"
            )
        if self.auth == "none" and self.read_only == "authenticated":
            raise ValueError("read_only: authenticated needs auth (oidc or proxy) to sign in")
        return self

    @property
    def public(self) -> bool:
        """May people who have not signed in read the pages?"""
        return self.read_only == "public" or (self.read_only is None and self.auth == "none")


class PricingConfig(_Frozen):
    """Where $/h comes from: the AWS Price List API (cached in the database, refreshed when
    older than `refresh_every`), with the bundled table as the fallback; or the bundled
    table only."""

    source: Literal["api", "bundled"] = "api"
    refresh_every: Duration = timedelta(days=1)
    # after a failed refresh, how long to run on the fallback before trying the API again
    retry_after: Duration = timedelta(hours=1)
    api_region: str = "us-east-1"  # the Price List API answers in us-east-1 and ap-south-1
    # Managed spot training: $/h while it runs = on-demand x (1 - spot_savings). AWS states
    # "up to 90%" savings over on-demand (docs: model-managed-spot-training); the real saving
    # is known only when the job ends, so the default estimate stays well under that bound.
    spot_savings: Decimal = Field(default=Decimal("0.7"), ge=0, lt=1)


class AccrualConfig(_Frozen):
    """Spend is $/h x time running between consecutive snapshots. A longer gap between two
    snapshots (the daemon was down) is recorded as unobserved instead of guessed."""

    max_gap: Duration = timedelta(minutes=30)


class BudgetScope(_Frozen):
    """Which resources a budget counts (all optional, ANDed; empty = everything)."""

    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    tags: dict[str, str] = Field(default_factory=dict)  # key -> value, or "*" for any value

    _known_kinds = field_validator("kinds")(_check_kinds)


class Budget(_Frozen):
    """A rule over money: spend in a period against a limit.

    ```yaml
    - id: ml-team-month
      period: month
      limit_usd: 2000
      scope: {tags: {team: ml}}
      warn_at: [0.5, 0.8, 1.0]
      act_at: 1.0
      action: stop
    ```
    """

    id: str = Field(min_length=1)
    period: Literal["day", "week", "month"]
    limit_usd: Decimal = Field(gt=0)
    scope: BudgetScope = BudgetScope()
    warn_at: tuple[float, ...] = ()  # fractions of the limit; one message each per period
    act_at: float | None = None  # over this fraction, idle resources in scope get `action`
    action: str | None = None
    # what "idle" means for act_at: no activity for this long (never unknown, never exempt)
    idle_for: Duration = timedelta(hours=1)
    channel: str | None = None  # Slack channel for this budget's messages

    @property
    def rule_id(self) -> str:
        """The rule id of this budget's episodes and audit rows, beside the rules' own ids."""
        return f"budget:{self.id}"

    @model_validator(mode="after")
    def _act_needs_action(self) -> Budget:
        if any(t <= 0 for t in self.warn_at) or (self.act_at is not None and self.act_at <= 0):
            raise ValueError("warn_at and act_at are fractions of limit_usd and must be > 0")
        if (self.act_at is None) != (self.action is None):
            raise ValueError("act_at and action go together: give both or neither")
        if self.action is not None:
            kinds = self.scope.kinds or tuple(KINDS)
            if not any(self.action in KINDS[k].actions for k in kinds):
                offered = sorted({a for k in kinds for a in KINDS[k].actions})
                raise ValueError(
                    f"action {self.action!r} is available for none of the kinds in scope "
                    f"(available: {', '.join(offered)})"
                )
        return self


class CostExplorerConfig(_Frozen):
    """Optional: replace the estimate for closed days with Cost Explorer's figure
    (GetCostAndUsage costs $0.01 per request, so it is off by default)."""

    enabled: bool = False


class BillingConfig(_Frozen):
    """Optional: read what the bill says per resource from an AWS Data Exports export (CUR 2.0
    or FOCUS 1.0, Parquet) in S3, once per local day, to set against the guard's estimate."""

    bucket: str | None = None  # unset: no export is read
    prefix: str = ""  # the export's S3 prefix (every .parquet object under it is read)
    region: str = "us-east-1"  # the bucket's region
    account: str | None = None  # configured account whose credentials read it (default: own)
    threshold: float = Field(0.10, ge=0)  # flag |billed - estimated| / billed above this

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)


class Secrets(BaseSettings):
    """Read from the environment only, by their conventional names. Empty means unset."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN")
    )
    slack_webhook_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_WEBHOOK_URL")
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(  # Socket Mode (xapp-...)
        None, validation_alias=AliasChoices("SLACK_APP_TOKEN")
    )
    # the web console: its OpenID Connect client's secret, and the key that signs its
    # session cookies (the same on every replica)
    oidc_client_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("COST_GUARD_OIDC_CLIENT_SECRET")
    )
    web_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("COST_GUARD_WEB_SECRET")
    )

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `SLACK_BOT_TOKEN=` in a compose file must not mean "post with an empty token".
        return None if isinstance(value, str) and not value.strip() else value


class Config(BaseSettings):
    """The effective configuration. Built once at start by `load_config`, then frozen."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix="COST_GUARD_",
        env_nested_delimiter="__",
    )

    mode: Literal["dry-run", "enforce"] = "dry-run"
    database_url: str = "sqlite:///cost-guard.db"
    timezone: str = "UTC"
    scan_interval: Duration = timedelta(minutes=5)
    regions: tuple[str, ...] = ("us-east-1",)
    accounts: tuple[Account, ...] = ()
    # `accounts: {organization: true, ...}` arrives here (see `_organization`)
    organization: Organization | None = None
    sharding: ShardingConfig = ShardingConfig()
    kinds: tuple[str, ...] = tuple(KINDS)
    tags: TagKeys = TagKeys()
    slack: SlackConfig = SlackConfig()
    owners: OwnersConfig = OwnersConfig()
    serve: ServeConfig = ServeConfig()
    web: WebConfig = WebConfig()
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for collectors
    rules: tuple[Rule, ...] = ()
    pricing: PricingConfig = PricingConfig()
    accrual: AccrualConfig = AccrualConfig()
    budgets: tuple[Budget, ...] = ()
    cost_explorer: CostExplorerConfig = CostExplorerConfig()
    billing: BillingConfig = BillingConfig()
    # CloudWatch's lastEventTimestamp is eventually consistent, so each incremental log scan
    # reaches back this far before the previous one to catch late updates.
    activity_log_overlap: Duration = timedelta(minutes=15)
    # A heartbeat whose last look (its `cost-guard:heartbeat` tag) is older than this has
    # stopped running: the resource is `unknown`, never idle. The heartbeat rewrites the tag
    # at least every 30 minutes (refresh_minutes in its lifecycle script).
    heartbeat_stale_after: Duration = timedelta(hours=2)
    history_retention: Duration = timedelta(days=90)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _organization(cls, data: Any) -> Any:
        """`accounts:` is either the explicit list or the mapping that turns on discovery."""
        if isinstance(data, dict) and isinstance(data.get("accounts"), dict):
            data = {**data, "organization": data["accounts"], "accounts": ()}
        return data

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name like Europe/Berlin)"
            ) from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _escaped_password(cls, url: str) -> str:
        """`postgresql://u:p@ss@host/db` as the URL it means (`p%40ss`): left as written,
        the driver would take `ss@host` for the host and print it in its error."""
        try:
            parsed = make_url(url)
        except Exception:  # the engine reports an unparsable URL, without repeating it
            return url
        fixed = _at_signs_in_password(parsed)
        return url if fixed is parsed else fixed.render_as_string(hide_password=False)

    _known_kinds = field_validator("kinds")(_check_kinds)

    @field_validator("heartbeat_stale_after")
    @classmethod
    def _heartbeat_stale_after(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=35):
            raise ValueError(
                "must be at least 35m: the heartbeat rewrites its tag every 30 minutes when "
                "nothing changes, so a shorter wait reports running heartbeats as stopped"
            )
        return value

    @field_validator("regions")
    @classmethod
    def _some_region(cls, regions: tuple[str, ...]) -> tuple[str, ...]:
        if not regions:
            raise ValueError("at least one region is needed")
        return regions

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> Config:
        for label, ids in (
            ("rule", [r.id for r in self.rules]),
            ("budget", [b.id for b in self.budgets]),
        ):
            seen: set[str] = set()
            for ident in ids:
                if ident in seen:
                    raise ValueError(f"{label} id {ident!r} is used twice")
                seen.add(ident)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def accrual_policy(self) -> AccrualPolicy:
        return AccrualPolicy(tz=self.tz, max_gap=self.accrual.max_gap)

    @property
    def enforce(self) -> bool:
        return self.mode == "enforce"

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def budget(self, rule_id: str) -> Budget | None:
        """The budget whose actions are recorded under `rule_id` ("budget:<id>")."""
        return next((b for b in self.budgets if b.rule_id == rule_id), None)

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with some fields replaced (e.g. `--enforce`), validated like the original."""
        data = self.model_dump(mode="python")
        data.update(changes)
        return Config.model_validate({**data, "secrets": self.secrets})

    def effective(self) -> dict[str, Any]:
        """The config as JSON-able data, secrets masked, for `check-config`."""
        data = self.model_dump(mode="json", exclude={"secrets"})
        data["database_url"] = mask_url(self.database_url)
        data["secrets"] = {
            name: ("***" if value is not None else None)
            for name, value in self.secrets.model_dump().items()
        }
        return data


def mask_url(url: str) -> str:
    """The URL with any password replaced, safe to print and log; an unescaped `@` in the
    password counts as part of it (the host follows the last `@`)."""
    try:
        return _at_signs_in_password(make_url(url)).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by the engine; never print it raw
        return "<unparsable database URL>"


def _at_signs_in_password(url: URL) -> URL:
    """`url` with the userinfo split at the last `@` before the host: a host never holds an
    `@`, so one that does (SQLAlchemy splits at the first) carries the password's tail."""
    if not url.host or "@" not in url.host:
        return url
    tail, host = url.host.rsplit("@", 1)
    if url.password is not None:
        return url.set(password=f"{url.password}@{tail}", host=host)
    return url.set(username=f"{url.username or ''}@{tail}", host=host)


def config_path(explicit: str | None) -> Path | None:
    """`--config`, else `COST_GUARD_CONFIG`, else `./cost-guard.yaml` if it exists."""
    if explicit:
        return Path(explicit)
    if os.environ.get("COST_GUARD_CONFIG"):
        return Path(os.environ["COST_GUARD_CONFIG"])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_config(path: Path | None, **overrides: Any) -> Config:
    """Read, merge and validate; raise `ConfigError` naming file, rule and field."""
    source = str(path) if path else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"{source}: file not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of keys")
        raw = loaded
    for secret in (*Secrets.model_fields, "secrets"):
        if secret in raw:
            field = Secrets.model_fields.get(secret)
            alias = field.validation_alias if field is not None else None
            env = alias.choices[0] if isinstance(alias, AliasChoices) else secret.upper()
            raise ConfigError(
                f"{source}: {secret}: secrets are read from the environment only "
                f"({env}), never from the config file"
            )
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Config(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(source, raw, exc)) from None


def _describe(source: str, raw: dict[str, Any], exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        where: list[str] = []
        if len(loc) >= 2 and loc[0] in ("rules", "accounts", "budgets") and isinstance(loc[1], int):
            items = raw.get(str(loc[0])) or []
            item = items[loc[1]] if loc[1] < len(items) else {}
            ident = item.get("id") if isinstance(item, dict) else None
            label = {"rules": "rule", "accounts": "account", "budgets": "budget"}[str(loc[0])]
            where.append(f"{label} {ident!r}" if ident else f"{loc[0]}[{loc[1]}]")
            loc = loc[2:]
        field_name = ".".join(str(part) for part in loc) or "(entry)"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the README's config reference)"
        lines.append(f"{source}: {' '.join([*where, 'field', field_name])}: {message}")
    return "\n".join(lines)
