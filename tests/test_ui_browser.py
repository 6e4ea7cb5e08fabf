"""The admin UI at /ui/, driven end to end in a real Chromium against a real `scaivault serve`.

Sign-in goes through the ScaiKey stand-in's authorization endpoint (code + PKCE). The page only
ever talks to /ui/api, which hands each call to the public /v1 API with the session's token, so
everything the UI does is checked, limited and audited like any other client. Screenshots of the
main pages are written to docs/ui/ when SCAIVAULT_UI_SCREENSHOTS=1.
"""
from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.foundation_support import ServedInstance

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "ui"
UI_CLIENT = "scaivault-ui"
TENANT, PARTNER = "tnt_ui", "ptn_ui"
ADMIN = {"sub": "usr_ui_admin", "email": "admin@ui.example", "tenant_id": TENANT, "partner_id": PARTNER,
         "role": "tenant_admin",
         "scopes": ("secrets:read", "secrets:write", "secrets:delete", "secrets:list", "policies:read",
                    "policies:write", "audit:read", "audit:export")}
READER = {"sub": "usr_ui_reader", "email": "reader@ui.example", "tenant_id": TENANT, "partner_id": PARTNER,
          "scopes": ("secrets:read", "secrets:list")}


@pytest.fixture(scope="module")
def served(base_env, scaikey):
    scaikey.public_clients.add(UI_CLIENT)
    instance = ServedInstance({**base_env, "UI_CLIENT_ID": UI_CLIENT})
    instance.env["BASE_URL"] = f"http://127.0.0.1:{instance.port}"
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


def sign_in(page, served, scaikey, user: dict) -> None:
    scaikey.browser_user = dict(user)
    page.goto(served.url + "/ui/")
    page.wait_for_selector("#whoami:not(:empty)")
    assert page.url.startswith(served.url + "/ui/")


def shot(page, name: str) -> None:
    if os.environ.get("SCAIVAULT_UI_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_an_admin_signs_in_with_scaikey_and_manages_secrets_access_and_tokens_found_in_the_audit_log(
        page, served, scaikey):
    sign_in(page, served, scaikey, ADMIN)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["__Host-scaivault_ui"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""          # nothing a script can read

    # create a secret: the value never reaches the page's HTML until revealed
    page.click("text=New secret")
    page.fill("#path", "ui/prod/db")
    page.fill("#description", "primary database")
    page.fill("#tags", "prod, db")
    page.fill(".kv .k >> nth=0", "user")
    page.fill(".kv .v >> nth=0", "api")
    page.click("text=Add row")
    page.fill(".kv .k >> nth=1", "password")
    page.fill(".kv .v >> nth=1", "first-Value-1")
    page.click("button:has-text('Create')")
    page.wait_for_selector("h1:has-text('ui/prod/db')")
    assert "first-Value-1" not in page.content()

    # edit to version 2 (with check-and-set), compare the two versions' keys
    page.click("button:has-text('Edit')")
    page.wait_for_selector("text=Saving writes version 2")
    page.fill(".kv .v >> nth=1", "second-Value-2")
    page.click("button:has-text('Save')")
    page.wait_for_selector("td:text-is('2 (current)')")
    assert "second-Value-2" not in page.content()
    shot(page, "secret")
    page.select_option("#cmp-a", "1")
    page.select_option("#cmp-b", "2")
    page.click("text=Compare keys")
    page.wait_for_selector("text=Keys of version 1 against version 2")
    assert page.inner_text("tr.diff-changed") .startswith("password")
    assert page.inner_text("tr.diff-unchanged").startswith("user")
    assert "first-Value-1" not in page.content() and "second-Value-2" not in page.content()

    # restore version 1 as version 3, then reveal it (an audited read) and copy the value
    page.click("tr:has(td:text-is('1')) button:has-text('Restore')")
    page.wait_for_selector("td:text-is('3 (current)')")
    page.click("button:has-text('Reveal')")
    page.wait_for_selector("#value code.value")
    assert "first-Value-1" in page.inner_text("#value")
    page.click("#value tr:has(th:text-is('password')) button:has-text('Copy')")
    assert page.evaluate("navigator.clipboard.readText()") == "first-Value-1"

    # the folder browser finds it
    page.goto(served.url + "/ui/#/secrets")
    page.click("a:has-text('ui/')")
    page.click("a:has-text('prod/')")
    page.wait_for_selector("a:has-text('db')")
    shot(page, "secrets")

    # a policy, a binding, and the policy test naming the rule that decided
    page.goto(served.url + "/ui/#/policies")
    page.click("text=New policy")
    page.fill("#pname", "ui-api-read")
    page.fill(".path_pattern", "ui/prod/*")
    page.click("button:has-text('Save policy')")
    page.wait_for_selector("h1:has-text('Policy ui-api-read')")
    page.fill("#bid", "sa:ui-api")
    page.click("button:has-text('Bind')")
    page.wait_for_selector("td:text-is('sa:ui-api')")
    shot(page, "policy")
    page.goto(served.url + "/ui/#/policy-test")
    page.fill("#tid", "sa:ui-api")
    page.fill("#tpath", "ui/prod/db")
    page.click("button:has-text('Test')")
    page.wait_for_selector("#matched-rule")
    assert page.inner_text("#test-result").startswith("Allowed")
    assert "ui-api-read" in page.inner_text("#matched-rule") and "ui/prod/*" in page.inner_text("#matched-rule")
    shot(page, "policy-test")

    # a personal token: shown once, listed, revoked
    page.goto(served.url + "/ui/#/tokens")
    page.fill("#tname", "ui-ci")
    page.check("input[value='secrets:read']")
    page.click("button:has-text('Create')")
    token = page.inner_text("code.token").strip()
    assert token.startswith("skt_")
    assert requests.get(served.url + "/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200
    page.click("text=Done")
    page.wait_for_selector("td:text-is('ui-ci')")
    assert token not in page.content()
    shot(page, "tokens")
    page.click("tr:has(td:text-is('ui-ci')) button:has-text('Revoke')")
    page.wait_for_selector("tr:has(td:text-is('ui-ci')) td:text-is('revoked')")
    assert requests.get(served.url + "/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 401

    # all of it is in the audit view, as the signed-in user's own API calls
    page.goto(served.url + "/ui/#/audit")
    page.wait_for_selector("tbody tr")
    log = page.inner_text("tbody")
    for action in ("write", "read", "policy_create", "policy_bind", "token_create", "token_revoke"):
        assert action in log, action
    assert "first-Value-1" not in log
    page.click("button:has-text('Verify chain')")
    page.wait_for_selector(".bar span.ok")
    shot(page, "audit")
    assert page.errors == []

    # sign out ends the session on the server too
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/ui/**")
    assert requests.get(served.url + "/ui/api/v1/auth/whoami",
                        cookies={"__Host-scaivault_ui": session["value"]}, timeout=10).status_code == 401


def test_a_user_without_rights_sees_403_pages_not_stack_traces(page, served, scaikey, make_app):
    sign_in(page, served, scaikey, READER)
    page.goto(served.url + "/ui/#/policies")
    page.wait_for_selector("[role=alert]")
    text = page.inner_text("#view")
    assert text.startswith("403") and "Traceback" not in page.content()
    page.goto(served.url + "/ui/#/audit")
    page.wait_for_selector("[role=alert]")
    assert page.inner_text("#view").startswith("403")
    assert page.errors == []


def test_a_request_from_another_origin_is_refused_even_with_the_session_cookie(page, served, scaikey):
    sign_in(page, served, scaikey, ADMIN)
    target = served.url + "/ui/api/v1/policies"

    class Attacker(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            # a plain form post: no CORS preflight, and the session cookie rides along because
            # another port of the same host is the same site
            body = (f'<form id="f" method="post" action="{target}" enctype="text/plain">'
                    '<input name=\'{"name":"evil","rules":[{"path_pattern":"**","permissions":["admin"],"x":"\' '
                    'value=\'"}]}\'></form><script>document.getElementById("f").submit()</script>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(target) as answer:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        assert answer.value.status == 403
    finally:
        server.shutdown()
    page.goto(served.url + "/ui/#/policies")
    page.wait_for_selector("h1:has-text('Policies')")
    assert "evil" not in page.inner_text("#view")


def test_ui_pages_carry_a_strict_content_security_policy_and_need_a_session(served):
    anonymous = requests.get(served.url + "/ui/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].endswith("/ui/login")
    csp = anonymous.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    api = requests.get(served.url + "/ui/api/v1/secrets", timeout=10)
    assert api.status_code == 401 and api.json()["error"]["code"] == "authentication_required"
    forged = requests.get(served.url + "/ui/api/v1/secrets", cookies={"__Host-scaivault_ui": "x" * 43}, timeout=10)
    assert forged.status_code == 401
    # a callback that this browser did not start is refused
    stray = requests.get(served.url + "/ui/callback?code=abc&state=def", timeout=10)
    assert stray.status_code == 400 and "text/html" in stray.headers["Content-Type"]


def test_admin_resources_such_as_federation_backends_have_list_and_detail_pages(page, served, scaikey):
    from tests.fakes.servers import MotoServer

    moto = MotoServer().start()
    try:
        token = scaikey.mint(**{**ADMIN, "scopes": ADMIN["scopes"] + ("federation:read", "federation:write")})
        bearer = {"Authorization": f"Bearer {token}"}
        requests.put(served.url + "/v1/secrets/infra/ui-aws", headers=bearer, timeout=10,
                     json={"data": {"access_key_id": "testing", "secret_access_key": "testing"}})
        moto.client("secretsmanager").create_secret(Name="uifed/one", SecretString='{"k": "v"}')
        created = requests.post(served.url + "/v1/federation/backends", headers=bearer, timeout=30, json={
            "name": "ui-aws", "type": "aws-secrets-manager", "mode": "sync", "sync_interval": "10m",
            "config": {"region": "us-east-1", "endpoint": moto.url, "credentials_path": "infra/ui-aws"},
            "path_mapping": {"uifed/**": "uifed/**"}})
        assert created.status_code == 201, created.text
        sign_in(page, served, scaikey, {**ADMIN, "scopes": ADMIN["scopes"] + ("federation:read", "federation:write")})
        page.click("nav >> text=Federation")
        page.click("a:has-text('ui-aws')")
        page.wait_for_selector("h2:has-text('Status')")
        assert "aws-secrets-manager" in page.inner_text("#view")
        page.click("button:has-text('Sync now')")
        page.wait_for_selector("pre.ok:has-text('\"written\": 1')")
        shot(page, "federation")
        assert page.errors == []
    finally:
        moto.stop()


def test_pki_pages_list_authorities_and_show_one_with_its_actions(page, served, scaikey):
    admin = {**ADMIN, "scopes": ADMIN["scopes"] + ("pki:admin", "pki:issue")}
    bearer = {"Authorization": f"Bearer {scaikey.mint(**admin)}"}
    created = requests.post(served.url + "/v1/pki/ca", headers=bearer, timeout=60, json={
        "ca_type": "root", "name": "ui-root", "common_name": "UI Test Root", "key_type": "ec", "key_bits": 256,
        "ttl": "8760h"})
    assert created.status_code == 201, created.text
    sign_in(page, served, scaikey, admin)
    page.click("nav >> text=PKI")
    page.click("a:has-text('ui-root')")
    page.wait_for_selector("h1:has-text('Certificate authorities: ui-root')")
    assert "UI Test Root" in page.inner_text("#view")
    assert "Regenerate CRL" in page.inner_text("#view")
    page.click("button:has-text('Regenerate CRL')")
    page.wait_for_selector("pre.ok")
    page.click(".tabs >> text=Certificate roles")
    page.wait_for_selector("h1:has-text('Certificate roles')")
    shot(page, "pki")
    assert page.errors == []


def test_lifecycle_pages_show_rotation_policies_with_their_history_and_actions(page, served, scaikey):
    admin = {**ADMIN, "scopes": ADMIN["scopes"] + ("admin", "secrets:rotate")}
    bearer = {"Authorization": f"Bearer {scaikey.mint(**admin)}"}
    created = requests.post(served.url + "/v1/rotation/policies", headers=bearer, timeout=30,
                            json={"name": "ui-quarterly", "interval": "90d"})
    assert created.status_code == 201, created.text
    sign_in(page, served, scaikey, admin)
    page.click("nav >> text=Lifecycle")
    page.click("a:has-text('ui-quarterly')")
    page.wait_for_selector("h2:has-text('History')")
    page.click("button:has-text('Disable')")
    page.wait_for_selector("pre.ok")
    page.click(".tabs >> text=Webhooks")
    page.wait_for_selector("h1:has-text('Webhooks')")
    shot(page, "lifecycle")
    assert page.errors == []
