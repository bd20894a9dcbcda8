"""Sign-in for the web console: who the person is, and the CSRF token of their session.

`web.auth` chooses how a person is known:

- `oidc`: OpenID Connect login (authlib's Flask client) against the organisation's IdP. The
  ID token's signature, issuer, audience and nonce are checked by authlib; the person is the
  token's `email` (refused when the IdP says it is not verified). Kept in the signed session
  cookie for `web.session_lifetime`.
- `proxy`: a proxy in front of the console (oauth2-proxy, an ALB's OIDC action) signs people
  in and names them in a header. The header is believed only from `web.proxy.trusted`: the
  peer address of the TCP connection, never X-Forwarded-For (which anyone can write).
- `none`: nobody signs in; the pages can be read, no action can be taken.

`web.read_only` opens the pages to people who have not signed in (`public`) or not
(`authenticated`); actions always need a signed-in person (guard/web/actions.py).

Every POST must carry this session's CSRF token (a hidden `csrf_token` field, or the
X-CSRF-Token header); one without it, or with another, is refused with 403 before any view
runs. Cookies are HttpOnly, SameSite=Lax, and Secure when `serve.public_url` is https. The
session key comes from COST_GUARD_WEB_SECRET (the same on every replica); without it each
process signs with a random key of its own, and says so.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_client import (  # type: ignore[import-untyped]
    OAuth,
    OAuthError,
)
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template_string,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as Reply

from guard.config import Config

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

_EXTENSION = "cost_guard_auth"
# An identity as it may be shown and written to Slack: no spaces, quotes or <&> (a mention,
# a link), one @, and no longer than an email may be.
_EMAIL = re.compile(r"[^@\s<>&\"'\\]{1,64}@[^@\s<>&\"'\\]{1,255}")
# What a proxy may name someone by: an email, or an opaque subject id (an ALB's
# x-amzn-oidc-identity is the IdP's `sub`), under the same rules.
_IDENTITY = re.compile(r"[^\s<>&\"'\\]{1,320}")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
IDP_TIMEOUT_SECONDS = 10  # discovery, token and key requests to the IdP


class _Auth:
    """What sign-in needs at request time: the config, the OIDC client, trusted proxies."""

    def __init__(self, cfg: Config, oauth: OAuth | None) -> None:
        self.cfg, self.web, self.oauth = cfg, cfg.web, oauth
        self.trusted = [ipaddress.ip_network(t, strict=False) for t in cfg.web.proxy.trusted]


def init_app(app: Flask, cfg: Config) -> None:
    """Register sign-in routes, the CSRF check and the `csrf_token` / `current_user` Jinja
    globals; set the session's signing key and cookie attributes."""
    web = cfg.web
    key = cfg.secrets.web_secret
    if key is not None:
        app.secret_key = key.get_secret_value()
    else:
        app.secret_key = secrets.token_hex(32)
        if web.auth != "none":
            log.warning(
                "COST_GUARD_WEB_SECRET is not set: console sessions are signed with a random "
                "key of this process, so sign-ins end at a restart and other replicas do not "
                "accept them"
            )
    https = _public_url(cfg).startswith("https://")
    app.config.update(
        # The __Host- prefix: the browser keeps the cookie only if Secure, for this host only.
        SESSION_COOKIE_NAME="__Host-cost-guard" if https else "cost-guard-session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        PERMANENT_SESSION_LIFETIME=web.session_lifetime,
    )
    oauth: OAuth | None = None
    if web.auth == "oidc":
        oauth = OAuth(app)
        secret = cfg.secrets.oidc_client_secret
        if secret is None:
            log.warning(
                "COST_GUARD_OIDC_CLIENT_SECRET is not set: signing in as a public client "
                "(PKCE only); an IdP that expects the secret refuses every sign-in"
            )
        oauth.register(
            "idp",
            client_id=web.oidc.client_id,
            client_secret=secret.get_secret_value() if secret is not None else None,
            server_metadata_url=(
                f"{str(web.oidc.issuer).rstrip('/')}/.well-known/openid-configuration"
            ),
            client_kwargs={
                "scope": web.oidc.scopes,
                "default_timeout": IDP_TIMEOUT_SECONDS,
                "code_challenge_method": "S256",  # PKCE, beside the client secret
            },
        )
    app.extensions[_EXTENSION] = _Auth(cfg, oauth)
    app.register_blueprint(blueprint)
    app.before_request(_gate)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["current_user"] = current_user


def _auth() -> _Auth:
    state: _Auth = current_app.extensions[_EXTENSION]
    return state


def _public_url(cfg: Config) -> str:
    """`serve.public_url` without its trailing slash (where people reach the console), or
    "" when unset."""
    return cfg.serve.base_url or ""


def current_user() -> dict[str, Any] | None:
    """The signed-in person of this request: {"id": their email (or, behind a proxy that
    gives no email, its user id), "email" (or None), "name", "via": oidc|proxy}, or None."""
    if "cost_guard_user" not in g:
        g.cost_guard_user = _identify(_auth())
    user: dict[str, Any] | None = g.cost_guard_user
    return user


def _identify(state: _Auth) -> dict[str, Any] | None:
    web = state.web
    if web.auth == "oidc":
        user = session.get("user")
        return dict(user) if isinstance(user, dict) and user.get("id") else None
    if web.auth != "proxy":
        return None
    header = web.proxy.email_header
    value = request.headers.get(header, "").strip()
    if not value:
        return None
    peer = request.remote_addr or ""
    if not _trusted(state, peer):
        log.warning("%s from %s ignored: not a trusted proxy (web.proxy.trusted)", header, peer)
        return None
    if not _IDENTITY.fullmatch(value):
        log.warning("%s from %s ignored: not an email address or user id", header, peer)
        return None
    name = request.headers.get(web.proxy.name_header, "") if web.proxy.name_header else ""
    ident = value.lower() if _EMAIL.fullmatch(value) else value  # an ALB's `sub` keeps its case
    email = ident if _EMAIL.fullmatch(ident) else None
    return {"id": ident, "email": email, "name": name.strip()[:200] or ident, "via": "proxy"}


def _trusted(state: _Auth, peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 on a dual-stack socket
    return any(address in network for network in state.trusted)


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = session.get("csrf_token")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf_token"] = token
    return token


def _gate() -> Reply | None:
    """Before every view: a POST without this session's CSRF token is refused; with
    `read_only: authenticated`, so is every page for someone not signed in."""
    if request.method not in _SAFE_METHODS:
        expected = session.get("csrf_token")
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        if not (isinstance(expected, str) and hmac.compare_digest(expected, sent)):
            log.warning(
                "%s %s from %s refused: %s CSRF token", request.method, request.path,
                request.remote_addr, "wrong" if sent else "no",
            )  # fmt: skip
            return page(403, "Refused", "This form has expired or did not come from this "
                        "console. Go back, reload the page and try again.")  # fmt: skip
    state = _auth()
    endpoint = request.endpoint or ""
    if state.web.public or endpoint.startswith("auth.") or endpoint == "static":
        return None
    if current_user() is not None:
        return None
    if state.web.auth == "oidc" and request.method in _SAFE_METHODS:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return sign_in_needed()


def sign_in_needed() -> Response:
    """401 with the way to sign in (also what an action answers someone not signed in)."""
    web = _auth().web
    if web.auth == "oidc":
        back = _local(request.form.get("next")) or _local(request.referrer) or "/"
        return page(401, "Sign in needed", "Sign in to do this.",
                    link=(url_for("auth.login", next=back), "Sign in"))  # fmt: skip
    if web.auth == "proxy":
        return page(401, "Sign in needed", "Sign in through your organisation's sign-in "
                    "proxy in front of this console.")  # fmt: skip
    return page(401, "Sign in needed", "Nobody can sign in to this console: actions need "
                "web.auth (oidc or proxy) in cost-guard's configuration.")  # fmt: skip


@blueprint.get("/login")
def login() -> Reply:
    state, back = _auth(), _local(request.args.get("next")) or "/"
    if current_user() is not None:
        return redirect(back)
    if state.oauth is None:
        return sign_in_needed()
    session["login_next"] = back
    try:
        response: Reply = state.oauth.idp.authorize_redirect(_callback_url())
    except Exception as exc:  # the IdP is down, or its discovery document is not usable
        log.warning("sign-in: the OpenID provider could not be reached: %s", type(exc).__name__)
        return page(502, "Sign-in unavailable", "The sign-in provider could not be reached. "
                    "Try again in a minute.")  # fmt: skip
    return response


@blueprint.get("/auth/callback")
def callback() -> Reply:
    """The IdP sends the person back here with a code; authlib exchanges it for tokens and
    checks the ID token (signature, issuer, audience, expiry, nonce, state)."""
    state = _auth()
    if state.oauth is None:
        return sign_in_needed()
    try:
        token = state.oauth.idp.authorize_access_token()
        claims = token.get("userinfo") or state.oauth.idp.userinfo(token=token)
    except OAuthError as exc:  # denied at the IdP, a replayed or forged callback
        log.warning("sign-in refused: %s", exc.error)
        return page(401, "Sign-in failed", f"The sign-in did not complete ({exc.error}).",
                    link=(url_for("auth.login"), "Try again"))  # fmt: skip
    except Exception as exc:  # the IdP unreachable, an ID token that does not verify...
        log.warning("sign-in failed: %s: %s", type(exc).__name__, str(exc)[:200])
        return page(401, "Sign-in failed", "The sign-in could not be verified.",
                    link=(url_for("auth.login"), "Try again"))  # fmt: skip
    email = str(claims.get("email") or "")
    if claims.get("email_verified") is False or not _EMAIL.fullmatch(email):
        log.warning("sign-in refused: the ID token names no verified email address")
        return page(403, "Sign-in refused", "Your sign-in provider gave no verified email "
                    "address; cost-guard knows people by their email.")  # fmt: skip
    back = _local(session.get("login_next")) or "/"
    session.clear()  # nothing from before the sign-in carries over (no session fixation)
    session.permanent = True  # expires after web.session_lifetime
    name = str(claims.get("name") or claims.get("preferred_username") or email)[:200]
    session["user"] = {"id": email.lower(), "email": email.lower(), "name": name, "via": "oidc"}
    log.info("signed in to the console: %s", email.lower())
    return redirect(back)


@blueprint.route("/logout", methods=["POST"])  # a POST (CSRF-checked): no cross-site sign-out
def logout() -> Reply:
    user = current_user()
    session.clear()
    if user is not None:
        log.info("signed out of the console: %s", user["id"])
    if _auth().web.auth == "proxy" and user is not None:
        return page(200, "Signed out here", "Your proxy keeps you signed in; sign out there.")
    return redirect("/")


def _callback_url() -> str:
    base = _public_url(_auth().cfg)
    return f"{base}{url_for('auth.callback')}" if base else url_for("auth.callback",
                                                                    _external=True)  # fmt: skip


def _local(target: Any) -> str | None:
    """`target` if it is a path on this console (after a sign-in, never off-site), else
    None."""
    if not isinstance(target, str) or not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if parts.netloc != request.host:
            return None
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    return str(target)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · cost-guard</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;
color:#1a1a1a}a{color:#0645ad}</style></head>
<body><main><h1>{{ title }}</h1><p role="alert">{{ text }}</p>
{% if link %}<p><a href="{{ link[0] }}">{{ link[1] }}</a></p>{% endif %}
<p><a href="/">Back to the console</a></p></main></body></html>"""


def page(status: int, title: str, text: str, link: tuple[str, str] | None = None) -> Response:
    """A small page of its own for refusals and sign-in answers (autoescaped)."""
    body = render_template_string(_PAGE, title=title, text=text, link=link)
    return Response(body, status=status, mimetype="text/html")
