"""The `scaivault` client commands against a real `scaivault serve`: every command in its human
and --json forms, the documented exit codes from real 401/403/404/422 answers, configuration in
~/.scaivault/config.json, stdin-fed secrets that never reach the process list, completion, --help."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from scaivault.cli import build_cli, main
from tests.clients_support import admin_token, new_tenant, user_token, vault  # noqa: F401
from tests.foundation_support import CLI, child_env, free_port

pytestmark = pytest.mark.slow


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run(args: list[str], env: dict, input: str | None = None) -> Ran:
    """`scaivault ARGS` in this process (the real main(): click tree, SDK, HTTP to the served instance)."""
    with CliRunner().isolation(input=input) as (out, err, _):
        try:
            code = main(args, env)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Ran(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture(scope="module")
def tenant():
    return new_tenant()


@pytest.fixture(scope="module")
def env(vault, scaikey, tenant, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return {"HOME": str(home), "SCAIVAULT_URL": vault.url, "SCAIVAULT_TOKEN": admin_token(scaikey, tenant)}


def ok(args, env, input=None) -> Ran:
    result = run(args, env, input)
    assert result.code == 0, (args, result)
    return result


# ------------------------------------------------------------------ configuration and auth
def test_config_set_and_auth_login_keep_a_0600_file_that_the_environment_overrides(vault, scaikey, tenant, tmp_path):
    home = {"HOME": str(tmp_path)}
    ok(["config", "set", "base_url", vault.url + "/"], home)
    path = tmp_path / ".scaivault" / "config.json"
    assert json.loads(path.read_text()) == {"base_url": vault.url}
    token = admin_token(scaikey, tenant)
    login = ok(["auth", "login"], home, input=token + "\n")            # the token never on the command line
    assert "logged in as user:admin-" in login.out and token not in login.out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    assert "readable by others" in ok(["config", "show"], home).err
    path.chmod(0o600)
    assert json.loads(path.read_text())["token"] == token
    assert ok(["auth", "whoami", "--json"], home).json()["tenant_id"] == tenant
    human = ok(["auth", "whoami"], home).out
    assert f"tenant    {tenant}" in human and "tenant_admin" in human
    shown = ok(["config", "show", "--json"], home).json()
    assert shown["base_url"] == vault.url and token not in json.dumps(shown)
    assert "base_url" in ok(["config", "show"], home).out
    dead = f"http://127.0.0.1:{free_port()}"
    overridden = run(["auth", "whoami"], {**home, "SCAIVAULT_URL": dead})
    assert overridden.code == 1 and "connection_error" in overridden.err
    assert run(["auth", "login", "--token", "not-a-token"], home).code == 2
    assert "logged in" in ok(["auth", "login", "--token", token], home).out        # spec/50's form works too
    assert json.loads(path.read_text())["token"] == token           # a refused token is not saved
    ok(["auth", "logout"], home)
    assert "token" not in json.loads(path.read_text())
    assert run(["auth", "whoami"], home).code == 2                  # not logged in: authentication
    assert run(["config", "set", "colour", "blue"], home).code == 5
    ok(["config", "set", "tenant_id", tenant], home)
    ok(["config", "unset", "tenant_id"], home)
    assert json.loads(path.read_text()) == {"base_url": vault.url}


# ------------------------------------------------------------------ secrets
def test_secrets_write_from_pairs_files_and_stdin_then_read_in_every_form(env, tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN X-----\nabc\n-----END X-----\n")
    wrote = ok(["secrets", "write", "cli/app/db", "user=app", "password=-", f"cert=@{cert}", "--tag", "prod"], env,
               input="pw-from-stdin\n")
    assert wrote.out.strip() == "wrote cli/app/db version 1"
    doc = tmp_path / "v.json"
    doc.write_text(json.dumps({"user": "app", "password": "pw-2", "port": 5432}))
    second = ok(["secrets", "write", "cli/app/db", "--json-file", str(doc), "--type", "json", "--json"], env).json()
    assert second["version"] == 2 and second["path"] == "cli/app/db"
    third = ok(["secrets", "write", "cli/app/other", "-", "--json"], env, input='{"token": "t-3"}').json()
    assert third["version"] == 1 and "t-3" not in json.dumps(third)
    assert "version 1" in ok(["secrets", "write", "cli/app/cfg", "-"], env, input='{"a": "b"}').out
    read = ok(["secrets", "read", "cli/app/db", "--json"], env).json()
    assert read["data"] == {"user": "app", "password": "pw-2", "port": 5432} and read["version"] == 2
    assert ok(["secrets", "read", "cli/app/db", "--field", "password"], env).out == "pw-2\n"
    assert ok(["secrets", "read", "cli/app/db", "--field", "port"], env).out == "5432\n"
    v1 = ok(["secrets", "read", "cli/app/db", "--version", "1", "--json"], env).json()
    assert v1["data"] == {"user": "app", "password": "pw-from-stdin", "cert": cert.read_text()}
    human = ok(["secrets", "read", "cli/app/db"], env).out
    assert human.splitlines()[0] == "cli/app/db  version 2  type json" and "password  pw-2" in human
    assert ok(["secrets", "read", "cli/app/db", "--field", "password", "--json"], env).json() == {"password": "pw-2"}
    assert run(["secrets", "read", "cli/app/db", "--field", "nope"], env).code == 4
    assert run(["secrets", "write", "cli/app/x"], env).code == 5                       # nothing to write
    assert run(["secrets", "write", "cli/app/x", "novalue"], env).code == 5
    assert run(["secrets", "write", "cli/app/x", "a=-", "b=-"], env, input="x").code == 5   # stdin once


def test_secrets_list_versions_metadata_delete_restore_destroy_expiring(env):
    for name in ("a", "b", "c"):
        ok(["secrets", "write", f"cli/list/{name}", "k=v"], env)
    ok(["secrets", "write", "cli/list/deep/d", "k=v", "--expires-in", "2d"], env)
    one_level = ok(["secrets", "list", "--prefix", "cli/list", "--json"], env).json()
    assert [s["path"] for s in one_level["secrets"]] == ["cli/list/a", "cli/list/b", "cli/list/c"]
    assert one_level["folders"] == ["cli/list/deep/"]
    recursive = ok(["secrets", "list", "--prefix", "cli/list/", "--recursive", "--json"], env).json()
    assert [s["path"] for s in recursive["secrets"]] == ["cli/list/a", "cli/list/b", "cli/list/c", "cli/list/deep/d"]
    assert "folders" not in recursive
    ok(["secrets", "write", "cli/list/a", "k=v", "--tag", "blue"], env)
    tagged = ok(["secrets", "list", "--prefix", "cli/list/", "-r", "--tag", "blue", "--json"], env).json()
    assert [s["path"] for s in tagged["secrets"]] == ["cli/list/a"]
    limited = ok(["secrets", "list", "--prefix", "cli/list/", "-r", "--limit", "2", "--json"], env).json()
    assert len(limited["secrets"]) == 2
    table = ok(["secrets", "list", "--prefix", "cli/list"], env).out.splitlines()
    assert table[0].split() == ["PATH", "TYPE", "VERSION", "UPDATED", "EXPIRES"]
    assert table[1].startswith("cli/list/deep/") and "folder" in table[1]
    assert len(table) == 5

    ok(["secrets", "write", "cli/list/a", "k=v2"], env)
    versions = ok(["secrets", "versions", "cli/list/a", "--json"], env).json()
    assert [v["version"] for v in versions["versions"]] == [3, 2, 1]
    assert ok(["secrets", "versions", "cli/list/a"], env).out.splitlines()[0].split()[:3] == ["VERSION", "STATE",
                                                                                             "CURRENT"]
    meta = ok(["secrets", "metadata", "cli/list/a", "--description", "list a", "--tag", "t1", "--set", "team=core",
               "--json"], env).json()
    assert meta["metadata"]["description"] == "list a" and meta["metadata"]["team"] == "core"
    assert meta["version_count"] == 3 and "data" not in meta
    assert re.search(r"^metadata.team +core$", ok(["secrets", "metadata", "cli/list/a"], env).out, re.M)

    expiring = ok(["secrets", "expiring", "--days", "3", "--prefix", "cli/list/", "--json"], env).json()
    assert [s["path"] for s in expiring["secrets"]] == ["cli/list/deep/d"]
    assert "cli/list/deep/d" in ok(["secrets", "expiring", "--days", "3"], env).out
    assert "nothing expires" in ok(["secrets", "expiring", "--days", "1", "--prefix", "cli/list/a"], env).out

    deleted = ok(["secrets", "delete", "cli/list/b", "--json"], env).json()
    assert deleted["permanent"] is False and deleted["recoverable_until"]
    assert run(["secrets", "read", "cli/list/b"], env).code == 4
    assert "restored cli/list/b at version 1" in ok(["secrets", "restore", "cli/list/b"], env).out
    assert "deleted cli/list/b; restorable until" in ok(["secrets", "delete", "cli/list/b"], env).out
    assert ok(["secrets", "restore", "cli/list/b", "--json"], env).json()["path"] == "cli/list/b"
    assert "destroyed cli/list/c" in ok(["secrets", "delete", "cli/list/c", "--hard"], env).out
    assert run(["secrets", "restore", "cli/list/c"], env).code == 4
    destroyed = ok(["secrets", "destroy", "cli/list/a", "--version", "1", "--json"], env).json()
    assert destroyed["destroyed"] == [1]
    assert "already destroyed: 1" in ok(["secrets", "destroy", "cli/list/a", "--version", "1"], env).out


# ------------------------------------------------------------------ policies, tokens, audit
def test_policies_group_in_human_and_json_forms(env, tmp_path):
    created = ok(["policies", "create", "--name", "cli-readers", "--rule", "cli/app/*:read,list", "--json"], env).json()
    pid = created["id"]
    assert created["rules"][0] == {**created["rules"][0], "path_pattern": "cli/app/*", "permissions": ["read", "list"]}
    assert "created policy" in ok(["policies", "create", "--name", "cli-deny", "--rule", "cli/app/db:read:deny"],
                                   env).out
    listed = ok(["policies", "list", "--json"], env).json()
    assert {"cli-readers", "cli-deny"} <= {p["name"] for p in listed["policies"]}
    assert "cli-readers" in ok(["policies", "list"], env).out
    bound = ok(["policies", "bind", pid, "user:reader@example.com", "--json"], env).json()
    assert bound["identity_type"] == "user"
    assert "bound" in ok(["policies", "bind", pid, "group:ops"], env).out
    got = ok(["policies", "get", pid, "--json"], env).json()
    assert {b["identity_id"] for b in got["bindings"]} == {"user:reader@example.com", "group:ops"}
    assert "cli/app/*" in ok(["policies", "get", pid], env).out
    bindings = ok(["policies", "bindings", pid, "--json"], env).json()["bindings"]
    assert len(bindings) == 2 and "group:ops" in ok(["policies", "bindings", pid], env).out
    tested = ok(["policies", "test", "cli/app/x", "read", "--identity", "user:reader@example.com", "--json"], env).json()
    assert tested["allowed"] is True
    assert ok(["policies", "test", "other/x", "read", "--identity", "user:reader@example.com"],
              env).out.startswith("DENIED")
    assert ok(["policies", "update", pid, "--description", "changed", "--json"], env).json()["description"] == "changed"
    assert "updated policy" in ok(["policies", "update", pid, "--inactive"], env).out
    removed = ok(["policies", "unbind", pid, bound["id"], "--json"], env).json()
    assert removed["deleted"] is True
    assert "removed binding" in ok(["policies", "unbind", pid, bindings[-1]["id"] if bindings[-1]["id"] != bound["id"]
                                    else bindings[0]["id"]], env).out
    assert ok(["policies", "delete", pid, "--json"], env).json()["deleted"] is True
    assert run(["policies", "get", pid], env).code == 4
    assert run(["policies", "create", "--name", "x"], env).code == 5
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"name": "from-file", "description": "d",
                                       "rules": [{"path_pattern": "cli/file/**", "permissions": ["read"]}]}))
    from_file = ok(["policies", "create", "--file", str(policy_file), "--json"], env).json()
    assert from_file["name"] == "from-file" and from_file["rules"][0]["path_pattern"] == "cli/file/**"
    bad_rule = run(["policies", "create", "--name", "bad", "--rule", "cli/**:frobnicate"], env)
    assert bad_rule.code == 5 and "request req_" in bad_rule.err


def test_tokens_group_creates_lists_and_revokes(env):
    created = run(["tokens", "create", "cli-ci", "--scope", "secrets:read", "--expires-in", "1d"], env)
    assert created.code == 0 and created.out.strip().startswith("skt_") and "shown only now" in created.err
    as_json = ok(["tokens", "create", "cli-ci-2", "--scope", "secrets:read", "--json"], env).json()
    listed = ok(["tokens", "list", "--json"], env).json()["tokens"]
    assert {"cli-ci", "cli-ci-2"} <= {t["name"] for t in listed} and all("token" not in t for t in listed)
    assert "cli-ci-2" in ok(["tokens", "list"], env).out
    assert ok(["tokens", "revoke", as_json["id"], "--json"], env).json()["status"] == "revoked"
    other = next(t for t in listed if t["name"] == "cli-ci")
    assert "revoked" in ok(["tokens", "revoke", other["id"]], env).out
    too_short = run(["tokens", "create", "x", "--scope", "secrets:read", "--expires-in", "10s"], env)
    assert too_short.code == 5 and "validation_error" in too_short.err       # a real 422


def test_audit_group_queries_summarises_verifies_and_exports(env, tmp_path):
    ok(["secrets", "write", "cli/audit/one", "k=v"], env)
    ok(["secrets", "read", "cli/audit/one"], env)
    logs = ok(["audit", "query", "--path-prefix", "cli/audit/", "--json"], env).json()["logs"]
    assert [e["action"] for e in logs] == ["read", "write"]
    assert ok(["audit", "query", "--path-prefix", "cli/audit/", "--action", "write", "--limit", "1", "--json"],
              env).json()["logs"][0]["action"] == "write"
    table = ok(["audit", "query", "--path-prefix", "cli/audit/"], env).out
    assert table.splitlines()[0].split()[:3] == ["TIME", "ACTION", "IDENTITY"] and "cli/audit/one" in table
    assert ok(["audit", "summary", "--json"], env).json()["total_events"] >= 2
    assert re.search(r"^total_events +\d+$", ok(["audit", "summary"], env).out, re.M)
    verified = ok(["audit", "verify", "--json"], env).json()
    assert verified["valid"] is True and "valid" in ok(["audit", "verify"], env).out
    target = tmp_path / "audit.jsonl"
    job = ok(["audit", "export", "--path-prefix", "cli/audit/", "--wait", "--output", str(target), "--json"], env).json()
    assert job["status"] == "completed"
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert {e["action"] for e in lines} >= {"read", "write"} and all(e["secret_path"] == "cli/audit/one" for e in lines)
    assert "k=v" not in target.read_text()
    assert job["export_id"] in ok(["audit", "exports"], env).out
    assert job["export_id"] in {j["export_id"] for j in ok(["audit", "exports", "--json"], env).json()["exports"]}


# ------------------------------------------------------------------ exit codes
def test_exit_codes_follow_real_401_403_404_422_answers(env, scaikey, tenant, vault):
    assert run(["secrets", "read", "cli/x"], {**env, "SCAIVAULT_TOKEN": "bad-token"}).code == 2
    no_grant = {**env, "SCAIVAULT_TOKEN": user_token(scaikey, tenant)}
    denied = run(["secrets", "read", "cli/app/db"], no_grant)
    assert denied.code == 3 and "access_denied" in denied.err and "request req_" in denied.err
    assert run(["secrets", "read", "cli/none/here"], env).code == 4
    invalid = run(["secrets", "write", "cli/x", "k=v", "--expires-in", "soon"], env)
    assert invalid.code == 5 and "invalid" in invalid.err
    assert run(["secrets", "read"], env).code == 5                                # usage error of a client command
    assert run(["secrets", "read", "cli/x"], {"HOME": env["HOME"]}).code == 1     # no URL configured
    assert run(["nosuchcommand"], env).code == 2                                  # as before for the server tree
    assert run(["keys", "rotate", "--bogus"], env).code == 2


# ------------------------------------------------------------------ process list, completion, help
def test_a_secret_written_from_stdin_never_appears_in_the_process_list(env):
    secret = "proc-list-secret-" + os.urandom(6).hex()
    proc = subprocess.Popen(CLI + ["secrets", "write", "cli/stdin/one", "password=-"], env=child_env(env),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        cmdline = b""
        while time.monotonic() < deadline and b"cli/stdin/one" not in cmdline:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            time.sleep(0.05)
        assert b"cli/stdin/one" in cmdline                  # the process is up and waiting on stdin
        listing = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
        everything = b"".join(p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline") if _readable(p))
        assert "cli/stdin/one" in listing and secret not in listing and secret.encode() not in everything
        out, err = proc.communicate(secret + "\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert ok(["secrets", "read", "cli/stdin/one", "--field", "password"], env).out == secret + "\n"


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
        return True
    except OSError:
        return False


def test_debug_output_names_requests_but_never_the_token_or_the_value(env):
    ok(["secrets", "write", "cli/debug/one", "password=-"], env, input="debug-value-5\n")
    done = subprocess.run(CLI + ["secrets", "read", "cli/debug/one", "--json"], env=child_env({**env, "SCAIVAULT_DEBUG": "1"}),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "debug-value-5" in done.stdout
    assert "/v1/secrets/cli/debug/one" in done.stderr
    assert env["SCAIVAULT_TOKEN"] not in done.stderr and "debug-value-5" not in done.stderr


def test_shell_completion_script_and_protocol(env):
    script = ok(["completion", "bash"], env).out
    assert "_SCAIVAULT_COMPLETE" in script and "complete" in script
    done = subprocess.run(CLI + [], env=child_env({**env, "_SCAIVAULT_COMPLETE": "bash_complete",
                                                   "COMP_WORDS": "scaivault sec", "COMP_CWORD": "1"}),
                          capture_output=True, text=True, timeout=30)
    assert "secrets" in done.stdout
    nested = subprocess.run(CLI + [], env=child_env({**env, "_SCAIVAULT_COMPLETE": "bash_complete",
                                                     "COMP_WORDS": "scaivault secrets wr", "COMP_CWORD": "2"}),
                            capture_output=True, text=True, timeout=30)
    assert "write" in nested.stdout


def test_every_command_has_help():
    seen = []

    def walk(command: click.Command, words: list[str]) -> None:
        seen.append(words)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, words + [name])

    walk(build_cli(), [])
    for words in seen:
        result = run(words + ["--help"], {})
        assert result.code == 0 and "Usage: scaivault" in result.out, words
    assert len(seen) > 40
    assert run(["--version"], {}).out.startswith("scaivault ")


def test_server_commands_name_the_extra_on_a_client_only_install():
    """Blocks the server stack's modules the way a plain `pip install scaivault` lacks them."""
    probe = ("import sys\n"
             "for name in ('yaml', 'flask', 'pg8000', 'gevent', 'gunicorn', 'redis'): sys.modules[name] = None\n"
             "from scaivault.cli import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    for args in (["migrate"], ["serve"], ["keys", "status"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60,
                              env=child_env({}))
        assert done.returncode == 1 and "pip install 'scaivault[server]'" in done.stderr, (args, done.stderr)
    client = subprocess.run([sys.executable, "-c", probe, "secrets", "list", "--help"], capture_output=True,
                            text=True, timeout=60, env=child_env({}))
    assert client.returncode == 0 and "--recursive" in client.stdout
