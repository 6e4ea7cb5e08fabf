"""`scaivault import vault|aws-sm|dotenv` against a real `scaivault serve`, a real OpenBao dev server
holding a few hundred KV v2 secrets with several versions each, moto's Secrets Manager over HTTP,
and a `.env` file with quoting, comments, `export` prefixes and multi-line values.

Each importer: a dry run writes nothing; the first run imports everything with its history; a rerun
writes nothing; a change at the source is picked up by the next run; a change made in ScaiVault is
never overwritten without --overwrite."""
from __future__ import annotations

import json

import pytest

from scaivault_sdk import SyncScaiVaultClient
from tests.clients_support import vault  # noqa: F401
from tests.fakes.servers import OPENBAO_ROOT_TOKEN, MotoServer, start_openbao
from tests.test_clients_cli import env, run, tenant  # noqa: F401  (the served instance's admin and tenant)

pytestmark = pytest.mark.slow

TEAMS = ("billing", "search", "web", "mobile")
PER_TEAM = 50            # 200 secrets in OpenBao
VERSIONS = 3


@pytest.fixture(scope="module")
def sv(vault, env):
    with SyncScaiVaultClient(vault.url, env["SCAIVAULT_TOKEN"]) as client:
        yield client


def ok_json(args, env, input=None) -> dict:
    result = run(args + ["--json"], env, input)
    assert result.code == 0, (args, result)
    return result.json()


def every_path(sv, prefix: str) -> list[str]:
    return [s.path for s in sv.secrets.list(prefix)]


# ------------------------------------------------------------------ OpenBao KV v2
def vault_value(team: str, i: int, version: int) -> dict:
    return {"user": f"{team}-{i}", "password": f"pw-{team}-{i}-v{version}", "port": 5432 + i}


@pytest.fixture(scope="module")
def bao(tmp_path_factory):
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    kv = server.client.secrets.kv.v2
    try:
        for team in TEAMS:
            for i in range(PER_TEAM):
                path = f"apps/{team}/svc-{i:02d}" if i % 5 else f"apps/{team}/deep/svc-{i:02d}"
                for version in range(1, VERSIONS + 1):
                    kv.create_or_update_secret(path=path, secret=vault_value(team, i, version), mount_point="secret")
        kv.update_metadata(path="apps/web/svc-01", mount_point="secret", max_versions=7,
                           custom_metadata={"owner": "team-web", "tags": "prod, pci", "ticket": "OPS-1"})
        kv.delete_latest_version_of_secret(path="apps/web/svc-02", mount_point="secret")    # current deleted
        kv.destroy_secret_versions(path="apps/web/svc-03", versions=[2], mount_point="secret")
        kv.create_or_update_secret(path="elsewhere/x", secret={"a": "b"}, mount_point="secret")
        yield server
    finally:
        server.stop()


def test_vault_import_replays_history_then_reruns_as_a_no_op(bao, env, sv, tmp_path):
    token_file = tmp_path / "vault-token"
    token_file.write_text(OPENBAO_ROOT_TOKEN + "\n")
    args = ["import", "vault", "--addr", bao.url, "--token", f"@{token_file}", "--mount", "secret",
            "--prefix", "apps", "--to", "migrated/vault"]
    total = len(TEAMS) * PER_TEAM
    expected_versions = total * VERSIONS - 3 - 1      # svc-02 skipped (current deleted); svc-03 lost v2

    dry = run(args + ["--dry-run"], env)
    assert dry.code == 0, dry
    assert "would write migrated/vault/billing/deep/svc-00 (3 versions, created)" in dry.out
    assert f"would write {total - 1} ({expected_versions} version(s))" in dry.out
    assert "pw-" not in dry.out + dry.err                              # paths and counts, never values
    assert every_path(sv, "migrated/vault/") == []

    first = ok_json(args, env)
    assert (first["written"], first["unchanged"], first["skipped"], first["failed"]) == (total - 1, 0, 1, 0)
    assert first["versions_written"] == expected_versions
    assert {"path": "migrated/vault/web/svc-02", "status": "skipped", "versions": 0,
            "detail": "deleted at the source"} in first["results"]
    assert "pw-" not in json.dumps(first)
    assert len(every_path(sv, "migrated/vault/")) == total - 1
    history = sv.secrets.versions("migrated/vault/search/svc-07")
    assert sorted(v.version for v in history.versions) == [1, 2, 3]
    for version in (1, 2, 3):                                           # oldest first: history mirrors Vault's
        assert sv.secrets.read("migrated/vault/search/svc-07", version=version).data == vault_value("search", 7,
                                                                                                    version)
    assert sv.secrets.read("migrated/vault/web/svc-03", version=2).data == vault_value("web", 3, 3)
    tagged = sv.secrets.read("migrated/vault/web/svc-01")
    meta = tagged.metadata.model_dump()
    assert meta["owner"] == "team-web" and meta["tags"] == ["prod", "pci"] and meta["ticket"] == "OPS-1"
    assert meta["import_source"] == "vault:secret/apps/web/svc-01" and meta["import_source_version"] == "3"
    assert tagged.secret_type.value == "json"                           # `port` is a number
    assert sv.secrets.read_metadata("migrated/vault/web/svc-01").max_versions == 7

    second = ok_json(args[:4] + ["--token", "-"] + args[6:], env, input=OPENBAO_ROOT_TOKEN + "\n")
    assert (second["written"], second["unchanged"], second["versions_written"]) == (0, total - 1, 0)

    kv = bao.client.secrets.kv.v2
    for version in (4, 5):
        kv.create_or_update_secret(path="apps/billing/svc-04", secret=vault_value("billing", 4, version),
                                   mount_point="secret")
    kv.create_or_update_secret(path="apps/mobile/new-one", secret={"k": "v"}, mount_point="secret")
    kv.update_metadata(path="apps/search/svc-09", custom_metadata={"owner": "search"}, mount_point="secret")
    third = ok_json(args, {**env, "VAULT_TOKEN": OPENBAO_ROOT_TOKEN})
    changed = {r["path"]: (r["versions"], r["detail"]) for r in third["results"] if r["status"] == "written"}
    assert changed == {"migrated/vault/billing/svc-04": (2, "updated"), "migrated/vault/mobile/new-one": (1, "created"),
                       "migrated/vault/search/svc-09": (0, "metadata")}
    assert [sv.secrets.read("migrated/vault/billing/svc-04", version=v).data["password"] for v in (4, 5)] == \
        ["pw-billing-4-v4", "pw-billing-4-v5"]
    assert sv.secrets.read("migrated/vault/search/svc-09").metadata.owner == "search"

    # a change made in ScaiVault is never silently overwritten
    sv.secrets.write("migrated/vault/web/svc-06", {"user": "changed-in-scaivault"}, cas=3)
    kv.create_or_update_secret(path="apps/web/svc-06", secret=vault_value("web", 6, 4), mount_point="secret")
    fourth = ok_json(args, env)
    skipped = {r["path"]: r["detail"] for r in fourth["results"] if r["status"] == "skipped"}
    assert fourth["written"] == 0 and skipped["migrated/vault/web/svc-06"] == (
        "changed in ScaiVault since the last import (--overwrite replaces it)") and len(skipped) == 2
    assert sv.secrets.read("migrated/vault/web/svc-06").data == {"user": "changed-in-scaivault"}
    one = args[:-4] + ["--prefix", "apps/web/svc-06", "--to", "migrated/vault/web/svc-06", "--overwrite"]
    forced = ok_json(one, env)                     # a secret's own path as --prefix: --to names its destination
    assert (forced["written"], forced["versions_written"]) == (1, 1)
    assert sv.secrets.read("migrated/vault/web/svc-06").data == vault_value("web", 6, 4)


def test_vault_import_keeps_paths_without_to_and_reports_source_errors(bao, env, sv):
    args = ["import", "vault", "--addr", bao.url, "--prefix", "elsewhere/"]
    first = ok_json(args, {**env, "VAULT_TOKEN": OPENBAO_ROOT_TOKEN})
    assert [r["path"] for r in first["results"]] == ["elsewhere/x"]
    assert sv.secrets.read("elsewhere/x").data == {"a": "b"}
    literal = run(["import", "vault", "--token", OPENBAO_ROOT_TOKEN, "--prefix", "elsewhere/"],
                  {**env, "VAULT_ADDR": bao.url})
    assert literal.code == 0 and "unchanged 1" in literal.out and "visible in the process list" in literal.err
    refused = run(args, {**env, "VAULT_TOKEN": "not-a-token"})
    assert refused.code == 3 and "Vault refused" in refused.err and "not-a-token" not in refused.err
    missing = run(args, env)
    assert missing.code == 2 and "no Vault token" in missing.err
    nothing = run(["import", "vault", "--addr", bao.url, "--prefix", "no/such/folder"],
                  {**env, "VAULT_TOKEN": OPENBAO_ROOT_TOKEN})
    assert nothing.code == 4 and "no secrets under secret/no/such/folder" in nothing.err
    bao.client.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    bao.client.secrets.kv.v1.create_or_update_secret(path="a", secret={"k": "v"}, mount_point="kv1")
    v1 = run(["import", "vault", "--addr", bao.url, "--mount", "kv1"], {**env, "VAULT_TOKEN": OPENBAO_ROOT_TOKEN})
    assert v1.code == 4 and "is kv1 a KV v2 mount?" in v1.err
    no_server = run(["import", "vault", "--addr", bao.url, "--prefix", "elsewhere/"],
                     {**env, "VAULT_TOKEN": OPENBAO_ROOT_TOKEN, "SCAIVAULT_TOKEN": ""})
    assert no_server.code == 2                                           # not logged in to ScaiVault


# ------------------------------------------------------------------ AWS Secrets Manager (moto)
@pytest.fixture(scope="module")
def moto():
    server = MotoServer().start()
    try:
        sm = server.client("secretsmanager", region="eu-west-1")
        for i in range(40):
            name = f"prod/api/key-{i:02d}"
            sm.create_secret(Name=name, SecretString=json.dumps({"key": f"k-{i}-1"}), Description=f"API key {i}",
                             Tags=[{"Key": "team", "Value": "api"}, {"Key": "cost-centre", "Value": str(i)}])
            sm.put_secret_value(SecretId=name, SecretString=json.dumps({"key": f"k-{i}-2"}))
        sm.create_secret(Name="prod/plain", SecretString="just a string", Tags=[{"Key": "note", "Value": "x" * 70}])
        sm.create_secret(Name="prod/Mixed.Case", SecretString=json.dumps({"a": "b"}))
        sm.create_secret(Name="prod/blob", SecretBinary=b"\x00\x01binary")
        sm.create_secret(Name="staging/other", SecretString="{}")
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch):
    """The standard credential chain (the environment), as a user would have it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_aws_sm_import_carries_previous_and_current_then_reruns_as_a_no_op(moto, env, sv, aws_credentials):
    args = ["import", "aws-sm", "--region", "eu-west-1", "--endpoint-url", moto.url, "--prefix", "prod/"]
    dry = ok_json(args + ["--dry-run"], env)
    assert (dry["written"], dry["versions_written"]) == (43, 83) and every_path(sv, "prod/") == []

    first = ok_json(args, env)
    assert (first["written"], first["failed"], first["versions_written"]) == (43, 0, 83)
    assert sorted(v.version for v in sv.secrets.versions("prod/api/key-07").versions) == [1, 2]
    assert sv.secrets.read("prod/api/key-07", version=1).data == {"key": "k-7-1"}
    current = sv.secrets.read("prod/api/key-07")
    assert current.data == {"key": "k-7-2"}
    meta = current.metadata.model_dump()
    assert meta["description"] == "API key 7" and meta["aws_tags"] == {"team": "api", "cost-centre": "7"}
    assert sorted(meta["tags"]) == ["cost-centre=7", "team=api"] and meta["import_source"] == "aws-sm:eu-west-1:prod/api/key-07"
    assert sv.secrets.read("prod/plain").data == {"value": "just a string"}
    plain_meta = sv.secrets.read("prod/plain").metadata.model_dump()
    assert plain_meta["aws_tags"] == {"note": "x" * 70} and plain_meta["tags"] == []     # too long for a tag
    assert sv.secrets.read("prod/blob").data == {"value_base64": "AAFiaW5hcnk="}
    assert every_path(sv, "staging/") == []
    assert sv.secrets.read("prod/mixed-case").data == {"a": "b"}               # names become valid paths

    second = ok_json(args, env)
    assert (second["written"], second["unchanged"]) == (0, 43)

    sm = moto.client("secretsmanager", region="eu-west-1")
    sm.put_secret_value(SecretId="prod/api/key-03", SecretString=json.dumps({"key": "k-3-3"}))
    sm.update_secret(SecretId="prod/plain", Description="now described")
    third = ok_json(args, env)
    assert {r["path"]: (r["versions"], r["detail"]) for r in third["results"]} == {
        "prod/api/key-03": (1, "updated"), "prod/plain": (0, "metadata")}
    assert [sv.secrets.read("prod/api/key-03", version=v).data for v in (1, 2, 3)] == \
        [{"key": "k-3-1"}, {"key": "k-3-2"}, {"key": "k-3-3"}]

    moved = ok_json(["import", "aws-sm", "--region", "eu-west-1", "--endpoint-url", moto.url, "--prefix", "prod/api/",
                     "--to", "aws/api", "--dry-run"], env)
    assert [r["path"] for r in moved["results"]][:2] == ["aws/api/key-00", "aws/api/key-01"]


def test_aws_sm_import_without_credentials_exits_2(moto, env, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = run(["import", "aws-sm", "--region", "eu-west-1", "--endpoint-url", moto.url], env)
    assert result.code == 2 and "no AWS credentials" in result.err
    profile = run(["import", "aws-sm", "--region", "eu-west-1", "--profile", "nope"], env)
    assert profile.code == 2 and "no AWS profile named 'nope'" in profile.err


# ------------------------------------------------------------------ .env
DOTENV = """\
# a full-line comment
export DATABASE_URL=postgres://app:s3cr3t@db:5432/app
API_KEY='single # quoted $NOT_EXPANDED'
WEBHOOK="https://hooks.example/t?a=1&b=2"   # trailing comment
ESCAPED="tab\\there \\"quoted\\" back\\\\slash"
PLAIN=value#not-a-comment
EMPTY=
EMPTY_QUOTED=""
PRIVATE_KEY="-----BEGIN KEY-----
line two
-----END KEY-----"
  export   SPACED = spaced-value
API_KEY=second-wins
KEPT="${DATABASE_URL}/not-expanded"
"""

EXPECTED = {
    "DATABASE_URL": "postgres://app:s3cr3t@db:5432/app",
    "API_KEY": "second-wins",
    "WEBHOOK": "https://hooks.example/t?a=1&b=2",
    "ESCAPED": 'tab\there "quoted" back\\slash',
    "PLAIN": "value#not-a-comment",
    "EMPTY": "",
    "EMPTY_QUOTED": "",
    "PRIVATE_KEY": "-----BEGIN KEY-----\nline two\n-----END KEY-----",
    "SPACED": "spaced-value",
    "KEPT": "${DATABASE_URL}/not-expanded",
}


def test_dotenv_parser_handles_quoting_comments_export_and_multiline():
    from scaivault.importers.dotenv_file import parse

    parsed = parse(DOTENV)
    assert parsed.values == EXPECTED
    assert parsed.warnings == ["line 13: API_KEY repeats line 3; the last one wins"]
    assert parse("LONE\nA=1\n").warnings == ["line 1: LONE has no '=' and was ignored"]


def test_dotenv_import_as_one_secret_then_rerun_then_change(env, sv, tmp_path):
    path = tmp_path / ".env"
    path.write_text(DOTENV)
    args = ["import", "dotenv", str(path), "--path", "environments/prod/web"]
    dry = run(args + ["--dry-run"], env)
    assert dry.code == 0 and "would write environments/prod/web (1 version, created)" in dry.out
    assert "s3cr3t" not in dry.out + dry.err and "API_KEY repeats line 3" in dry.err
    assert every_path(sv, "environments/") == []

    first = ok_json(args, env)
    assert (first["written"], first["versions_written"]) == (1, 1)
    secret = sv.secrets.read("environments/prod/web")
    assert secret.data == EXPECTED and secret.metadata.model_dump()["import_source"] == "dotenv:.env"
    assert ok_json(args, env)["unchanged"] == 1

    path.write_text(DOTENV + 'NEW_ONE="added"\n')
    third = ok_json(args, env)
    assert (third["written"], third["versions_written"]) == (1, 1)
    assert sv.secrets.read("environments/prod/web").data == {**EXPECTED, "NEW_ONE": "added"}
    assert sv.secrets.read("environments/prod/web").version == 2


def test_dotenv_split_stdin_and_parse_errors(env, sv, tmp_path):
    args = ["import", "dotenv", "-", "--path", "environments/dev/api", "--split"]
    first = ok_json(args, env, input="A=1\nexport B='two'\n")
    assert first["written"] == 2
    assert sv.secrets.read("environments/dev/api/b").data == {"value": "two"}
    assert ok_json(args, env, input="A=1\nexport B='two'\n")["unchanged"] == 2
    changed = ok_json(args, env, input="A=1\nB=three\n")
    assert [(r["path"], r["detail"]) for r in changed["results"]] == [("environments/dev/api/b", "updated")]
    broken = tmp_path / "broken.env"
    broken.write_text('OK=1\nBAD="unterminated\nLATER=2\n')
    result = run(["import", "dotenv", str(broken), "--path", "environments/broken"], env)
    assert result.code == 5 and "cannot parse line(s) 2" in result.err
    assert every_path(sv, "environments/broken") == []
    assert run(["import", "dotenv", str(tmp_path / "absent.env"), "--path", "x"], env).code == 1


def test_a_failed_write_makes_the_exit_code_1_and_the_rest_still_imports(env, sv, tmp_path):
    path = tmp_path / "mixed.env"
    path.write_text("GOOD=1\nALSO_GOOD=2\n")
    sv.secrets.write("environments/mixed/good", {"other": "value"})
    sv.secrets.delete("environments/mixed/good")                          # soft-deleted: a write is refused
    result = run(["import", "dotenv", str(path), "--path", "environments/mixed", "--split", "--json"], env)
    summary = result.json()
    assert result.code == 1 and (summary["written"], summary["failed"]) == (1, 1), result
    assert sv.secrets.read("environments/mixed/also_good").data == {"value": "2"}

    collide = run(["import", "dotenv", "-", "--path", "environments/collide", "--split", "--json"], env,
                  input="A_B=upper\na_b=lower\n")
    results = collide.json()["results"]
    assert collide.code == 1 and [(r["path"], r["status"]) for r in results] == [
        ("environments/collide/a_b", "failed"), ("environments/collide/a_b", "written")]
    assert results[0]["detail"] == "another source secret maps to this path"
    assert sv.secrets.read("environments/collide/a_b").data == {"value": "upper"}


def test_a_concurrent_change_between_read_and_write_is_refused_by_check_and_set(sv):
    """The importer's batch read saw no secret; someone writes it before the import's write lands."""
    from scaivault.importers import Entry, Importer, SourceSecret
    from scaivault.importers.engine import Version

    def old_version():
        sv.secrets.write("race/target", {"by": "someone else"})           # lands between read and write
        return {"v": "1"}

    source = SourceSecret(path="race/target", origin="test:race", current={"v": "2"},
                          versions=[Version("1", old_version), Version("2", lambda: {"v": "2"})])
    summary = Importer(sv).run([Entry("race/target", lambda: source)])
    assert [(o.status, o.versions) for o in summary.outcomes] == [("failed", 0)]
    assert "check-and-set" in summary.outcomes[0].detail
    assert sv.secrets.read("race/target").data == {"by": "someone else"}


def test_progress_bar_only_on_a_terminal(vault, env, tmp_path):
    """click's progress bar goes to stderr when it is a TTY, and nowhere otherwise."""
    import os
    import pty
    import subprocess

    from tests.foundation_support import CLI, child_env

    dotenv = tmp_path / "bar.env"
    dotenv.write_text("".join(f"K{i}=v{i}\n" for i in range(30)))
    args = CLI + ["import", "dotenv", str(dotenv), "--path", "progress/tty", "--split"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, env=child_env(env), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0 and b"importing" in seen and b"100%" in seen
    assert b"importing" not in out and b"30 secret(s)" in out
    again = subprocess.run(args, env=child_env(env), capture_output=True, timeout=60)
    assert again.returncode == 0 and again.stderr == b"" and b"unchanged 30" in again.stdout


def test_an_import_longer_than_the_write_limit_waits_it_out(base_env, scaikey):
    """A served instance allowing 5 writes per 2 s, and an SDK client that never retries a 429 itself:
    the importer waits for Retry-After and finishes with every secret written once."""
    from scaivault.importers import Entry, Importer, SourceSecret
    from scaivault.importers.engine import Version
    from scaivault_sdk.calls import RetryPolicy
    from tests.clients_support import admin_token, new_tenant, serve

    limited = serve(base_env, RATE_LIMITS="secrets:write: {rate: 5, window: 2s}")
    waits: list[float] = []
    try:
        with SyncScaiVaultClient(limited.url, admin_token(scaikey, new_tenant()),
                                 retry=RetryPolicy(max_retries=0)) as client:
            def entry(i):
                data = {"n": str(i)}
                return Entry(f"limited/s{i:02d}", lambda: SourceSecret(
                    path=f"limited/s{i:02d}", origin=f"test:{i}", current=data, versions=[Version(None, lambda: data)]))
            summary = Importer(client, on_wait=waits.append).run([entry(i) for i in range(12)])
            assert (summary.count("written"), summary.count("failed")) == (12, 0)
            assert waits and all(0 < w <= 2.5 for w in waits)
            assert [s.path for s in client.secrets.list("limited/")] == [f"limited/s{i:02d}" for i in range(12)]
    finally:
        limited.stop()
