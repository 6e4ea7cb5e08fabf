"""`google-secret-manager` federation backend through google-cloud-secret-manager (REST).

config: `project`, optional `endpoint` (a private endpoint or a stand-in). Credentials from the
ScaiVault secret at `credentials_path`: a service-account key (its JSON fields); without
that path, Application Default Credentials. Secret ids allow letters, digits, `-` and `_`, so a
remote path's `/` is written `--` in the id. Payloads holding a JSON object map to the data;
anything else to `{"value": ...}`.
"""
from __future__ import annotations

import json

from scaivault.errors import ScaiVaultError
from scaivault.federation import FederationUnavailable, RemoteNotFound, RemoteSecret
from scaivault.plugins import hookimpl

SEPARATOR = "--"


def to_id(remote_path: str) -> str:
    secret_id = remote_path.strip("/").replace("/", SEPARATOR)
    if not secret_id or not all(c.isalnum() or c in "-_" for c in secret_id) or len(secret_id) > 255:
        raise ScaiVaultError("invalid_config", f"{remote_path!r} cannot be a Secret Manager id "
                                               "(letters, digits, '-', '_'; '/' becomes '--')")
    return secret_id


class SecretManager:
    def __init__(self, client, project: str, timeout: float):
        import requests
        from google.api_core import exceptions as gx

        self._net = (requests.ConnectionError, requests.Timeout)
        self.client = client
        self.project = project
        self.timeout = timeout
        self._gx = gx

    def _call(self, fn, **kwargs):
        gx = self._gx
        try:
            return fn(timeout=self.timeout, retry=None, **kwargs)
        except gx.NotFound:
            raise RemoteNotFound() from None
        except (gx.PermissionDenied, gx.Unauthenticated):
            raise FederationUnavailable("Secret Manager denied the call (check the service account's roles)") from None
        except (gx.GoogleAPIError, *self._net) as exc:
            raise FederationUnavailable(f"Secret Manager is unavailable ({type(exc).__name__})") from None

    def _name(self, remote_path: str) -> str:
        return f"projects/{self.project}/secrets/{to_id(remote_path)}"

    def check(self) -> None:
        self._call(self.client.list_secrets, request={"parent": f"projects/{self.project}", "page_size": 1})

    def read(self, remote_path: str) -> RemoteSecret:
        version = self._call(self.client.access_secret_version,
                             request={"name": self._name(remote_path) + "/versions/latest"})
        raw = version.payload.data.decode("utf-8", errors="replace")
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return RemoteSecret(data=data if isinstance(data, dict) else {"value": raw},
                            version=version.name.rsplit("/", 1)[-1])

    def list(self, remote_prefix: str):
        wanted = remote_prefix.strip("/")
        pager = self._call(self.client.list_secrets, request={"parent": f"projects/{self.project}"})
        try:
            for secret in pager:
                path = secret.name.rsplit("/", 1)[-1].replace(SEPARATOR, "/")
                if path.startswith(wanted):
                    yield path
        except (self._gx.GoogleAPIError, *self._net) as exc:
            raise FederationUnavailable(f"Secret Manager list failed ({type(exc).__name__})") from None

    def write(self, remote_path: str, data: dict) -> str:
        name = self._name(remote_path)
        try:
            self._call(self.client.get_secret, request={"name": name})
        except RemoteNotFound:
            self._call(self.client.create_secret, request={
                "parent": f"projects/{self.project}", "secret_id": to_id(remote_path),
                "secret": {"replication": {"automatic": {}}}})
        payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        version = self._call(self.client.add_secret_version, request={"parent": name, "payload": {"data": payload}})
        return version.name.rsplit("/", 1)[-1]

    def delete(self, remote_path: str) -> None:
        self._call(self.client.delete_secret, request={"name": self._name(remote_path)})

    def close(self) -> None:
        self.client.transport.close()


def create(config: dict, credentials: dict, timeout: float) -> SecretManager:
    try:
        from google.cloud import secretmanager
    except ImportError:
        raise ScaiVaultError("invalid_config", "the google-secret-manager backend needs google-cloud-secret-manager: "
                                               "pip install 'scaivault[gcp]'") from None
    project = config.get("project")
    if not isinstance(project, str) or not project:
        raise ScaiVaultError("invalid_config", "config.project is required")
    endpoint = config.get("endpoint")
    if credentials:
        from google.oauth2 import service_account

        try:
            creds = service_account.Credentials.from_service_account_info(
                credentials, scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except (ValueError, KeyError):
            raise ScaiVaultError("invalid_config", "the secret at credentials_path is not a service-account key") from None
    elif endpoint and endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        creds = AnonymousCredentials()   # plain HTTP is only ever a local stand-in
    else:
        creds = None                      # Application Default Credentials
    client = secretmanager.SecretManagerServiceClient(
        transport="rest", credentials=creds, client_options={"api_endpoint": endpoint} if endpoint else None)
    return SecretManager(client, project, timeout)


@hookimpl
def scaivault_federation_backends():
    return {"google-secret-manager": create}
