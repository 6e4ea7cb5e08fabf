"""DNS provider `route53`: TXT records in AWS Route 53 hosted zones (boto3, extra `aws`).

Settings: `access_key_id` and `secret_access_key` (optional: the host's role otherwise),
`region` (us-east-1), `endpoint_url` (for a Route 53 compatible endpoint, e.g. moto),
`hosted_zone_id` (else found by zone name). A change is waited for until INSYNC; then the
zone's authoritative servers (its delegation set, or `nameservers`) are asked.
"""
from __future__ import annotations

import time
from typing import Any

from scaivault.plugins import hookimpl
from scaivault.services.dns_providers import DnsProviderError, resolve_name_servers


class Route53Provider:
    def __init__(self, config: dict[str, Any]):
        try:
            import boto3
        except ImportError:
            raise DnsProviderError("boto3 is missing: pip install 'scaivault[aws]'") from None
        kwargs: dict[str, Any] = {"region_name": config.get("region") or "us-east-1"}
        if config.get("access_key_id"):
            kwargs["aws_access_key_id"] = config["access_key_id"]
            kwargs["aws_secret_access_key"] = config["secret_access_key"]
        if config.get("endpoint_url"):
            kwargs["endpoint_url"] = config["endpoint_url"]
        self.client = boto3.client("route53", **kwargs)
        self.zone_ids: dict[str, str] = {}
        if config.get("hosted_zone_id"):
            self.fixed_zone_id = str(config["hosted_zone_id"])
        else:
            self.fixed_zone_id = None
        self.insync_timeout = float(config.get("insync_timeout", 120))

    def _call(self, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            raise DnsProviderError(f"Route 53 refused: {exc.response.get('Error', {}).get('Code', 'error')}") from None
        except BotoCoreError as exc:
            raise DnsProviderError(f"Route 53 unreachable ({type(exc).__name__})") from None

    def zone_id(self, zone: str) -> str:
        if self.fixed_zone_id:
            return self.fixed_zone_id
        if zone not in self.zone_ids:
            found = self._call(self.client.list_hosted_zones_by_name, DNSName=zone + ".", MaxItems="1")
            zones = [z for z in found.get("HostedZones", []) if z["Name"].rstrip(".") == zone]
            if not zones:
                raise DnsProviderError(f"no hosted zone named {zone}")
            self.zone_ids[zone] = zones[0]["Id"].split("/")[-1]
        return self.zone_ids[zone]

    def verify(self, zones: list[str]) -> None:
        for zone in zones:
            self.zone_id(zone)

    def _current(self, zone_id: str, fqdn: str) -> list[str]:
        found = self._call(self.client.list_resource_record_sets, HostedZoneId=zone_id, StartRecordName=fqdn + ".",
                           StartRecordType="TXT", MaxItems="1")
        for rrset in found.get("ResourceRecordSets", []):
            if rrset["Name"].rstrip(".") == fqdn and rrset["Type"] == "TXT":
                return [r["Value"] for r in rrset.get("ResourceRecords", [])]
        return []

    def _change(self, zone_id: str, action: str, fqdn: str, values: list[str], ttl: int) -> str:
        change = self._call(self.client.change_resource_record_sets, HostedZoneId=zone_id, ChangeBatch={
            "Changes": [{"Action": action, "ResourceRecordSet": {
                "Name": fqdn + ".", "Type": "TXT", "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}}]})
        return change["ChangeInfo"]["Id"]

    def wait_insync(self, change_id: str) -> bool:
        deadline = time.monotonic() + self.insync_timeout
        while time.monotonic() < deadline:
            status = self._call(self.client.get_change, Id=change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return True
            time.sleep(2)
        return False

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> str:
        zone_id = self.zone_id(zone)
        values = self._current(zone_id, fqdn)
        quoted = f'"{value}"'
        if quoted not in values:
            values.append(quoted)
        change_id = self._change(zone_id, "UPSERT", fqdn, values, ttl)
        if not self.wait_insync(change_id):
            raise DnsProviderError("the Route 53 change did not reach INSYNC in time")
        return change_id

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        zone_id = self.zone_id(zone)
        values = self._current(zone_id, fqdn)
        quoted = f'"{value}"'
        if quoted not in values:
            return
        rest = [v for v in values if v != quoted]
        if rest:
            self._change(zone_id, "UPSERT", fqdn, rest, 60)
        else:
            self._change(zone_id, "DELETE", fqdn, values, self._ttl(zone_id, fqdn))

    def _ttl(self, zone_id: str, fqdn: str) -> int:
        found = self._call(self.client.list_resource_record_sets, HostedZoneId=zone_id, StartRecordName=fqdn + ".",
                           StartRecordType="TXT", MaxItems="1")
        for rrset in found.get("ResourceRecordSets", []):
            if rrset["Name"].rstrip(".") == fqdn and rrset["Type"] == "TXT":
                return int(rrset.get("TTL", 60))
        return 60

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        """The delegation set's servers, resolved (none when they do not resolve, e.g. a test endpoint)."""
        found = self._call(self.client.get_hosted_zone, Id=self.zone_id(zone))
        return resolve_name_servers(found.get("DelegationSet", {}).get("NameServers", []))


@hookimpl
def scaivault_dns_providers():
    return {"route53": Route53Provider}
