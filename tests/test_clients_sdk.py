"""scaivault_sdk against a real `scaivault serve`: the sync and async clients run the same
scenarios; retries of a real 429 and a real 503; client credentials against the ScaiKey stand-in."""
from __future__ import annotations

import asyncio
import inspect
import secrets as pyrandom

import pg8000.native
import pytest

from scaivault.config import DatabaseURL
from scaivault_sdk import (AuthenticationError, AuthorizationError, ConflictError, NotFoundError, RateLimitError,
                           RetryPolicy, ScaiVaultClient, ScaiVaultConnectionError, ServiceUnavailableError,
                           SyncScaiVaultClient, ValidationError)
from scaivault_sdk.models import Secret, SecretType
from tests.clients_support import admin_token, new_tenant, serve, user_token, vault  # noqa: F401
from tests.foundation_support import free_port

pytestmark = pytest.mark.slow

FAST = RetryPolicy(max_retries=3, backoff_base=0.05, backoff_max=0.2, max_wait=5)


class Both:
    """Runs one scenario with either client: `run(lambda c: c.secrets.read(...))` awaits when async."""

    def __init__(self, kind: str, url: str, token: str, **kwargs):
        self.kind = kind
        if kind == "sync":
            self.client = SyncScaiVaultClient(url, token, retry=kwargs.pop("retry", FAST), **kwargs)
        else:
            self.client = ScaiVaultClient(url, token, retry=kwargs.pop("retry", FAST), **kwargs)
            self.loop = asyncio.new_event_loop()

    def run(self, fn):
        result = fn(self.client)
        if self.kind == "async":
            if inspect.isasyncgen(result):
                async def collect():
                    return [item async for item in result]
                return self.loop.run_until_complete(collect())
            return self.loop.run_until_complete(result)
        return list(result) if inspect.isgenerator(result) else result

    def close(self):
        if self.kind == "sync":
            self.client.close()
        else:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def make(request, vault):
    made = []

    def factory(token, url=None, **kwargs):
        both = Both(request.param, url or vault.url, token, **kwargs)
        made.append(both)
        return both

    yield factory
    for both in made:
        both.close()


def test_write_read_versions_metadata_delete_restore(make, scaikey):
    c = make(admin_token(scaikey, new_tenant()))
    info = c.run(lambda v: v.secrets.write("apps/web/db", {"user": "web", "password": "pw-1"}, secret_type="json",
                                           metadata={"description": "web db", "tags": ["prod"]}))
    assert info.version == 1 and info.path == "apps/web/db"
    assert c.run(lambda v: v.secrets.write("apps/web/db", {"user": "web", "password": "pw-2"}, cas=1)).version == 2
    secret = c.run(lambda v: v.secrets.read("apps/web/db"))
    assert isinstance(secret, Secret) and secret.data == {"user": "web", "password": "pw-2"}
    assert secret.version == 2 and secret.secret_type is SecretType.JSON and secret.metadata.tags == ["prod"]
    assert c.run(lambda v: v.secrets.read("apps/web/db", version=1)).data["password"] == "pw-1"
    versions = c.run(lambda v: v.secrets.versions("apps/web/db"))
    assert [x.version for x in versions.versions] == [2, 1] and versions.current_version == 2
    c.run(lambda v: v.secrets.update_metadata("apps/web/db", {"owner": "team-web"}))
    detail = c.run(lambda v: v.secrets.read_metadata("apps/web/db"))
    assert detail.version_count == 2 and detail.metadata.owner == "team-web" and not hasattr(detail, "data")
    deleted = c.run(lambda v: v.secrets.delete("apps/web/db"))
    assert deleted.permanent is False and deleted.recoverable_until
    with pytest.raises(NotFoundError) as caught:
        c.run(lambda v: v.secrets.read("apps/web/db"))
    assert caught.value.code == "secret_not_found" and caught.value.status == 404
    assert caught.value.request_id.startswith("req_")
    assert c.run(lambda v: v.secrets.restore("apps/web/db")).version == 2
    assert c.run(lambda v: v.secrets.read("apps/web/db")).data["password"] == "pw-2"


def test_a_cas_mismatch_is_a_conflict_and_bad_input_a_validation_error(make, scaikey):
    c = make(admin_token(scaikey, new_tenant()))
    c.run(lambda v: v.secrets.write("cas/one", {"v": "1"}))
    with pytest.raises(ConflictError) as caught:
        c.run(lambda v: v.secrets.write("cas/one", {"v": "2"}, cas=0))
    assert caught.value.code == "version_conflict"
    with pytest.raises(ValidationError) as bad:
        c.run(lambda v: v.secrets.write("cas/one", {"v": "2"}, max_versions=0))
    assert bad.value.status == 422 and "options.max_versions" in bad.value.details["fields"]
    with pytest.raises(ValidationError) as bad_path:
        c.run(lambda v: v.secrets.read("../etc/passwd"))
    assert bad_path.value.status == 400


def test_list_iterates_over_every_page_and_batch_read_maps_paths(make, scaikey):
    c = make(admin_token(scaikey, new_tenant()))
    for i in range(7):
        c.run(lambda v: v.secrets.write(f"many/s{i:02d}", {"i": str(i)}))
    listed = c.run(lambda v: v.secrets.list("many/", page_size=3))
    assert [s.path for s in listed] == [f"many/s{i:02d}" for i in range(7)]
    assert len(c.run(lambda v: v.secrets.list("many/", page_size=3, max_items=4))) == 4
    page = c.run(lambda v: v.secrets.list_page("", recursive=False))
    assert page.folders == ["many/"] and page.secrets == []
    batch = c.run(lambda v: v.secrets.batch_read(["many/s01", "many/s05", "many/none"]))
    assert batch.secrets["many/s05"].data == {"i": "5"}
    assert batch.errors["many/none"].code == "secret_not_found"


def test_policies_tokens_audit_and_whoami(make, scaikey):
    tenant = new_tenant()
    c = make(admin_token(scaikey, tenant))
    me = c.run(lambda v: v.auth.whoami())
    assert me.tenant_id == tenant and "tenant_admin" in me.roles
    policy = c.run(lambda v: v.policies.create("readers", [{"path_pattern": "apps/*", "permissions": ["read"]}]))
    assert policy.rules[0].path_pattern == "apps/*"
    binding = c.run(lambda v: v.policies.bind(policy.id, "user", "user:reader@example.com"))
    assert [b.id for b in c.run(lambda v: v.policies.bindings(policy.id))] == [binding.id]
    assert [p.id for p in c.run(lambda v: v.policies.list())] == [policy.id]
    verdict = c.run(lambda v: v.policies.test("apps/x", "read", identity_id="user:reader@example.com"))
    assert verdict.allowed is True
    assert c.run(lambda v: v.policies.update(policy.id, description="changed")).description == "changed"
    assert c.run(lambda v: v.policies.delete(policy.id, force=True)).deleted is True
    created = c.run(lambda v: v.tokens.create("ci", ["secrets:read"], expires_in="1d"))
    assert created.token.startswith("skt_")
    assert created.id in [t.id for t in c.run(lambda v: v.tokens.list())]
    assert c.run(lambda v: v.tokens.revoke(created.id)).status == "revoked"
    c.run(lambda v: v.secrets.write("audited/one", {"k": "v"}))
    entries = c.run(lambda v: v.audit.query(path_prefix="audited/", page_size=1))
    assert [e.action for e in entries] == ["write"] and entries[0].secret_path == "audited/one"


def test_401_403_and_an_unreachable_server_raise_the_named_errors(make, scaikey, vault):
    tenant = new_tenant()
    with pytest.raises(AuthenticationError) as unauth:
        make("not-a-token").run(lambda v: v.secrets.read("x/y"))
    assert unauth.value.status == 401
    with pytest.raises(AuthorizationError) as denied:
        make(user_token(scaikey, tenant)).run(lambda v: v.secrets.read("x/y"))
    assert denied.value.code == "access_denied"
    dead = make("t", url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ScaiVaultConnectionError) as down:
        dead.run(lambda v: v.secrets.write("x/y", {"a": "b"}))
    assert down.value.maybe_applied is False      # refused at connect: nothing was sent


def test_a_429_from_the_real_server_is_retried_after_retry_after(base_env, scaikey):
    limited = serve(base_env, RATE_LIMITS="secrets:read: {rate: 1, window: 1s}")
    try:
        token = admin_token(scaikey, new_tenant())
        seen = []
        with SyncScaiVaultClient(limited.url, token, retry=FAST,
                                 on_retry=lambda n, delay, resp, exc: seen.append((resp.status_code, delay))) as sync:
            sync.secrets.write("rl/one", {"k": "v"})
            assert sync.secrets.read("rl/one").data == {"k": "v"}
            assert sync.secrets.read("rl/one").data == {"k": "v"}     # 429, waits Retry-After, then 200
        assert seen and seen[0][0] == 429 and seen[0][1] >= 1.0

        async def scenario():
            hits = []
            async with ScaiVaultClient(limited.url, token, retry=FAST,
                                       on_retry=lambda n, d, resp, exc: hits.append(resp.status_code)) as client:
                await client.secrets.read("rl/one")
                await client.secrets.read("rl/one")
            no_retry = RetryPolicy(max_retries=0)
            async with ScaiVaultClient(limited.url, token, retry=no_retry) as client:
                with pytest.raises(RateLimitError) as caught:
                    await client.secrets.read("rl/one")
                    await client.secrets.read("rl/one")
            return hits, caught.value

        hits, error = asyncio.run(scenario())
        assert hits and set(hits) == {429}
        assert error.retry_after >= 1 and error.code == "rate_limited"
    finally:
        limited.stop()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_503_from_the_real_server_is_retried_for_reads_and_not_for_writes(kind, vault, scaikey, base_env):
    """The audit table goes away (fail-closed: 503 audit_unavailable) and comes back during the backoff."""
    u = DatabaseURL.parse("DATABASE_URL", base_env["DATABASE_URL"])
    db = pg8000.native.Connection(user=u.user, host=u.host, port=u.port, database=u.database)
    token = admin_token(scaikey, new_tenant())
    seen = []

    def restore_audit(attempt, delay, response, exc):
        seen.append(response.status_code)
        db.run("ALTER TABLE audit_log_away RENAME TO audit_log")

    Both(kind, vault.url, token).run(lambda v: v.secrets.write("svc/one", {"k": "v1"}))
    client = Both(kind, vault.url, token, on_retry=restore_audit)
    try:
        db.run("ALTER TABLE audit_log RENAME TO audit_log_away")
        assert client.run(lambda v: v.secrets.read("svc/one")).data == {"k": "v1"}
        assert seen == [503]
        db.run("ALTER TABLE audit_log RENAME TO audit_log_away")
        with pytest.raises(ServiceUnavailableError) as caught:    # a plain write may have landed: no retry
            client.run(lambda v: v.secrets.write("svc/one", {"k": "v2"}))
        assert caught.value.code == "audit_unavailable" and seen == [503]
        assert client.run(lambda v: v.secrets.write("svc/one", {"k": "v2"}, cas=1)).version == 2  # cas: retried
        assert seen == [503, 503]
    finally:
        if db.run("SELECT to_regclass('audit_log_away') IS NOT NULL")[0][0]:
            db.run("ALTER TABLE audit_log_away RENAME TO audit_log")
        db.close()
        client.close()


def test_client_credentials_are_fetched_from_scaikey_and_refreshed_before_expiry(vault, scaikey):
    tenant = new_tenant()
    client_id = "app_" + pyrandom.token_hex(4)
    scaikey.add_client(client_id, "s3cret-" + client_id, scopes=("secrets:read", "secrets:write"))
    with SyncScaiVaultClient(vault.url, client_id=client_id, client_secret="s3cret-" + client_id,
                             scaikey_url=scaikey.url, tenant_id=tenant, retry=FAST) as client:
        me = client.auth.whoami()
        assert me.identity_type == "service_account" and me.identity_id.startswith("sa:")
        client.auth.whoami()
        assert client.credentials.fetches == 1                  # cached
        client.credentials._renew_at = 0                       # as if the token were about to expire
        client.auth.whoami()
        assert client.credentials.fetches == 2
    with pytest.raises(AuthenticationError) as refused:
        SyncScaiVaultClient(vault.url, client_id=client_id, client_secret="wrong", scaikey_url=scaikey.url,
                            retry=FAST).auth.whoami()
    assert refused.value.code == "invalid_client"


class SilentServer:
    """Accepts connections, reads the request, closes without answering: 'the write may have landed'."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = 0
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if conn.recv(65536):
                    self.requests += 1

    def close(self):
        self.running = False
        self.sock.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_broken_connection_repeats_reads_but_never_a_plain_write(kind):
    server = SilentServer()
    try:
        client = Both(kind, server.url, "t")
        with pytest.raises(ScaiVaultConnectionError) as write:
            client.run(lambda v: v.secrets.write("a/b", {"k": "v"}))
        assert write.value.maybe_applied is True and server.requests == 1
        with pytest.raises(ScaiVaultConnectionError) as read:
            client.run(lambda v: v.secrets.read("a/b"))
        assert read.value.maybe_applied is False and server.requests == 1 + 1 + FAST.max_retries
        with pytest.raises(ScaiVaultConnectionError) as cas:
            client.run(lambda v: v.secrets.write("a/b", {"k": "v"}, cas=3))
        assert cas.value.maybe_applied is False and server.requests == 2 * (1 + FAST.max_retries) + 1
        client.close()
    finally:
        server.close()
