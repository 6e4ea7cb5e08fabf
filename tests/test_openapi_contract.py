"""Issue 16 item 8: the OpenAPI document is the contract, fuzzed with schemathesis against a real `scaivault serve`.

`st run --checks all` with a fixed seed and a bounded number of examples, once with an admin token and
once with a path-limited token; any finding fails the test. The default run is bounded (few examples; the
path-limited token over the secret routes, where paths decide); the drill_long run fuzzes every operation
with both tokens and more examples (SCHEMATHESIS_MAX_EXAMPLES overrides both). (The hypothesis test of
issue 9 part B, tests/test_input_fuzz.py, fuzzes every endpoint for "never a 500"; this one checks the document.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import requests

from tests.foundation_support import ServedInstance
from tests.secrets_support import ADMIN_SCOPES

SEED = "1616"
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES")
CONFIG = os.path.join(os.path.dirname(__file__), "schemathesis.toml")
FUZZ_SCOPES = ADMIN_SCOPES + ("audit:read", "audit:export", "pki:admin", "pki:issue", "dynamic:read",
                              "dynamic:manage", "identity:read", "admin")


def _st() -> list[str]:
    exe = shutil.which("st")
    if exe is None:
        pytest.fail("schemathesis is missing: pip install 'scaivault[test]' (tests/run.sh does)")
    return [exe]


@pytest.fixture(scope="module")
def served(base_env, databases, tmp_path_factory):
    from scaivault.config import DatabaseURL
    from scaivault.migrate import MigrationRunner

    url = databases.create()
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    env = {**base_env, "DATABASE_URL": url, "SCAIKEY_AUDIENCE": "scaivault", "LOG_LEVEL": "error",
           "KMS_LOCAL_KEY_FILE": str(tmp_path_factory.mktemp("stkms") / "root.key")}
    with ServedInstance(env) as instance:
        yield instance


def _run(served, token: str, label: str, tmp_path, examples: str, only: str | None,
         phases: str | None) -> subprocess.CompletedProcess:
    cmd = _st() + ["--config-file", CONFIG, "run", f"{served.url}/v1/openapi.json", "--url", served.url,
                   "--checks", "all", "--seed", SEED, "--max-examples", MAX_EXAMPLES or examples, "--workers", "1",
                   "--header", f"Authorization: Bearer {token}", "--max-response-time", "10",
                   "--report-junit-path", str(tmp_path / f"{label}.xml")]
    if only:
        cmd += ["--include-path-regex", only]
    if phases:
        cmd += ["--phases", phases]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    # in tmp_path: schemathesis keeps a crash cache in its working directory and replays it on the next run
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env, cwd=tmp_path)


SECRET_ROUTES = r"^/v1/(partner/)?secrets"
RUNS = [  # (who, max examples, only these paths, phases)
    # bounded: every operation fuzzed and chained by links; the coverage phase (boundary values of every
    # parameter, the costly one) over the secret routes, where a path-limited token decides (no stateful
    # phase there: the links lead out of the subset)
    pytest.param("admin", "2", None, "examples,fuzzing,stateful", id="admin"),
    pytest.param("path_limited", "2", SECRET_ROUTES, "examples,coverage,fuzzing", id="path_limited-secrets"),
    # every phase over every operation, both tokens
    pytest.param("admin", "25", None, None, id="admin-long", marks=pytest.mark.drill_long),
    pytest.param("path_limited", "25", None, None, id="path_limited-long", marks=pytest.mark.drill_long),
]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("who,examples,only,phases", RUNS)
def test_schemathesis_finds_nothing(served, scaikey, who, examples, only, phases, tmp_path):
    tenant = "tnt_st_" + who
    admin_token = scaikey.mint(sub="usr_st_admin", email="st-admin@example.com", tenant_id=tenant,
                               partner_id="ptn_st", scopes=FUZZ_SCOPES, role="tenant_admin")
    if who == "admin":
        token = admin_token
    else:
        headers = {"Authorization": f"Bearer {admin_token}"}
        policy = requests.post(f"{served.url}/v1/policies", headers=headers, timeout=10, json={
            "name": "fuzz-app", "rules": [{"path_pattern": "app/**", "permissions": ["read", "list", "write"]}]})
        assert policy.status_code == 201, policy.text
        bound = requests.post(f"{served.url}/v1/policies/{policy.json()['id']}/bindings", headers=headers,
                              timeout=10, json={"identity_type": "user", "identity_id": "user:st-app@example.com"})
        assert bound.status_code == 201, bound.text
        token = scaikey.mint(sub="usr_st_app", email="st-app@example.com", tenant_id=tenant, partner_id="ptn_st",
                             scopes=FUZZ_SCOPES)
    result = _run(served, token, who, tmp_path, examples, only, phases)
    sys.stdout.write(result.stdout[-20000:])
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
