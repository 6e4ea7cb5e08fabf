"""`hashicorp` KMS provider: Vault / OpenBao Transit encrypt/decrypt with associated data (hvac).

KMS_ENDPOINT (Vault URL), KMS_KEY_NAME (Transit key, aes256-gcm96), KMS_AUTH_TOKEN_FILE (a
file holding the token; without it the standard VAULT_TOKEN / ~/.vault-token chain of hvac),
KMS_TRANSIT_MOUNT (default `transit`), KMS_NAMESPACE, KMS_CA_CERT, KMS_TIMEOUT (seconds per
attempt, default 10), KMS_RETRIES (attempts per call, default 2).
"""
from __future__ import annotations

import base64

from scaivault.crypto.errors import KmsError, KmsUnavailable, KmsWrongKey
from scaivault.crypto.kms import KmsProvider, call_limits, missing_sdk, read_secret_file, require_option, with_attempts
from scaivault.plugins import hookimpl


class VaultTransit(KmsProvider):
    name = "hashicorp"

    def __init__(self, client, key_ref: str, mount: str, token_file: str | None = None, attempts: int = 2):
        super().__init__(key_ref)
        self.attempts = attempts
        self.client = client
        self.mount = mount
        self.token_file = token_file
        import hvac.exceptions as hx
        import requests

        self._hx = hx
        self._net = (requests.ConnectionError, requests.Timeout)

    def _call(self, fn, **kwargs):
        try:
            return with_attempts(self.attempts, lambda: self._call_once(fn, **kwargs))
        except KmsError as exc:
            # Vault Agent and similar sidecars replace the token file when the token is renewed
            if exc.code != "kms_error" or "denied" not in exc.message or not self._reload_token():
                raise
            return self._call_once(fn, **kwargs)

    def _reload_token(self) -> bool:
        if not self.token_file:
            return False
        token = read_secret_file("KMS_AUTH_TOKEN_FILE", self.token_file)
        if token == self.client.token:
            return False
        self.client.token = token
        return True

    def _call_once(self, fn, **kwargs):
        hx = self._hx
        try:
            return fn(name=self.key_ref, mount_point=self.mount, **kwargs)
        except self._net as exc:
            raise KmsUnavailable(f"Vault unreachable ({type(exc).__name__})") from None
        except (hx.VaultDown, hx.InternalServerError, hx.BadGateway, hx.RateLimitExceeded) as exc:
            raise KmsUnavailable(f"Vault unavailable ({type(exc).__name__})") from None
        except hx.Forbidden:
            raise KmsError(f"Vault denied the Transit operation on key {self.key_ref} (check the token's policy)") from None
        except hx.InvalidPath:
            raise KmsError(f"Vault has no Transit key {self.key_ref} at mount {self.mount}") from None
        except hx.InvalidRequest as exc:
            if "authentication failed" in str(exc) or "invalid ciphertext" in str(exc) or "decrypt" in str(exc):
                raise KmsWrongKey(f"Vault key {self.key_ref} cannot decrypt this value") from None
            raise KmsError(f"Vault refused the Transit operation on key {self.key_ref}") from None
        except hx.VaultError as exc:
            raise KmsError(f"Vault error on key {self.key_ref} ({type(exc).__name__})") from None

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        result = self._call(self.client.secrets.transit.encrypt_data, plaintext=base64.b64encode(plaintext).decode(),
                            associated_data=base64.b64encode(aad).decode())
        return result["data"]["ciphertext"].encode()

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            ciphertext = wrapped.decode("ascii")
        except UnicodeDecodeError:
            raise KmsWrongKey("not a Transit ciphertext") from None
        result = self._call(self.client.secrets.transit.decrypt_data, ciphertext=ciphertext,
                            associated_data=base64.b64encode(aad).decode())
        return base64.b64decode(result["data"]["plaintext"])

    def rotate_key(self) -> bool:
        self._call(self.client.secrets.transit.rotate_key)
        return True

    def describe(self) -> dict:
        return {"provider": self.name, "key_ref": self.key_ref, "mount": self.mount}

    def close(self) -> None:
        self.client.adapter.close()


def create(settings, key_ref: str | None) -> VaultTransit:
    try:
        import hvac
    except ImportError:
        raise missing_sdk("hashicorp", "hvac", "hashicorp") from None
    opts = settings.kms_options
    url = require_option(settings, "KMS_ENDPOINT")
    key = key_ref or require_option(settings, "KMS_KEY_NAME", "KMS_KEY_ID")
    token = read_secret_file("KMS_AUTH_TOKEN_FILE", opts["KMS_AUTH_TOKEN_FILE"]) if opts.get("KMS_AUTH_TOKEN_FILE") else None
    timeout, attempts = call_limits(settings)
    client = hvac.Client(url=url, token=token, namespace=opts.get("KMS_NAMESPACE"),
                         verify=opts.get("KMS_CA_CERT") or True, timeout=timeout)
    return VaultTransit(client, key, opts.get("KMS_TRANSIT_MOUNT", "transit"), opts.get("KMS_AUTH_TOKEN_FILE"), attempts)


@hookimpl
def scaivault_kms_providers():
    return {"hashicorp": create}
