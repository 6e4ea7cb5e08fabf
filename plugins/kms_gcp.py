"""`gcp` KMS provider: Cloud KMS symmetric encrypt/decrypt with additional authenticated data.

KMS_KEY_NAME (projects/.../locations/.../keyRings/.../cryptoKeys/...), KMS_ENDPOINT (an API
endpoint override), KMS_TIMEOUT (seconds per attempt, default 10), KMS_RETRIES (attempts per call, default 2), KMS_CREDENTIALS_FILE (a service-account JSON; otherwise Application
Default Credentials). CRC32C checksums are sent and verified on every call, as Google
recommends. Rotation creates a new key version and makes it primary.
"""
from __future__ import annotations

from scaivault.config import ConfigError
from scaivault.crypto.errors import KmsError, KmsUnavailable, KmsWrongKey
from scaivault.crypto.kms import KmsProvider, call_limits, missing_sdk, require_option, with_attempts
from scaivault.plugins import hookimpl

DEFAULT_TIMEOUT = 10.0


class GcpKms(KmsProvider):
    name = "gcp"

    def __init__(self, client, key_ref: str, timeout: float = DEFAULT_TIMEOUT, attempts: int = 2):
        super().__init__(key_ref)
        self.client = client
        self.timeout = timeout
        self.attempts = attempts
        import google_crc32c
        import requests
        from google.api_core import exceptions as gx

        self._crc = lambda data: google_crc32c.value(data)
        self._gx = gx
        self._net = (requests.ConnectionError, requests.Timeout)

    def _call(self, fn, request: dict):
        # the client's own Retry counts time, not attempts: retry here so KMS_RETRIES means attempts
        return with_attempts(self.attempts, lambda: self._call_once(fn, request))

    def _call_once(self, fn, request: dict):
        gx = self._gx
        try:
            return fn(request=request, retry=None, timeout=self.timeout)
        except self._net as exc:
            raise KmsUnavailable(f"Cloud KMS unreachable ({type(exc).__name__})") from None
        except (gx.ServiceUnavailable, gx.DeadlineExceeded, gx.RetryError, gx.InternalServerError) as exc:
            raise KmsUnavailable(f"Cloud KMS unavailable ({type(exc).__name__})") from None
        except gx.PermissionDenied:
            raise KmsError(f"Cloud KMS denied the operation on {self.key_ref} (check IAM: cloudkms.cryptoKeyEncrypterDecrypter)") from None
        except gx.NotFound:
            raise KmsError(f"Cloud KMS key {self.key_ref} not found") from None
        except (gx.FailedPrecondition, gx.BadRequest) as exc:
            # over REST every 400 arrives as BadRequest; the status in the body tells them apart
            if isinstance(exc, gx.FailedPrecondition) or _status(exc) == "FAILED_PRECONDITION":
                raise KmsError(f"Cloud KMS key {self.key_ref} is not enabled") from None
            raise KmsWrongKey(f"Cloud KMS key {self.key_ref} cannot decrypt this value") from None
        except gx.GoogleAPICallError as exc:
            raise KmsError(f"Cloud KMS error on {self.key_ref} ({type(exc).__name__})") from None

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        response = self._call(self.client.encrypt, {
            "name": self.key_ref, "plaintext": plaintext, "additional_authenticated_data": aad,
            "plaintext_crc32c": self._crc(plaintext), "additional_authenticated_data_crc32c": self._crc(aad)})
        if not response.verified_plaintext_crc32c or response.ciphertext_crc32c != self._crc(response.ciphertext):
            raise KmsUnavailable("Cloud KMS response failed its integrity check (CRC32C)")
        return response.ciphertext

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        response = self._call(self.client.decrypt, {
            "name": self.key_ref, "ciphertext": wrapped, "additional_authenticated_data": aad,
            "ciphertext_crc32c": self._crc(wrapped), "additional_authenticated_data_crc32c": self._crc(aad)})
        if response.plaintext_crc32c != self._crc(response.plaintext):
            raise KmsUnavailable("Cloud KMS response failed its integrity check (CRC32C)")
        return response.plaintext

    def rotate_key(self) -> bool:
        version = self._call(self.client.create_crypto_key_version, {"parent": self.key_ref, "crypto_key_version": {}})
        self._call(self.client.update_crypto_key_primary_version,
                   {"name": self.key_ref, "crypto_key_version_id": version.name.rsplit("/", 1)[-1]})
        return True

    def close(self) -> None:
        self.client.transport.close()


def _status(exc) -> str | None:
    try:
        return exc.response.json()["error"]["status"]
    except Exception:
        return None


def create(settings, key_ref: str | None) -> GcpKms:
    try:
        import google.cloud.kms as kms
    except ImportError:
        raise missing_sdk("gcp", "google-cloud-kms", "gcp") from None
    opts = settings.kms_options
    key = key_ref or require_option(settings, "KMS_KEY_NAME", "KMS_KEY_ID")
    if not key.startswith("projects/") or "/cryptoKeys/" not in key:
        raise ConfigError("KMS_KEY_NAME", "must be projects/P/locations/L/keyRings/R/cryptoKeys/K")
    credentials = None                                  # Application Default Credentials
    if opts.get("KMS_CREDENTIALS_FILE"):
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(opts["KMS_CREDENTIALS_FILE"])
    elif (opts.get("KMS_ENDPOINT") or "").startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()            # plain HTTP is only ever a local emulator or fake
    client_options = {"api_endpoint": opts["KMS_ENDPOINT"]} if opts.get("KMS_ENDPOINT") else None
    client = kms.KeyManagementServiceClient(transport="rest", credentials=credentials, client_options=client_options)
    timeout, attempts = call_limits(settings)
    return GcpKms(client, key, timeout, attempts)


@hookimpl
def scaivault_kms_providers():
    return {"gcp": create}
