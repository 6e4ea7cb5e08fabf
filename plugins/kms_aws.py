"""`aws` KMS provider: AWS KMS Encrypt/Decrypt with an encryption context (boto3).

KMS_KEY_ID (key ARN, id or alias/...), KMS_REGION (else the ARN's region, else the AWS
default), KMS_ENDPOINT (moto, LocalStack or a KMS-compatible service) and
KMS_ENDPOINT_SECONDARY (the secondary key's regional endpoint, when overridden), KMS_TIMEOUT
(seconds per attempt, default 10) and KMS_RETRIES (attempts per call, default 2).
Credentials come from the standard AWS chain; KMS_ACCESS_KEY_ID / KMS_SECRET_ACCESS_KEY only
when configured.
"""
from __future__ import annotations

import hashlib

from scaivault.crypto.errors import KmsError, KmsUnavailable, KmsWrongKey
from scaivault.crypto.kms import KmsProvider, call_limits, missing_sdk, require_option
from scaivault.plugins import hookimpl

WRONG_KEY = {"InvalidCiphertextException", "IncorrectKeyException"}
UNAVAILABLE = {"KMSInternalException", "DependencyTimeoutException", "ThrottlingException", "ServiceUnavailable"}


class AwsKms(KmsProvider):
    name = "aws"

    def __init__(self, client, key_ref: str):
        super().__init__(key_ref)
        self.client = client
        import botocore.exceptions as be

        self._be = be

    @staticmethod
    def _context(aad: bytes) -> dict[str, str]:
        # the encryption context is logged by CloudTrail: a digest, never the raw binding data
        return {"scaivault:aad": hashlib.sha256(aad).hexdigest()}

    def _call(self, fn, **kwargs):
        be = self._be
        try:
            return fn(**kwargs)
        except (be.EndpointConnectionError, be.ConnectTimeoutError, be.ReadTimeoutError,
                be.ConnectionClosedError) as exc:
            raise KmsUnavailable(f"AWS KMS unreachable ({type(exc).__name__})") from None
        except be.NoCredentialsError:
            raise KmsError("AWS KMS: no credentials found in the standard chain") from None
        except be.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code in WRONG_KEY:
                raise KmsWrongKey(f"AWS KMS key {self.key_ref} cannot decrypt this value ({code})") from None
            if code in UNAVAILABLE or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise KmsUnavailable(f"AWS KMS unavailable ({code})") from None
            raise KmsError(f"AWS KMS refused the operation on {self.key_ref} ({code})") from None

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        return self._call(self.client.encrypt, KeyId=self.key_ref, Plaintext=plaintext,
                          EncryptionContext=self._context(aad))["CiphertextBlob"]

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return self._call(self.client.decrypt, KeyId=self.key_ref, CiphertextBlob=wrapped,
                          EncryptionContext=self._context(aad))["Plaintext"]

    def rotate_key(self) -> bool:
        # on-demand rotation adds key material; old ciphertexts still decrypt, new ones use it
        try:
            self._call(self.client.rotate_key_on_demand, KeyId=self.key_ref)
            return True
        except KmsError:
            return False

    def describe(self) -> dict:
        return {"provider": self.name, "key_ref": self.key_ref}

    def close(self) -> None:
        self.client.close()


def create(settings, key_ref: str | None) -> AwsKms:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise missing_sdk("aws", "boto3", "aws") from None
    opts = settings.kms_options
    key = key_ref or require_option(settings, "KMS_KEY_ID")
    region = opts.get("KMS_REGION")
    if key.startswith("arn:aws:kms:"):
        region = key.split(":")[3] or region
    endpoint = opts.get("KMS_ENDPOINT")
    if key_ref is not None and key_ref == settings.kms_key_id_secondary:
        endpoint = opts.get("KMS_ENDPOINT_SECONDARY") or endpoint
    timeout, attempts = call_limits(settings)
    # botocore's `max_attempts` counts retries (N means N + 1 calls); `total_max_attempts` counts
    # calls, which is what KMS_RETRIES means
    kwargs = {"region_name": region or None,
              "config": Config(connect_timeout=min(3.0, timeout), read_timeout=timeout,
                               retries={"total_max_attempts": attempts, "mode": "standard"})}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if opts.get("KMS_ACCESS_KEY_ID"):
        kwargs["aws_access_key_id"] = opts["KMS_ACCESS_KEY_ID"]
        kwargs["aws_secret_access_key"] = opts.get("KMS_SECRET_ACCESS_KEY")
    client = boto3.session.Session().client("kms", **kwargs)
    return AwsKms(client, key)


@hookimpl
def scaivault_kms_providers():
    return {"aws": create}
