"""`azure-key-vault` federation backend: Key Vault secrets through azure-keyvault-secrets.

config: `vault_url` (https://<vault>.vault.azure.net), `tls_verify`. Credentials from the
ScaiVault secret at `credentials_path`: `{tenant_id, client_id, client_secret}` (a service
principal) or `{token}` (a bearer token issued elsewhere). Key Vault names allow only letters,
digits and `-`, so a remote path's `/` is written `--` in the secret name (`app/db` is
`app--db`). A secret's value holding a JSON object maps to the data; any other value to
`{"value": ...}`; writes store the data as compact JSON.
"""
from __future__ import annotations

import json
import time

from scaivault.errors import ScaiVaultError
from scaivault.federation import FederationUnavailable, RemoteNotFound, RemoteSecret
from scaivault.plugins import hookimpl

SEPARATOR = "--"


def to_name(remote_path: str) -> str:
    name = remote_path.strip("/").replace("/", SEPARATOR)
    if not name or not all(c.isalnum() or c == "-" for c in name) or len(name) > 127:
        raise ScaiVaultError("invalid_config", f"{remote_path!r} cannot be a Key Vault secret name "
                                               "(letters, digits, '-'; '/' becomes '--')")
    return name


def to_path(name: str) -> str:
    return name.replace(SEPARATOR, "/")


def decode_value(raw: str | None) -> dict:
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {"value": raw}


class StaticToken:
    """A TokenCredential over a bearer token stored in ScaiVault."""

    def __init__(self, token: str):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 300)

    def get_token_info(self, *scopes, options=None):
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self.token, int(time.time()) + 300)


class KeyVaultSecrets:
    def __init__(self, client):
        from azure.core import exceptions as ax

        self.client = client
        self._ax = ax

    def _call(self, fn, *args, **kwargs):
        ax = self._ax
        try:
            return fn(*args, **kwargs)
        except ax.ResourceNotFoundError:
            raise RemoteNotFound() from None
        except ax.ClientAuthenticationError:
            raise FederationUnavailable("Azure Key Vault rejected the credentials") from None
        except ax.HttpResponseError as exc:
            raise FederationUnavailable(f"Azure Key Vault refused the call (HTTP {exc.status_code})") from None
        except (ax.ServiceRequestError, ax.ServiceResponseError) as exc:
            raise FederationUnavailable(f"Azure Key Vault is unreachable ({type(exc).__name__})") from None

    def check(self) -> None:
        pager = self._call(self.client.list_properties_of_secrets, max_page_size=1)
        self._call(lambda: next(iter(pager.by_page()), None))

    def read(self, remote_path: str) -> RemoteSecret:
        secret = self._call(self.client.get_secret, to_name(remote_path))
        return RemoteSecret(data=decode_value(secret.value), version=secret.properties.version or "",
                            metadata={"updated_on": str(secret.properties.updated_on or "") or None})

    def list(self, remote_prefix: str):
        wanted = remote_prefix.strip("/")
        for props in self._call(lambda: list(self.client.list_properties_of_secrets())):
            path = to_path(props.name)
            if path.startswith(wanted) and props.enabled is not False:
                yield path

    def write(self, remote_path: str, data: dict) -> str:
        secret = self._call(self.client.set_secret, to_name(remote_path),
                            json.dumps(data, separators=(",", ":"), sort_keys=True), content_type="application/json")
        return secret.properties.version or ""

    def delete(self, remote_path: str) -> None:
        self._call(self.client.begin_delete_secret, to_name(remote_path))

    def close(self) -> None:
        self.client.close()


def create(config: dict, credentials: dict, timeout: float) -> KeyVaultSecrets:
    try:
        from azure.keyvault.secrets import SecretClient
    except ImportError:
        raise ScaiVaultError("invalid_config", "the azure-key-vault backend needs azure-keyvault-secrets: "
                                               "pip install 'scaivault[azure]'") from None
    vault_url = config.get("vault_url") or config.get("endpoint")
    if not isinstance(vault_url, str) or not vault_url.startswith("https://"):
        raise ScaiVaultError("invalid_config", "config.vault_url must be https://<vault>.vault.azure.net")
    if credentials.get("token"):
        credential = StaticToken(credentials["token"])
    elif all(credentials.get(k) for k in ("tenant_id", "client_id", "client_secret")):
        from azure.identity import ClientSecretCredential

        credential = ClientSecretCredential(credentials["tenant_id"], credentials["client_id"],
                                            credentials["client_secret"])
    else:
        raise ScaiVaultError("invalid_config", "the secret at credentials_path needs tenant_id, client_id and "
                                               "client_secret (or token)")
    kwargs = {"connection_timeout": timeout, "read_timeout": timeout, "retry_total": 0}
    if config.get("ca_file"):
        kwargs["connection_verify"] = config["ca_file"]
    if ".vault.azure.net" not in vault_url:
        kwargs["verify_challenge_resource"] = False   # a private endpoint or a stand-in
    return KeyVaultSecrets(SecretClient(vault_url, credential, **kwargs))


@hookimpl
def scaivault_federation_backends():
    return {"azure-key-vault": create}
