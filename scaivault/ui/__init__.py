"""The admin web UI at /ui/: a static page and its scripts over the public /v1 API.

The browser never holds a bearer token. Sign-in (ScaiKey's authorization-code flow with
PKCE, or a pasted token in `scaivault dev`) creates a server-side session named by an
HttpOnly, Secure, SameSite=Strict cookie. The page's scripts call `/ui/api/v1/...`, which
checks the session and, for state-changing methods, the CSRF token and the Origin, then
hands the request to this same app's /v1 API with the session's token: the whole pipeline
(authentication, tenant, rate limit, policy, audit) runs as for any client, so the UI can do
exactly what the signed-in identity may do.
"""
from __future__ import annotations

import io
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import (Blueprint, Response, current_app, g, make_response, redirect, render_template, request,
                   url_for)

from ..api.pipeline import endpoint
from ..errors import ScaiVaultError
from .oidc import OidcClient
from .sessions import UiSessionStore, csrf_matches, csrf_token

bp = Blueprint("ui", __name__, url_prefix="/ui", static_folder="static", static_url_path="/static",
               template_folder="templates")

SESSION_COOKIE = "__Host-scaivault_ui"
LOGIN_COOKIE = "__Host-scaivault_ui_login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# response headers of the API that the page may see; everything else stays behind the proxy
PASSED_HEADERS = ("Content-Type", "Content-Disposition", "Retry-After", "X-Request-ID", "X-RateLimit-Limit",
                  "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _runtime():
    return current_app.extensions["scaivault"]


def _store() -> UiSessionStore:
    return UiSessionStore(_runtime().db)


def _oidc() -> OidcClient | None:
    settings = _runtime().settings
    if not (settings.ui_client_id and settings.scaikey_url):
        return None
    clients = current_app.extensions.setdefault("scaivault_ui_oidc", {})
    if "client" not in clients:
        clients["client"] = OidcClient(settings.scaikey_url, settings.ui_client_id)
    return clients["client"]


def _public_origin() -> str:
    base = _runtime().settings.base_url
    parts = urlsplit(base or request.host_url)
    return f"{parts.scheme}://{parts.netloc}"


def _callback_url() -> str:
    return _public_origin() + url_for("ui.callback")


def _set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    # __Host- cookies: Secure, Path=/, no Domain. Browsers keep Secure cookies of http://localhost.
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict")


def _clear_cookie(response: Response, name: str) -> None:
    response.set_cookie(name, "", max_age=0, path="/", secure=True, httponly=True, samesite="Strict")


def _same_origin_request() -> bool:
    """A state-changing request must come from a page of this origin (Fetch metadata, Origin)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin in (_public_origin(), request.host_url.rstrip("/"))
    return site is not None   # neither header: not a browser we can vouch for


def _page(template: str, status: int = 200, **context) -> Response:
    response = make_response(render_template(template, **context), status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def _error_page(status: int, title: str, message: str) -> Response:
    return _page("ui/error.html", status, title=title, message=message)


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"   # no-referrer would turn Origin into "null"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "ui.static":
        response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------ pages
@bp.get("/")
@endpoint("auth", authenticated=False, tenant=False)
def shell():
    session = _store().find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return redirect(url_for("ui.login"))
    return _page("ui/shell.html", csrf=csrf_token(session.secret))


@bp.get("/login")
@endpoint("auth", authenticated=False, tenant=False)
def login():
    """Start ScaiKey's sign-in; in `scaivault dev` without UI_CLIENT_ID, offer the token form."""
    client = _oidc()
    dev = _runtime().settings.dev_mode
    if client is None or request.args.get("method") == "token" and dev:
        if not dev:
            return _error_page(503, "Sign-in is not configured",
                               "Set UI_CLIENT_ID (the UI's ScaiKey application) and SCAIKEY_URL.")
        return _page("ui/login.html", error=None, scaikey=client is not None)
    state, verifier, nonce = _store().begin_login()
    try:
        target = client.authorization_url(_callback_url(), state, nonce, verifier)
    except ScaiVaultError as exc:
        return _error_page(503, "ScaiKey is unavailable", exc.message)
    response = redirect(target)
    _set_cookie(response, LOGIN_COOKIE, state, max_age=600)
    return response


@bp.get("/callback")
@endpoint("auth", authenticated=False, tenant=False)
def callback():
    """ScaiKey sends the browser back here with `code` and `state`."""
    client = _oidc()
    state = request.args.get("state", "")
    cookie_state = request.cookies.get(LOGIN_COOKIE, "")
    if client is None or not state or state != cookie_state:
        return _error_page(400, "Sign-in failed", "The sign-in response does not belong to this browser; start again.")
    if request.args.get("error"):
        return _error_page(401, "Sign-in refused", "ScaiKey did not sign you in; start again.")
    pending = _store().finish_login(state)
    if pending is None:
        return _error_page(400, "Sign-in expired", "The sign-in took too long or was already used; start again.")
    verifier, _nonce = pending
    try:
        token = client.redeem(request.args.get("code", "")[:2048], _callback_url(), verifier)
        return _signed_in(token)
    except ScaiVaultError as exc:
        return _error_page(exc.status, "Sign-in failed", exc.message)


@bp.post("/login/token")
@endpoint("auth", authenticated=False, tenant=False)
def login_with_token():
    """`scaivault dev` only: sign in by pasting a token (a personal token or a JWT)."""
    if not _runtime().settings.dev_mode:
        return _error_page(404, "Not found", "Token sign-in exists only in `scaivault dev`.")
    if not _same_origin_request():
        return _error_page(403, "Refused", "The sign-in form was not sent from this site.")
    token = request.form.get("token", "").strip()
    try:
        return _signed_in(token)
    except ScaiVaultError as exc:
        return _page("ui/login.html", 401, error=exc.message, scaikey=_oidc() is not None)


def _signed_in(token: str) -> Response:
    identity = _runtime().authenticator.authenticate(token)   # the same checks as every API call
    session = _store().create(token, identity.principal, identity.expires_at)
    response = redirect(url_for("ui.shell"))
    max_age = max(1, int((session.expires_at - datetime.now(timezone.utc)).total_seconds()))
    _set_cookie(response, SESSION_COOKIE, session.secret, max_age=max_age)
    _clear_cookie(response, LOGIN_COOKIE)
    return response


@bp.post("/logout")
@endpoint("auth", authenticated=False, tenant=False)
def logout():
    secret = request.cookies.get(SESSION_COOKIE)
    session = _store().find(secret)
    if session is not None and (not _same_origin_request() or not csrf_matches(session.secret, request.form.get("csrf"))):
        return _error_page(403, "Refused", "The sign-out was not sent from this site.")
    _store().end(secret)
    client = _oidc()
    target = client.end_session_url(_public_origin() + url_for("ui.login")) if client else None
    response = redirect(target or url_for("ui.login"))
    _clear_cookie(response, SESSION_COOKIE)
    return response


# ------------------------------------------------------------------ the API, through the session
@bp.route("/api/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
# the session stands in for the bearer token here; the /v1 call it makes runs the whole pipeline
@endpoint(None, authenticated=False, tenant=False)
def api(rest: str):
    session = _store().find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise ScaiVaultError("authentication_required", "the UI session ended; sign in again")
    if request.method not in SAFE_METHODS:
        if not _same_origin_request():
            raise ScaiVaultError("forbidden", "cross-site request refused")
        if not csrf_matches(session.secret, request.headers.get("X-CSRF-Token")):
            raise ScaiVaultError("forbidden", "missing or wrong CSRF token")
    if not rest.startswith("v1/"):
        raise ScaiVaultError("not_found", "the UI proxies the /v1 API only")
    return _call_api("/" + rest, session.token)


def _call_api(path: str, token: str) -> Response:
    """Run one request through this app's /v1 API as a client with `token` would."""
    body = request.get_data(cache=True)
    environ = {key: value for key, value in request.environ.items()
               if not key.startswith(("HTTP_COOKIE", "HTTP_X_CSRF", "HTTP_AUTHORIZATION", "werkzeug.", "wsgi.input"))}
    environ.update({"PATH_INFO": path, "SCRIPT_NAME": "", "wsgi.input": io.BytesIO(body),
                    "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {token}"})
    environ.pop("scaivault.path_tenant", None)
    if g.get("request_id"):
        environ["HTTP_X_REQUEST_ID"] = g.request_id
    captured: dict = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    chunks = current_app.wsgi_app(environ, start_response)
    try:
        payload = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    response = Response(payload, status=captured["status"])
    response.headers.pop("Content-Type", None)
    for name, value in captured["headers"]:
        if name in PASSED_HEADERS:
            response.headers[name] = value
        elif name == "Location" and value.startswith("/v1/"):
            response.headers["Location"] = "/ui/api" + value
    return response
