"""The plugin system: entry-point discovery, selection by name, a third-party KMS plugin."""
from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from scaivault.config import ConfigError
from scaivault.crypto import SealContext
from scaivault.plugins import describe_plugins, registrations, reset_plugin_manager, select
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for

FIRST_PARTY_KMS = {"local", "aws", "gcp", "azure", "hashicorp", "pkcs11"}
FIRST_PARTY_STORAGE = {"db", "s3", "minio", "gcs", "azure_blob"}


def test_first_party_plugins_register_through_the_entry_point_group():
    assert FIRST_PARTY_KMS <= set(registrations("scaivault_kms_providers"))
    assert FIRST_PARTY_STORAGE <= set(registrations("scaivault_storage_backends"))
    plugins = {p["name"]: p for p in describe_plugins()}
    assert plugins["kms_local"]["distribution"] == "scaivault"
    assert plugins["kms_local"]["provides"] == {"kms_providers": ["local"]}
    assert plugins["storage_s3"]["provides"] == {"storage_backends": ["minio", "s3"]}


def test_an_unknown_name_lists_the_installed_ones():
    with pytest.raises(ConfigError) as info:
        select("scaivault_kms_providers", "vaultinator")
    assert info.value.variable == "KMS_PROVIDER"
    for name in FIRST_PARTY_KMS:
        assert name in info.value.problem


@pytest.mark.parametrize("provider,module,extra,env", [
    ("aws", "boto3", "aws", {"KMS_KEY_ID": "alias/x"}),
    ("hashicorp", "hvac", "hashicorp", {"KMS_ENDPOINT": "http://127.0.0.1:1", "KMS_KEY_NAME": "k"}),
    ("pkcs11", "PyKCS11", "pkcs11", {}),
    ("gcp", "google.cloud.kms", "gcp", {}),
    ("azure", "azure.keyvault.keys", "azure", {}),
])
def test_a_provider_whose_sdk_is_missing_names_the_extra(monkeypatch, base_env, provider, module, extra, env):
    monkeypatch.setitem(sys.modules, module, None)          # import now raises ImportError
    settings = settings_for(base_env, base_env["DATABASE_URL"], KMS_PROVIDER=provider, **env)
    with pytest.raises(ConfigError) as info:
        select("scaivault_kms_providers", provider).factory(settings, None)
    assert f"scaivault[{extra}]" in info.value.problem


def test_plugins_endpoint_lists_plugins_for_admins(make_app, scaikey, auth):
    client = make_app().test_client()
    token = scaikey.mint(sub="usr_adm", email="adm@acme.example", tenant_id="tnt_a", partner_id="ptn_a",
                         scopes=("admin",), role="super_admin")
    response = client.get("/v1/system/plugins", headers=auth(token))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["selected"] == {"kms_provider": "local", "storage_provider": "db"}
    names = {p["name"] for p in body["plugins"]}
    assert {"kms_local", "kms_aws", "storage_db", "storage_s3"} <= names
    assert all(p["version"] for p in body["plugins"])


PLUGIN_MODULE = '''
"""A third-party KMS provider: AES-GCM under a key kept in the process (demonstration only)."""
import os
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.exceptions import InvalidTag
import pluggy

from scaivault.crypto import KmsProvider, KmsWrongKey

hookimpl = pluggy.HookimplMarker("scaivault")
KEYS = {}


class DemoKms(KmsProvider):
    name = "demo"

    def __init__(self, key_ref):
        super().__init__(key_ref)
        self.aead = AESGCM(KEYS.setdefault(key_ref, os.urandom(32)))

    def wrap(self, plaintext, aad):
        nonce = os.urandom(12)
        return nonce + self.aead.encrypt(nonce, plaintext, aad)

    def unwrap(self, wrapped, aad):
        try:
            return self.aead.decrypt(wrapped[:12], wrapped[12:], aad)
        except InvalidTag:
            raise KmsWrongKey("demo key cannot unwrap this")


@hookimpl
def scaivault_kms_providers():
    return {"demo": lambda settings, key_ref: DemoKms(key_ref or settings.kms_options.get("KMS_KEY_ID", "demo-root"))}
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "scaivault-kms-demo"
version = "0.3.1"

[project.entry-points.scaivault]
kms_demo = "scaivault_kms_demo"
'''


@pytest.fixture
def third_party_plugin(tmp_path):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (tmp_path / "scaivault_kms_demo.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(tmp_path)],
                   check=True, capture_output=True)
    importlib.invalidate_caches()
    reset_plugin_manager()
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", "scaivault-kms-demo"], check=True, capture_output=True)
        sys.modules.pop("scaivault_kms_demo", None)
        importlib.invalidate_caches()
        reset_plugin_manager()


@pytest.mark.slow
def test_a_pip_installed_third_party_plugin_adds_a_kms_provider(third_party_plugin, databases, base_env):
    settings = settings_for(base_env, migrated_database(databases), KMS_PROVIDER="demo", KMS_KEY_ID="demo-root",
                            KMS_LOCAL_KEY_FILE=None)
    ring, calls = counting_keyring(settings)
    assert ring.ensure_root().provider == "demo"
    ctx = SealContext("ptn_3p", "tnt_3p", "secret", "third/party", 1)
    assert ring.open(ctx, ring.seal(ctx, b"through a plugin")) == b"through a plugin"
    assert calls["wrap"] >= 2                                   # root check and partner key
    demo = next(p for p in describe_plugins() if p["name"] == "kms_demo")
    assert demo == {"name": "kms_demo", "distribution": "scaivault-kms-demo", "version": "0.3.1",
                    "provides": {"kms_providers": ["demo"]}}
    ring.db.close()
