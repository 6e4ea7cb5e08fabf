"""Source: AWS Secrets Manager (through boto3 and its standard credential chain). AWSPREVIOUS then
AWSCURRENT are replayed; the description and tags become metadata; a SecretString holding a JSON
object is the secret's data, any other string becomes {"value": ...}, a SecretBinary {"value_base64": ...}."""
from __future__ import annotations

import base64
import json
from typing import Any, Callable

from .engine import Entry, SourceError, SourceSecret, Version, scaivault_path

EXIT_AUTHENTICATION = 2
EXIT_AUTHORISATION = 3
AUTH_CODES = {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
              "InvalidClientTokenId", "AuthFailure"}


class AwsSecretsManagerSource:
    def __init__(self, region: str, *, endpoint_url: str | None = None, profile: str | None = None):
        try:
            import boto3
        except ModuleNotFoundError:
            raise SourceError("`import aws-sm` needs boto3: pip install 'scaivault[importers]'") from None
        from botocore.exceptions import BotoCoreError, ProfileNotFound

        self.region = region
        try:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            self.client = session.client("secretsmanager", endpoint_url=endpoint_url)
        except ProfileNotFound:
            raise SourceError(f"no AWS profile named {profile!r}", EXIT_AUTHENTICATION) from None
        except (BotoCoreError, ValueError) as exc:
            raise SourceError(f"cannot set up the AWS client: {type(exc).__name__}") from None

    def entries(self, prefix: str, to: str | None) -> list[Entry]:
        listed: list[dict] = []
        paginator = self.client.get_paginator("list_secrets")
        kwargs: dict[str, Any] = {"Filters": [{"Key": "name", "Values": [prefix]}]} if prefix else {}
        for page in self._call(lambda: list(paginator.paginate(**kwargs))):
            listed += [s for s in page.get("SecretList", []) if s["Name"].startswith(prefix)]
        listed.sort(key=lambda s: s["Name"])
        return [Entry(self._destination(s["Name"], prefix, to), self._loader(s, self._destination(s["Name"], prefix, to)))
                for s in listed]

    @staticmethod
    def _destination(name: str, prefix: str, to: str | None) -> str:
        if to is None:
            return scaivault_path(name)
        return "/".join(p for p in (to.strip("/"), scaivault_path(name[len(prefix):])) if p)

    def _loader(self, listed: dict, destination: str) -> Callable[[], SourceSecret | None]:
        def load() -> SourceSecret | None:
            stages = listed.get("SecretVersionsToStages")
            if stages is None:
                stages = self._call(lambda: self.client.describe_secret(SecretId=listed["ARN"])).get(
                    "VersionIdsToStages", {})
            by_stage = {stage: vid for vid, names in stages.items() for stage in names}
            current = by_stage.get("AWSCURRENT")
            if current is None:
                return None
            value = self._value(listed["ARN"], current)
            if value is None:
                return None
            versions = [Version(vid, self._reader(listed["ARN"], vid))
                        for vid in (by_stage.get("AWSPREVIOUS"), current) if vid]
            return SourceSecret(path=destination, origin=f"aws-sm:{self.region}:{listed['Name']}", current=value,
                                versions=versions, metadata=aws_metadata(listed))
        return load

    def _reader(self, arn: str, version_id: str) -> Callable[[], dict | None]:
        return lambda: self._value(arn, version_id)

    def _value(self, arn: str, version_id: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            answer = self._call(lambda: self.client.get_secret_value(SecretId=arn, VersionId=version_id), raw=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ResourceNotFoundException", "InvalidRequestException"):
                return None                     # deleted (or scheduled for deletion) meanwhile
            raise self._error(exc) from None
        return secret_data(answer)

    def _call(self, fn: Callable[[], Any], raw: bool = False) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

        try:
            return fn()
        except (NoCredentialsError, PartialCredentialsError):
            raise SourceError("no AWS credentials found (environment, profile, or instance role)",
                              EXIT_AUTHENTICATION) from None
        except ClientError as exc:
            if raw:
                raise
            raise self._error(exc) from None
        except BotoCoreError as exc:
            raise SourceError(f"AWS Secrets Manager failed: {type(exc).__name__}") from None

    @staticmethod
    def _error(exc: Any) -> SourceError:
        code = exc.response.get("Error", {}).get("Code", "Error")
        if code in AUTH_CODES:
            return SourceError(f"AWS refused the credentials: {code}", EXIT_AUTHENTICATION)
        if code == "AccessDeniedException":
            return SourceError(f"AWS denied access: {code}", EXIT_AUTHORISATION)
        return SourceError(f"AWS Secrets Manager error: {code}")


def secret_data(answer: dict) -> dict[str, Any]:
    if answer.get("SecretString") is not None:
        text = answer["SecretString"]
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {"value": text}
    return {"value_base64": base64.b64encode(answer.get("SecretBinary") or b"").decode()}


def aws_metadata(listed: dict) -> dict[str, Any]:
    """Description as `description`; tags as `aws_tags` {key: value} and, where short enough, as
    ScaiVault tags `key=value` (searchable with `secrets list --tag`)."""
    out: dict[str, Any] = {}
    if listed.get("Description"):
        out["description"] = listed["Description"]
    tags = {t["Key"]: t.get("Value", "") for t in listed.get("Tags") or []}
    if tags:
        out["aws_tags"] = tags
        short = [f"{k}={v}" for k, v in sorted(tags.items()) if len(f"{k}={v}") <= 64]
        if short:
            out["tags"] = short[:50]
    return out
