"""`hashicorp-vault` federation backend: a Vault or OpenBao KV v2 mount through hvac.

config: `endpoint`, `auth_method` (`token`, `approle`, `kubernetes`), `tls_verify` (default true),
`namespace`, `auth_mount` (default: the method's name). The credentials come from the ScaiVault
secret named by `auth_config_path`: `{token}`, `{role_id, secret_id}` or `{role, jwt}`.
Remote paths are KV v2 API paths, `<mount>/data/<path>`, as in `secret/data/app/db`.
"""
from __future__ import annotations

from scaivault.errors import ScaiVaultError
from scaivault.federation import FederationUnavailable, RemoteNotFound, RemoteSecret
from scaivault.plugins import hookimpl

AUTH_METHODS = {"token": ("token",), "approle": ("role_id", "secret_id"), "kubernetes": ("role", "jwt")}


def split_kv2(remote_path: str) -> tuple[str, str]:
    """(mount, path) of `<mount>/data/<path>`."""
    mount, _, rest = remote_path.partition("/data/")
    if not mount or not rest or "/" in mount:
        raise ScaiVaultError("invalid_config", f"{remote_path!r} is not a KV v2 path <mount>/data/<path>")
    return mount, rest


class VaultKv2:
    def __init__(self, client, login):
        import hvac.exceptions as hx
        import requests

        self.client = client
        self._login = login
        self._hx = hx
        self._net = (requests.ConnectionError, requests.Timeout)
        self._logged_in = False

    def _call(self, fn, *args, **kwargs):
        hx = self._hx
        try:
            if not self._logged_in:
                self._login(self.client)
                self._logged_in = True
            return fn(*args, **kwargs)
        except hx.InvalidPath:
            raise RemoteNotFound() from None
        except self._net as exc:
            raise FederationUnavailable(f"Vault is unreachable ({type(exc).__name__})") from None
        except hx.Forbidden:
            self._logged_in = False   # an expired login: log in again on the next call
            raise FederationUnavailable("Vault denied the request (check the policy of ScaiVault's Vault login)") from None
        except hx.VaultError as exc:
            raise FederationUnavailable(f"Vault answered with an error ({type(exc).__name__})") from None

    def check(self) -> None:
        health = self._call(self.client.sys.read_health_status, method="GET")
        if isinstance(health, dict) and health.get("sealed"):
            raise FederationUnavailable("Vault is sealed")
        self._call(self.client.auth.token.lookup_self)

    def read(self, remote_path: str) -> RemoteSecret:
        mount, path = split_kv2(remote_path)
        body = self._call(self.client.secrets.kv.v2.read_secret_version, path=path, mount_point=mount,
                          raise_on_deleted_version=True)
        data, meta = body["data"]["data"], body["data"]["metadata"]
        if data is None:
            raise RemoteNotFound()
        return RemoteSecret(data=data, version=str(meta["version"]),
                            metadata={"created_time": meta.get("created_time")})

    def list(self, remote_prefix: str):
        mount, _, rest = remote_prefix.partition("/data/")
        if not mount or "/" in mount:
            raise ScaiVaultError("invalid_config", f"{remote_prefix!r} is not a KV v2 prefix <mount>/data/...")
        stack = [rest.strip("/")]
        while stack:
            folder = stack.pop()
            try:
                keys = self._call(self.client.secrets.kv.v2.list_secrets, path=folder, mount_point=mount)["data"]["keys"]
            except RemoteNotFound:
                continue
            for key in keys:
                child = f"{folder}/{key}" if folder else key
                if key.endswith("/"):
                    stack.append(child.rstrip("/"))
                else:
                    yield f"{mount}/data/{child}"

    def write(self, remote_path: str, data: dict) -> str:
        mount, path = split_kv2(remote_path)
        body = self._call(self.client.secrets.kv.v2.create_or_update_secret, path=path, secret=data, mount_point=mount)
        return str(body["data"]["version"])

    def delete(self, remote_path: str) -> None:
        mount, path = split_kv2(remote_path)
        self._call(self.client.secrets.kv.v2.delete_latest_version_of_secret, path=path, mount_point=mount)

    def close(self) -> None:
        self.client.adapter.close()


def create(config: dict, credentials: dict, timeout: float) -> VaultKv2:
    try:
        import hvac
    except ImportError:
        raise ScaiVaultError("invalid_config", "the hashicorp-vault backend needs hvac: "
                                               "pip install 'scaivault[hashicorp]'") from None
    endpoint = config.get("endpoint")
    method = config.get("auth_method", "token")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise ScaiVaultError("invalid_config", "config.endpoint must be the Vault URL (https://...)")
    if method not in AUTH_METHODS:
        raise ScaiVaultError("invalid_config", f"config.auth_method must be one of {', '.join(AUTH_METHODS)}")
    missing = [k for k in AUTH_METHODS[method] if not isinstance(credentials.get(k), str) or not credentials[k]]
    if missing:
        raise ScaiVaultError("invalid_config", f"the secret at auth_config_path lacks {', '.join(missing)} "
                                               f"for auth_method {method}")
    verify = config.get("tls_verify", True)
    client = hvac.Client(url=endpoint, namespace=config.get("namespace"), verify=bool(verify), timeout=timeout)
    auth_mount = config.get("auth_mount") or method

    def login(c) -> None:
        if method == "token":
            c.token = credentials["token"]
        elif method == "approle":
            c.auth.approle.login(role_id=credentials["role_id"], secret_id=credentials["secret_id"],
                                 mount_point=auth_mount)
        else:
            c.auth.kubernetes.login(role=credentials["role"], jwt=credentials["jwt"], mount_point=auth_mount)

    return VaultKv2(client, login)


@hookimpl
def scaivault_federation_backends():
    return {"hashicorp-vault": create}
