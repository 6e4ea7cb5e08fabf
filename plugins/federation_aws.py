"""`aws-secrets-manager` federation backend through boto3.

config: `region` (one backend per region), optional `endpoint` (a VPC endpoint, or a local
stand-in). Credentials from the ScaiVault secret at `credentials_path`: `{access_key_id,
secret_access_key[, session_token]}`; without that path, boto3's default chain (instance role).
Remote paths are secret names; a SecretString holding a JSON object maps to the secret's data,
any other string to `{"value": ...}`.
"""
from __future__ import annotations

import json

from scaivault.errors import ScaiVaultError
from scaivault.federation import FederationUnavailable, RemoteNotFound, RemoteSecret
from scaivault.plugins import hookimpl


class SecretsManager:
    def __init__(self, client):
        from botocore.exceptions import BotoCoreError, ClientError

        self.client = client
        self._client_error = ClientError
        self._boto_error = BotoCoreError

    def _call(self, fn, **kwargs):
        try:
            return fn(**kwargs)
        except self._client_error as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            in_recovery = code == "InvalidRequestException" and "deleted" in message.lower()
            if code == "ResourceNotFoundException" or in_recovery:
                raise RemoteNotFound() from None
            raise FederationUnavailable(f"AWS Secrets Manager refused the call ({code or 'error'})") from None
        except self._boto_error as exc:
            raise FederationUnavailable(f"AWS Secrets Manager is unreachable ({type(exc).__name__})") from None

    def check(self) -> None:
        self._call(self.client.list_secrets, MaxResults=1)

    def read(self, remote_path: str) -> RemoteSecret:
        body = self._call(self.client.get_secret_value, SecretId=remote_path)
        raw = body.get("SecretString")
        if raw is None:
            raise FederationUnavailable("binary secrets are not federated (SecretBinary)")
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {"value": raw}
        return RemoteSecret(data=data, version=body["VersionId"],
                            metadata={"created_date": str(body.get("CreatedDate") or "") or None})

    def list(self, remote_prefix: str):
        paginator = self.client.get_paginator("list_secrets")
        kwargs = {"Filters": [{"Key": "name", "Values": [remote_prefix]}]} if remote_prefix else {}
        try:
            for page in paginator.paginate(**kwargs):
                for entry in page.get("SecretList", []):
                    if entry["Name"].startswith(remote_prefix) and not entry.get("DeletedDate"):
                        yield entry["Name"]
        except (self._client_error, self._boto_error) as exc:
            raise FederationUnavailable(f"AWS Secrets Manager list failed ({type(exc).__name__})") from None

    def write(self, remote_path: str, data: dict) -> str:
        value = json.dumps(data, separators=(",", ":"), sort_keys=True)
        try:
            body = self._call(self.client.put_secret_value, SecretId=remote_path, SecretString=value)
        except RemoteNotFound:
            body = self._call(self.client.create_secret, Name=remote_path, SecretString=value)
        return body["VersionId"]

    def delete(self, remote_path: str) -> None:
        self._call(self.client.delete_secret, SecretId=remote_path, RecoveryWindowInDays=7)

    def close(self) -> None:
        self.client.close()


def create(config: dict, credentials: dict, timeout: float) -> SecretsManager:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ScaiVaultError("invalid_config", "the aws-secrets-manager backend needs boto3: "
                                               "pip install 'scaivault[aws]'") from None
    region = config.get("region")
    if not isinstance(region, str) or not region:
        raise ScaiVaultError("invalid_config", "config.region is required (one backend per region)")
    keys = {}
    if credentials:
        if not credentials.get("access_key_id") or not credentials.get("secret_access_key"):
            raise ScaiVaultError("invalid_config", "the secret at credentials_path needs access_key_id and "
                                                   "secret_access_key")
        keys = {"aws_access_key_id": credentials["access_key_id"],
                "aws_secret_access_key": credentials["secret_access_key"],
                "aws_session_token": credentials.get("session_token")}
    client = boto3.session.Session().client(
        "secretsmanager", region_name=region, endpoint_url=config.get("endpoint") or None,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}), **keys)
    return SecretsManager(client)


@hookimpl
def scaivault_federation_backends():
    return {"aws-secrets-manager": create}
