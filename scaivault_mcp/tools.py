"""The MCP tools: one declaration each (name, typed arguments, whether it writes, handler).

Handlers receive the async SDK client, the safety controls and validated arguments; they
check every path with the controls before calling the API, and mask values on the way out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from scaivault_sdk import ScaiVaultClient
from scaivault_sdk.models import SecretType

from .controls import Refused, SafetyControls

Handler = Callable[[ScaiVaultClient, SafetyControls, Any], Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    arguments: type[BaseModel]
    writes: bool
    handler: Handler

    def input_schema(self) -> dict[str, Any]:
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return schema


TOOLS: dict[str, ToolSpec] = {}


def tool(name: str, arguments: type[BaseModel], *, writes: bool = False):
    def register(handler: Handler) -> Handler:
        TOOLS[f"scaivault_{name}"] = ToolSpec(f"scaivault_{name}", (handler.__doc__ or "").strip(), arguments,
                                              writes, handler)
        return handler
    return register


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


PathField = Field(min_length=1, max_length=1024, description="secret path such as apps/web/db")


class PathArgs(Args):
    path: str = PathField


class ReadArgs(PathArgs):
    version: int | None = Field(default=None, ge=1, description="version to read; default the current one")


class WriteArgs(PathArgs):
    data: dict[str, Any] = Field(description="the secret's keys and values")
    secret_type: SecretType | None = Field(default=None, description="kv (default), json, certificate, ssh_key, api_key")
    metadata: dict[str, Any] | None = Field(default=None, description="description, tags, owner, custom keys")
    expires_in: str | None = Field(default=None, description="expiry such as 30d")
    cas: int | None = Field(default=None, ge=0, description="check-and-set: 0 = create only, N = only over version N")


class DeleteArgs(PathArgs):
    permanent: bool = Field(default=False, description="destroy every version now (cannot be restored)")


class ListArgs(Args):
    prefix: str = Field(default="", max_length=1024, description="only paths under this prefix")
    recursive: bool = Field(default=True, description="false: one level (folders and secrets)")
    limit: int = Field(default=100, ge=1, le=1000, description="at most this many secrets")


class ExpiringArgs(Args):
    days: int = Field(ge=1, le=3650, description="window in days")
    prefix: str = Field(default="", max_length=1024)


class BatchArgs(Args):
    paths: list[str] = Field(min_length=1, max_length=100, description="up to 100 secret paths")


class MetadataPatchArgs(PathArgs):
    metadata: dict[str, Any] | None = Field(default=None, description="merge patch; a null value removes a key")
    max_versions: int | None = Field(default=None, ge=1)
    expires_in: str | None = None


class DestroyArgs(PathArgs):
    versions: list[int] = Field(min_length=1, max_length=100, description="versions to erase for good")


class NoArgs(Args):
    pass


class PolicyIdArgs(Args):
    policy_id: str = Field(min_length=1, max_length=128)


class Rule(Args):
    path_pattern: str = Field(description="glob: * one segment, ** any depth")
    permissions: list[Literal["read", "write", "delete", "list", "rotate", "admin"]] = Field(min_length=1)
    effect: Literal["allow", "deny"] | None = None


class PolicyCreateArgs(Args):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    rules: list[Rule] = Field(min_length=1)


class PolicyDeleteArgs(PolicyIdArgs):
    force: bool = Field(default=False, description="also remove its bindings")


class BindArgs(PolicyIdArgs):
    identity_id: str = Field(description="user:<email>, sa:<name> or group:<name>")
    identity_type: Literal["user", "service_account", "group"]


class UnbindArgs(PolicyIdArgs):
    binding_id: str


class PolicyTestArgs(PathArgs):
    permission: Literal["read", "write", "delete", "list", "rotate", "admin"]
    identity_id: str | None = Field(default=None, description="default: the MCP server's own identity")


class AuditArgs(Args):
    path_prefix: str | None = Field(default=None, max_length=1024, description="only entries about these secrets")
    action: str | None = Field(default=None, description="read, write, delete, ... (comma-separated)")
    identity_id: str | None = None
    since: str | None = Field(default=None, description="ISO 8601 start")
    until: str | None = Field(default=None, description="ISO 8601 end")
    success: bool | None = None
    limit: int = Field(default=50, ge=1, le=500)


def dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------ secrets
@tool("read_secret", ReadArgs)
async def read_secret(client, controls, args: ReadArgs):
    """Read a secret's value (current version unless `version`). Values may be masked by SCAIVAULT_MASK_VALUES."""
    secret = dump(await client.secrets.read(controls.check_path(args.path), version=args.version))
    secret["data"] = controls.mask(secret["data"])
    return secret


@tool("write_secret", WriteArgs, writes=True)
async def write_secret(client, controls, args: WriteArgs):
    """Write a new version of a secret (creates it when new). Returns its metadata, never the value."""
    return dump(await client.secrets.write(controls.check_path(args.path), args.data, secret_type=args.secret_type,
                                           metadata=args.metadata, expires_in=args.expires_in, cas=args.cas))


@tool("delete_secret", DeleteArgs, writes=True)
async def delete_secret(client, controls, args: DeleteArgs):
    """Delete a secret: restorable until its retention ends, or for good with `permanent`."""
    return dump(await client.secrets.delete(controls.check_path(args.path), permanent=args.permanent))


@tool("restore_secret", PathArgs, writes=True)
async def restore_secret(client, controls, args: PathArgs):
    """Restore a soft-deleted secret."""
    return dump(await client.secrets.restore(controls.check_path(args.path)))


@tool("destroy_secret_versions", DestroyArgs, writes=True)
async def destroy_secret_versions(client, controls, args: DestroyArgs):
    """Erase the values of some versions of a secret for good."""
    return dump(await client.secrets.destroy(controls.check_path(args.path), args.versions))


@tool("list_secrets", ListArgs)
async def list_secrets(client, controls, args: ListArgs):
    """List secret paths under a folder prefix (whole segments), and its folders when not recursive; never values."""
    prefix = controls.check_listing(args.prefix)
    prefix = prefix + "/" if prefix else ""          # whole segments, as the controls match them
    items, folders, cursor = [], [], None
    while len(items) < args.limit:
        page = await client.secrets.list_page(prefix, recursive=args.recursive, cursor=cursor,
                                              page_size=min(args.limit, 1000))
        items += [s for s in page.secrets if controls.permits(s.path)]
        folders += [f for f in (page.folders or []) if _folder_visible(controls, f)]
        cursor = page.cursor
        if not page.has_more or not cursor:
            break
    out: dict[str, Any] = {"secrets": dump(items[:args.limit])}
    if not args.recursive:
        out["folders"] = folders
    return out


def _folder_visible(controls: SafetyControls, folder: str) -> bool:
    clean = folder.strip("/")
    try:
        controls.check_listing(clean)
    except Refused:
        return False
    return True


@tool("list_expiring_secrets", ExpiringArgs)
async def list_expiring_secrets(client, controls, args: ExpiringArgs):
    """Secrets expiring within `days` days (already expired ones included)."""
    prefix = controls.check_listing(args.prefix)
    prefix = prefix + "/" if prefix else ""
    items = [s async for s in client.secrets.expiring(args.days, prefix=prefix) if controls.permits(s.path)]
    return {"secrets": dump(items)}


@tool("get_secret_versions", PathArgs)
async def get_secret_versions(client, controls, args: PathArgs):
    """The versions of a secret (numbers, dates, authors, state); never values."""
    return dump(await client.secrets.versions(controls.check_path(args.path)))


@tool("get_secret_metadata", PathArgs)
async def get_secret_metadata(client, controls, args: PathArgs):
    """A secret's metadata, version count, expiry and rotation link; never the value."""
    return dump(await client.secrets.read_metadata(controls.check_path(args.path)))


@tool("update_secret_metadata", MetadataPatchArgs, writes=True)
async def update_secret_metadata(client, controls, args: MetadataPatchArgs):
    """Change a secret's metadata, max_versions or expiry without writing a new version."""
    return dump(await client.secrets.update_metadata(controls.check_path(args.path), args.metadata,
                                                     max_versions=args.max_versions, expires_in=args.expires_in))


@tool("batch_read_secrets", BatchArgs)
async def batch_read_secrets(client, controls, args: BatchArgs):
    """Read up to 100 secrets at once; each path succeeds or fails on its own."""
    paths = [controls.check_path(p) for p in args.paths]
    result = dump(await client.secrets.batch_read(paths))
    for secret in result["secrets"].values():
        secret["data"] = controls.mask(secret["data"])
    return result


# ------------------------------------------------------------------ policies
@tool("list_policies", NoArgs)
async def list_policies(client, controls, args: NoArgs):
    """The tenant's access policies (names, rule and binding counts)."""
    return {"policies": dump([p async for p in client.policies.list()])}


@tool("get_policy", PolicyIdArgs)
async def get_policy(client, controls, args: PolicyIdArgs):
    """One policy with its rules and bindings."""
    return dump(await client.policies.get(args.policy_id))


@tool("create_policy", PolicyCreateArgs, writes=True)
async def create_policy(client, controls, args: PolicyCreateArgs):
    """Create an access policy; every rule's pattern must stay within the allowed paths."""
    for rule in args.rules:
        controls.check_pattern(rule.path_pattern)
    return dump(await client.policies.create(args.name, [r.model_dump(exclude_none=True) for r in args.rules],
                                             description=args.description))


@tool("delete_policy", PolicyDeleteArgs, writes=True)
async def delete_policy(client, controls, args: PolicyDeleteArgs):
    """Delete a policy (refused while bound unless `force`)."""
    await _check_policy_reach(client, controls, args.policy_id)
    return dump(await client.policies.delete(args.policy_id, force=args.force))


@tool("bind_policy", BindArgs, writes=True)
async def bind_policy(client, controls, args: BindArgs):
    """Bind a policy to a user, service account or group."""
    await _check_policy_reach(client, controls, args.policy_id)
    return dump(await client.policies.bind(args.policy_id, args.identity_type, args.identity_id))


@tool("unbind_policy", UnbindArgs, writes=True)
async def unbind_policy(client, controls, args: UnbindArgs):
    """Remove one binding of a policy."""
    await _check_policy_reach(client, controls, args.policy_id)
    return dump(await client.policies.unbind(args.policy_id, args.binding_id))


@tool("test_policy", PolicyTestArgs)
async def test_policy(client, controls, args: PolicyTestArgs):
    """Dry run: would an identity get a permission on a path, and by which rule."""
    return dump(await client.policies.test(controls.check_path(args.path), args.permission,
                                           identity_id=args.identity_id))


async def _check_policy_reach(client, controls: SafetyControls, policy_id: str) -> None:
    """Changing a policy's bindings changes access to its paths: they must all be permitted."""
    if controls.allowed or controls.denied:
        for rule in (await client.policies.get(policy_id)).rules:
            controls.check_pattern(rule.path_pattern)


# ------------------------------------------------------------------ audit and identity
@tool("query_audit_logs", AuditArgs)
async def query_audit_logs(client, controls, args: AuditArgs):
    """Audit entries, newest first (admins); with SCAIVAULT_ALLOWED_PATHS a path_prefix inside them is required."""
    prefix = args.path_prefix
    if controls.allowed or prefix:
        if not prefix:
            raise Refused("SCAIVAULT_ALLOWED_PATHS", "give a path_prefix inside the allowed prefixes")
        prefix = controls.check_path(prefix)
    entries = [e async for e in client.audit.query(path_prefix=prefix, action=args.action,
                                                    identity_id=args.identity_id, since=args.since, until=args.until,
                                                    success=args.success, page_size=min(args.limit, 500),
                                                    max_items=args.limit)]
    if controls.allowed or controls.denied:
        entries = [e for e in entries if e.secret_path and controls.permits(e.secret_path)]
    return {"logs": dump(entries)}


@tool("whoami", NoArgs)
async def whoami(client, controls, args: NoArgs):
    """The identity, tenant, scopes and roles this MCP server acts as, and its safety controls."""
    return {**dump(await client.auth.whoami()), "mcp_controls": controls.describe()}
