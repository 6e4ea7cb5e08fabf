"""`azure` KMS provider: Azure Key Vault / Managed HSM wrapKey/unwrapKey with RSA-OAEP-256.

KMS_KEY_URL (https://<vault>.vault.azure.net/keys/<name>[/<version>]). Credentials: a
service principal when KMS_AZURE_TENANT_ID, KMS_AZURE_CLIENT_ID and
KMS_AZURE_CLIENT_SECRET_FILE are set, a bearer token from KMS_AUTH_TOKEN_FILE (re-read on
every token request), else DefaultAzureCredential (managed identity, workload identity,
environment). KMS_CA_CERT trusts a private CA. RSA wrapping has no associated data: the
keyring's key commitment binds each wrapped key to its place instead.
"""
from __future__ import annotations

import time
from typing import Any

from scaivault.config import ConfigError
from scaivault.crypto.errors import KmsError, KmsUnavailable, KmsWrongKey
from scaivault.crypto.kms import KmsProvider, call_limits, missing_sdk, read_secret_file, require_option
from scaivault.plugins import hookimpl

SEPARATOR = b"\n"


class TokenFileCredential:
    """A TokenCredential serving the bearer token in a file (mounted by the platform)."""

    def __init__(self, path: str):
        self.path = path

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        return AccessToken(read_secret_file("KMS_AUTH_TOKEN_FILE", self.path), int(time.time()) + 300)

    def get_token_info(self, *scopes: str, options=None):
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(read_secret_file("KMS_AUTH_TOKEN_FILE", self.path), int(time.time()) + 300)

    def close(self) -> None:
        return None


class AzureKeyVault(KmsProvider):
    name = "azure"
    supports_aad = False

    def __init__(self, key_ref: str, credential, client_kwargs: dict):
        super().__init__(key_ref)
        from azure.core import exceptions as ax
        from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

        self._ax = ax
        self._alg = KeyWrapAlgorithm.rsa_oaep_256
        self._credential = credential
        self._kwargs = client_kwargs
        self._client_class = CryptographyClient
        self._clients: dict[str, Any] = {}

    def _client(self, key_id: str):
        client = self._clients.get(key_id)
        if client is None:
            client = self._clients[key_id] = self._client_class(key_id, self._credential, **self._kwargs)
        return client

    def _call(self, fn, *args):
        ax = self._ax
        try:
            return fn(*args)
        except ax.ServiceRequestError as exc:
            raise KmsUnavailable(f"Azure Key Vault unreachable ({type(exc).__name__})") from None
        except ax.ClientAuthenticationError:
            raise KmsError("Azure Key Vault rejected the credentials") from None
        except ax.ResourceNotFoundError:
            raise KmsError(f"Azure Key Vault has no key {self.key_ref}") from None
        except ax.HttpResponseError as exc:
            status = getattr(exc, "status_code", None) or 0
            if status == 403:
                raise KmsError(f"Azure Key Vault denied the operation on {self.key_ref} "
                               f"(needs wrapKey/unwrapKey permissions, or the key is disabled)") from None
            if status == 400:
                raise KmsWrongKey(f"Azure Key Vault key {self.key_ref} cannot unwrap this value") from None
            if status >= 500 or status == 429:
                raise KmsUnavailable(f"Azure Key Vault unavailable (HTTP {status})") from None
            raise KmsError(f"Azure Key Vault error on {self.key_ref} (HTTP {status})") from None
        except ax.AzureError as exc:
            raise KmsUnavailable(f"Azure Key Vault failed ({type(exc).__name__})") from None

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        kids: list[str] = []

        def capture_kid(pipeline_response) -> None:
            try:
                kids.append(pipeline_response.http_response.json()["kid"])
            except Exception:
                pass

        client = self._client(self.key_ref)
        result = self._call(lambda: client.wrap_key(self._alg, plaintext, raw_response_hook=capture_kid))
        # the versioned key id goes with the ciphertext: unwrap must use the version that wrapped
        # (the SDK reports the id it was given, which has no version when KMS_KEY_URL has none)
        key_id = kids[-1] if kids else result.key_id
        return key_id.encode() + SEPARATOR + result.encrypted_key

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        key_id, sep, encrypted = wrapped.partition(SEPARATOR)
        if not sep or not key_id.startswith(b"https://"):
            raise KmsWrongKey("not an azure-provider ciphertext")
        base = self.key_ref.split("/keys/")[0]
        if not key_id.decode().startswith(base + "/keys/"):
            raise KmsWrongKey("the ciphertext belongs to another vault")
        return self._call(self._client(key_id.decode()).unwrap_key, self._alg, encrypted).key

    def rotate_key(self) -> bool:
        from azure.keyvault.keys import KeyClient

        parts = self.key_ref.split("/keys/")
        name = parts[1].split("/")[0]
        if "/" in parts[1].strip("/"):
            return False                       # a versioned KMS_KEY_URL pins one version: nothing to rotate
        client = KeyClient(parts[0], self._credential, **self._kwargs)
        self._call(client.rotate_key, name)
        return True

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def create(settings, key_ref: str | None) -> AzureKeyVault:
    try:
        import azure.keyvault.keys  # noqa: F401  (only to name the extra when missing)
    except ImportError:
        raise missing_sdk("azure", "azure-keyvault-keys", "azure") from None
    opts = settings.kms_options
    key = (key_ref or require_option(settings, "KMS_KEY_URL", "KMS_KEY_ID")).rstrip("/")
    if not key.startswith("https://") or "/keys/" not in key:
        raise ConfigError("KMS_KEY_URL", "must be https://<vault>.vault.azure.net/keys/<name>[/<version>]")
    if opts.get("KMS_AZURE_CLIENT_SECRET_FILE"):
        from azure.identity import ClientSecretCredential

        credential = ClientSecretCredential(require_option(settings, "KMS_AZURE_TENANT_ID"),
                                            require_option(settings, "KMS_AZURE_CLIENT_ID"),
                                            read_secret_file("KMS_AZURE_CLIENT_SECRET_FILE", opts["KMS_AZURE_CLIENT_SECRET_FILE"]))
    elif opts.get("KMS_AUTH_TOKEN_FILE"):
        credential = TokenFileCredential(opts["KMS_AUTH_TOKEN_FILE"])
    else:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise missing_sdk("azure", "azure-identity", "azure") from None
        credential = DefaultAzureCredential()
    timeout, attempts = call_limits(settings)
    # azure-core's retry_total counts retries after the first try: attempts - 1
    kwargs: dict[str, Any] = {"retry_total": attempts - 1, "retry_backoff_factor": 0.2,
                              "connection_timeout": min(5.0, timeout), "read_timeout": timeout}
    if opts.get("KMS_CA_CERT"):
        kwargs["connection_verify"] = opts["KMS_CA_CERT"]
    if opts.get("KMS_AZURE_VERIFY_CHALLENGE", "").lower() == "false":
        # a vault reached under another domain (private endpoint, test double) answers a challenge
        # for vault.azure.net; only switch the domain check off for such a vault
        kwargs["verify_challenge_resource"] = False
    return AzureKeyVault(key, credential, kwargs)


@hookimpl
def scaivault_kms_providers():
    return {"azure": create}
