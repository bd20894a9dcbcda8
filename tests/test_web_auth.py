"""The web console's sign-in, CSRF protection and actions, end to end: Debian's Chromium
(Playwright) against the real server (guard/server.py) over the simulator, OpenID Connect
login against a local provider (oidc-provider-mock), Slack through tests/fakeslack.py, and
forged requests from a plain HTTP client. The store-touching tests run on SQLite and Postgres.
"""

from __future__ import annotations

import http.client
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import werkzeug.serving
from oidc_provider_mock import User  # type: ignore[import-untyped]
from oidc_provider_mock import app as oidc_app
from sqlalchemy import func, select

from guard.config import ConfigError, Secrets, load_config
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.reports import inventory_for
from guard.sim import Simulator
from guard.tables import ActionRow, SlackInteractionRow
from tests.factories import guard_for
from tests.fakeslack import FakeSlack

CLIENT_ID, CLIENT_SECRET = "cost-guard-console", "oidc-client-secret-not-for-pages"
WEB_SECRET = "web-session-key-0123456789abcdef-not-for-pages"
LEAD, DEV, SHADY = "lead@example.com", "dev@example.com", "shady@example.com"
LEAD_SLACK, BOB = "U0LEAD001", "U0BOB0001"
NO_DIGEST = "0 9 1 1 *"
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "30m"}
USERS = [
    User(sub="lead", claims={"email": LEAD, "email_verified": True, "name": "Lena Lead"}),
    User(sub="dev", claims={"email": DEV, "email_verified": True, "name": "Dev Eloper"}),
    User(sub="shady", claims={"email": SHADY, "email_verified": False, "name": "Shady"}),
]

pytestmark = [
    pytest.mark.usefixtures("aws_env"),
    # the local provider (oidc-provider-mock) calls authlib's older server API
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    """oidc-provider-mock on 127.0.0.1 (a free port) in a thread; its login form offers one
    button per user of USERS. Returns its issuer URL."""
    server = werkzeug.serving.make_server(
        "127.0.0.1", 0, oidc_app(user_claims=USERS), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
    server.server_close()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    # lead@ is in Slack, and stops through the platform group; dev@ is not in Slack at all
    slack = FakeSlack(users={LEAD: LEAD_SLACK}, groups={"S0PLATFORM": [LEAD_SLACK]}).start()
    yield slack
    slack.stop()


def make(
    sim: Simulator, clock: ManualClock, db_url: str, slack: FakeSlack, idp: str, **web: Any
) -> Guard:
    """An enforcing guard whose idle notebook has been warned (one cycle), its console set to
    sign in against `idp`, pages public."""
    sim.add_notebook("idle", tags={"owner": BOB}, in_service_since=clock.now() - timedelta(hours=5))
    secrets = Secrets.model_validate(
        {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "COST_GUARD_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "COST_GUARD_WEB_SECRET": WEB_SECRET,
        }
    )
    slack_cfg = {"channel": "C123", "base_url": slack.api_url, "interactive": True}
    slack_cfg |= {"digest": NO_DIGEST, "stop_allowed": ["S0PLATFORM"]}
    web_cfg = {"auth": "oidc", "oidc": {"issuer": idp, "client_id": CLIENT_ID}}
    settings: dict[str, Any] = {"mode": "enforce", "serve": web.pop("serve", {})}
    web_cfg |= {"read_only": "public"} | web
    guard = guard_for(clock, db_url, [IDLE_STOP], secrets, slack=slack_cfg, web=web_cfg, **settings)
    report = run_cycle(guard)
    assert [w["name"] for w in report["warned"]] == ["idle"]
    return guard


def arn_of(guard: Guard) -> str:
    [res] = guard.store.resources()
    return res.arn


ON_RESOURCE = re.compile(r".*/resource/arn.*")


def resource_url(base: str, arn: str) -> str:
    return f"{base}/resource/{arn}"


def click_and_land(page: Any, button: str) -> None:
    """Click a form's button and wait for the page it leads to (the resource page)."""
    with page.expect_navigation(url=ON_RESOURCE):
        page.get_by_role("button", name=button).click()


def sign_in(page: Any, base: str, arn: str, who: str) -> None:
    """From the resource page: Sign in, pick `who` at the provider, land back on the page."""
    page.goto(resource_url(base, arn))
    page.locator("#signin-note").get_by_role("link", name="sign in").click()
    page.wait_for_url(re.compile(r".*/oauth2/authorize.*"))
    assert "code_challenge_method=S256" in page.url and "nonce=" in page.url
    page.get_by_role("button", name=who, exact=True).click()
    page.wait_for_url(ON_RESOURCE)


def interactions(guard: Guard) -> list[SlackInteractionRow]:
    with guard.store.session() as s:
        return list(s.scalars(select(SlackInteractionRow).order_by(SlackInteractionRow.id)))


def stops(guard: Guard) -> int:
    with guard.store.session() as s:
        query = select(func.count()).select_from(ActionRow).where(ActionRow.action == "stop")
        return int(s.scalar(query) or 0)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str


def request(
    base: str,
    method: str,
    path: str,
    *,
    body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
) -> Answer:
    """One plain HTTP request (no browser, no redirects followed), from `source`: any
    127.0.0.0/8 address is this machine, so a test can play a proxy at 127.0.0.2."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(
        str(parts.hostname), parts.port, timeout=15, source_address=(source, 0)
    )
    data = urllib.parse.urlencode(body).encode() if body is not None else None
    sent = dict(headers or {})
    if data is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    answer = Answer(response.status, response.headers, response.read().decode())
    conn.close()
    return answer


def cookie_header(page: Any) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())


def test_a_signed_out_click_on_snooze_is_refused(
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    fake_slack: FakeSlack,
    idp: str,
    page: Any,
    serve_console: Any,
) -> None:
    guard = make(sim, clock, fresh_sqlite_url, fake_slack, idp, read_only="public")
    base, arn = serve_console(guard).url, arn_of(guard)
    page.goto(resource_url(base, arn))
    snooze = page.get_by_role("button", name="Snooze")
    assert snooze.is_disabled()  # the page offers no action to someone not signed in
    # ...and the server refuses one anyway: the form enabled by hand, with its CSRF token
    page.locator("section.actions fieldset").evaluate("f => f.disabled = false")
    with page.expect_response(lambda r: "/actions/snooze" in r.url) as answer:
        snooze.click()
    assert answer.value.status == 401
    assert "Sign in to do this" in page.content()
    assert guard.store.snooze_of(arn, clock.now()) is None
    assert interactions(guard) == [] and fake_slack.accepted("chat.update") == []


def test_an_allowed_user_signs_in_and_snoozes_it_shows_in_inventory_and_slack(
    sim: Simulator,
    clock: ManualClock,
    db_url: str,
    fake_slack: FakeSlack,
    idp: str,
    page: Any,
    serve_console: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    guard = make(sim, clock, db_url, fake_slack, idp)
    base, arn = serve_console(guard).url, arn_of(guard)
    sign_in(page, base, arn, "lead")
    assert LEAD in page.locator("header").inner_text()
    assert page.get_by_role("button", name="Snooze").is_enabled()

    page.get_by_label("Reason").fill("training restarts at noon")
    click_and_land(page, "Snooze")
    assert f"by {LEAD} (web)" in page.locator("dl.facts").inner_text()
    assert page.get_by_role("status").inner_text() == (
        f"Snoozed for 4 h by {LEAD} (web), until Mon 13:00 UTC: no warning and no action "
        "until then."
    )

    until = clock.now() + timedelta(hours=4)
    [item] = inventory_for(guard.store, guard.cfg, clock.now(), False)
    assert item["snoozed_until"] == until.isoformat()
    snooze = guard.store.snooze_of(arn, clock.now())
    assert snooze is not None and snooze.by == f"{LEAD} (web)"
    assert snooze.reason == "web console: Snooze 4 h: training restarts at noon"
    [update] = fake_slack.accepted("chat.update")  # the warning now says who snoozed it
    assert f"Snoozed for 4 h by {LEAD} (web)" in str(update.body)
    assert "Stop now" not in str(update.body)
    [row] = interactions(guard)
    assert (row.action, row.outcome, row.arn) == ("snooze_4h", "snoozed", arn)

    clock.advance(timedelta(minutes=45))  # past the grace: the snooze holds the action
    report = run_cycle(guard)
    assert report["actions"] == [] and sim.notebook_status("idle") == "InService"

    # No secret in any page or log line.
    for text in (page.content(), caplog.text):
        assert CLIENT_SECRET not in text and WEB_SECRET not in text
    session = next(c for c in page.context.cookies() if c["name"] == "cost-guard-session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"


def test_a_user_not_on_the_allow_list_cannot_stop_now(
    sim: Simulator,
    clock: ManualClock,
    db_url: str,
    fake_slack: FakeSlack,
    idp: str,
    browser: Any,
    serve_console: Any,
) -> None:
    guard = make(sim, clock, db_url, fake_slack, idp)
    base, arn = serve_console(guard).url, arn_of(guard)

    dev = browser.new_context()
    page = dev.new_page()
    sign_in(page, base, arn, "dev")  # signed in, but neither in web.stop_allowed nor Slack's
    with page.expect_response(lambda r: "/actions/stop-now" in r.url) as answer:
        page.get_by_role("button", name="Stop now").click()
    assert answer.value.status == 403
    assert "only the people on web.stop_allowed or slack.stop_allowed may stop" in page.content()
    dev.close()
    assert sim.notebook_status("idle") == "InService" and stops(guard) == 0
    assert guard.store.slack_user(DEV) is not None  # asked of Slack once, and remembered
    replies = [
        c.body["text"] for c in fake_slack.accepted("chat.postMessage") if "thread_ts" in c.body
    ]
    assert replies == [
        f"{DEV} (web) clicked Stop now; not done: only the people on web.stop_allowed or "
        "slack.stop_allowed may stop from the web console."
    ]

    # The same button works for someone Slack's allow-list admits (through its user group).
    lead = browser.new_context()
    page = lead.new_page()
    sign_in(page, base, arn, "lead")
    click_and_land(page, "Stop now")
    lead.close()
    assert sim.notebook_status("idle") in ("Stopping", "Stopped") and stops(guard) == 1
    updates = [str(c.body) for c in fake_slack.accepted("chat.update")]
    assert any(f"by {LEAD} (web) (Stop now)" in u for u in updates)
    assert [(r.action, r.user_id, r.outcome) for r in interactions(guard)] == [
        ("stop_now", "web", "refused"),
        ("stop_now", LEAD_SLACK, "done"),
    ]


def test_web_stop_allowed_admits_by_email_without_slack(
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    fake_slack: FakeSlack,
    idp: str,
    page: Any,
    serve_console: Any,
) -> None:
    guard = make(sim, clock, fresh_sqlite_url, fake_slack, idp, stop_allowed=["Dev@Example.com"])
    base, arn = serve_console(guard).url, arn_of(guard)
    sign_in(page, base, arn, "dev")
    click_and_land(page, "Stop now")
    assert sim.notebook_status("idle") in ("Stopping", "Stopped") and stops(guard) == 1


def test_a_forged_post_without_the_csrf_token_changes_nothing(
    sim: Simulator,
    clock: ManualClock,
    db_url: str,
    fake_slack: FakeSlack,
    idp: str,
    page: Any,
    serve_console: Any,
) -> None:
    guard = make(sim, clock, db_url, fake_slack, idp, stop_allowed=[LEAD])
    base, arn = serve_console(guard).url, arn_of(guard)
    sign_in(page, base, arn, "lead")
    cookies = cookie_header(page)  # what a browser sends along with a cross-site form post
    query = "?" + urllib.parse.urlencode({"arn": arn})
    for action in ("snooze", "keep", "stop-now"):
        for body in ({"duration": "4h"}, {"csrf_token": "guessed", "duration": "4h"}):
            answer = request(
                base, "POST", f"/actions/{action}{query}", body=body, headers={"Cookie": cookies}
            )
            assert answer.status == 403, (action, body)
    assert guard.store.snooze_of(arn, clock.now()) is None and stops(guard) == 0
    assert interactions(guard) == [] and fake_slack.accepted("chat.update") == []
    assert sim.notebook_status("idle") == "InService"

    # The page's own token, from the same session, is what makes the same post work.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = request(
        base,
        "POST",
        f"/actions/snooze{query}",
        body={"csrf_token": token, "duration": "24h"},
        headers={"Cookie": cookies},
    )
    assert answer.status == 303
    snooze = guard.store.snooze_of(arn, clock.now())
    assert snooze is not None and snooze.until == clock.now() + timedelta(hours=24)


def test_identity_headers_are_believed_only_from_the_trusted_proxy(
    sim: Simulator,
    clock: ManualClock,
    db_url: str,
    fake_slack: FakeSlack,
    idp: str,
    serve_console: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = {"trusted": ["127.0.0.2/32"]}
    guard = make(sim, clock, db_url, fake_slack, idp, auth="proxy", proxy=proxy)
    base, arn = serve_console(guard).url, arn_of(guard)
    path = urllib.parse.urlsplit(resource_url(base, arn)).path
    who = {"X-Forwarded-Email": LEAD}

    # Through the proxy (127.0.0.2): signed in; the page carries the session's CSRF token.
    shown = request(base, "GET", path, headers=who, source="127.0.0.2")
    html = shown.text
    assert shown.status == 200 and LEAD in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None
    cookie = str(shown.headers["Set-Cookie"]).split(";")[0]
    form = {"csrf_token": token.group(1), "duration": "4h"}
    query = "?" + urllib.parse.urlencode({"arn": arn})

    # The same request straight to the console (127.0.0.1): the header is not believed.
    caplog.set_level(logging.WARNING, logger="guard.web.auth")
    direct = request(
        base, "POST", f"/actions/snooze{query}", body=form, headers={**who, "Cookie": cookie}
    )
    assert direct.status == 401
    assert "X-Forwarded-Email from 127.0.0.1 ignored: not a trusted proxy" in caplog.text
    assert guard.store.snooze_of(arn, clock.now()) is None and interactions(guard) == []
    assert LEAD not in request(base, "GET", path, headers=who).text

    via_proxy = request(
        base,
        "POST",
        f"/actions/snooze{query}",
        body=form,
        headers={**who, "Cookie": cookie},
        source="127.0.0.2",
    )
    assert via_proxy.status == 303
    snooze = guard.store.snooze_of(arn, clock.now())
    assert snooze is not None and snooze.by == f"{LEAD} (web)"

    # A header that is not an email (a Slack mention, say) is refused even from the proxy.
    odd = request(
        base,
        "POST",
        f"/actions/keep{query}",
        body=form,
        source="127.0.0.2",
        headers={"X-Forwarded-Email": "<!channel>", "Cookie": cookie},
    )
    assert odd.status == 401


def test_an_alb_identity_header_names_a_user_by_its_subject(
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    fake_slack: FakeSlack,
    idp: str,
    serve_console: Any,
) -> None:
    """An ALB's OIDC action passes the IdP's `sub`, not an email: web.stop_allowed names it."""
    sub = "9f1c2d3e-4b5a-6789-abcd-ef0123456789"
    proxy = {"trusted": ["127.0.0.2"], "email_header": "x-amzn-oidc-identity"}
    guard = make(
        sim,
        clock,
        fresh_sqlite_url,
        fake_slack,
        idp,
        auth="proxy",
        proxy=proxy,
        stop_allowed=[sub],
    )
    base, arn = serve_console(guard).url, arn_of(guard)
    who = {"x-amzn-oidc-identity": sub}
    shown = request(base, "GET", f"/resource/{arn}", headers=who, source="127.0.0.2")
    token = re.search(r'name="csrf_token" value="([^"]+)"', shown.text)
    assert token is not None and sub in shown.text
    cookie = str(shown.headers["Set-Cookie"]).split(";")[0]
    query = "?" + urllib.parse.urlencode({"arn": arn})
    stopped = request(
        base,
        "POST",
        f"/actions/stop-now{query}",
        source="127.0.0.2",
        body={"csrf_token": token.group(1)},
        headers={**who, "Cookie": cookie},
    )
    assert stopped.status == 303
    assert sim.notebook_status("idle") in ("Stopping", "Stopped") and stops(guard) == 1
    assert fake_slack.requests("users.lookupByEmail") == []  # not an email: Slack not asked
    updates = [str(c.body) for c in fake_slack.accepted("chat.update")]
    assert any(f"by {sub} (web) (Stop now)" in u for u in updates)


def test_sign_in_refusals_and_authenticated_read_only(
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    fake_slack: FakeSlack,
    idp: str,
    page: Any,
    serve_console: Any,
) -> None:
    guard = make(sim, clock, fresh_sqlite_url, fake_slack, idp, read_only="authenticated")
    base = serve_console(guard).url

    # Not signed in: every page sends the person to sign in first, the health checks do not.
    answer = request(base, "GET", "/")
    assert answer.status == 302 and "/login?next=" in str(answer.headers["Location"])
    assert request(base, "GET", "/healthz").status == 200
    # A callback the provider never sent (no state of this session) signs nobody in.
    forged = request(base, "GET", "/auth/callback?code=abc&state=xyz")
    assert forged.status == 401

    # An IdP account whose email is not verified is not let in.
    page.goto(f"{base}/login")
    with page.expect_response(lambda r: "/auth/callback" in r.url) as refused:
        page.get_by_role("button", name="shady", exact=True).click()
    assert refused.value.status == 403
    assert "gave no verified email" in page.content()
    page.goto(f"{base}/")
    assert "/oauth2/authorize" in page.url  # still not signed in: back to the provider
    # Denied at the provider: told so, still not signed in.
    with page.expect_response(lambda r: "/auth/callback" in r.url) as denied:
        page.get_by_role("button", name="Deny").click()
    assert denied.value.status == 401 and "access_denied" in page.content()

    # After a sign-in the console never sends people off-site.
    page.goto(f"{base}/login?next=https://evil.example/steal")
    page.get_by_role("button", name="lead", exact=True).click()
    page.wait_for_url(f"{base}/")
    assert LEAD in page.locator("header").inner_text()
    assert page.request.get(f"{base}/logout").status == 405  # a link cannot sign you out
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    page.goto(f"{base}/")
    assert "/oauth2/authorize" in page.url  # signed out


def test_an_unreachable_provider_is_one_clear_answer(
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    fake_slack: FakeSlack,
    serve_console: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = "http://127.0.0.1:9"  # the discard port: nothing listens
    guard = make(sim, clock, fresh_sqlite_url, fake_slack, down)
    base = serve_console(guard).url
    caplog.set_level(logging.WARNING, logger="guard.web.auth")
    answer = request(base, "GET", "/login")
    assert answer.status == 502 and "could not be reached" in answer.text
    [line] = [r.getMessage() for r in caplog.records if r.name == "guard.web.auth"]
    assert line == "sign-in: the OpenID provider could not be reached: ConnectionError"
    assert all(r.exc_info is None for r in caplog.records)


def test_behind_https_cookies_are_secure_and_the_idp_returns_to_the_public_url(
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    fake_slack: FakeSlack,
    idp: str,
    serve_console: Any,
) -> None:
    guard = make(
        sim,
        clock,
        fresh_sqlite_url,
        fake_slack,
        idp,
        serve={"public_url": "https://console.example.com/"},
    )
    base, arn = serve_console(guard).url, arn_of(guard)
    shown = request(base, "GET", f"/resource/{arn}")
    cookie = str(shown.headers["Set-Cookie"])
    assert cookie.startswith("__Host-cost-guard=")
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= {
        part.strip() for part in cookie.split(";")
    }
    login = request(base, "GET", "/login")
    assert login.status == 302
    location = urllib.parse.urlsplit(str(login.headers["Location"]))
    assert location.netloc == urllib.parse.urlsplit(idp).netloc
    query = urllib.parse.parse_qs(location.query)
    assert query["redirect_uri"] == ["https://console.example.com/auth/callback"]
    assert query["client_id"] == [CLIENT_ID] and CLIENT_SECRET not in login.text


def test_the_web_config_is_checked(tmp_path: Any) -> None:
    path = tmp_path / "cost-guard.yaml"
    path.write_text("web:\n  auth: proxy\n")
    with pytest.raises(ConfigError, match=r"auth: proxy needs proxy\.trusted"):
        load_config(path)
    path.write_text("web:\n  auth: oidc\n  oidc: {issuer: https://idp, client_secret: s}\n")
    with pytest.raises(ConfigError, match="COST_GUARD_OIDC_CLIENT_SECRET"):
        load_config(path)
    path.write_text("web_secret: not-here\n")
    with pytest.raises(ConfigError, match="environment only \\(COST_GUARD_WEB_SECRET\\)"):
        load_config(path)
    path.write_text("web:\n  auth: oidc\n  oidc: {issuer: https://idp}\n")
    with pytest.raises(ConfigError, match=r"needs oidc\.issuer and oidc\.client_id"):
        load_config(path)
    path.write_text("web:\n  read_only: authenticated\n")
    with pytest.raises(ConfigError, match="needs auth"):
        load_config(path)
    path.write_text("web:\n  auth: proxy\n  proxy: {trusted: [10.0.0.300]}\n")
    with pytest.raises(ConfigError, match="not an IP address or network"):
        load_config(path)
    path.write_text("web:\n  auth: proxy\n  proxy: {trusted: [10.0.0.0/8]}\n")
    assert not load_config(path).web.public  # with a sign-in, pages default to signed-in only
    assert load_config(None).web.public
