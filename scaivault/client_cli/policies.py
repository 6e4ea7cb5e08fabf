"""`scaivault policies ...`: list, get, create, update, delete, bindings, bind, unbind, test."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import ClientGroup, sdk
from .output import respond, EXIT_VALIDATION, fail, json_option, print_fields, print_json, print_table


@click.group("policies", cls=ClientGroup, help="Access policies (path globs) and their bindings.")
def policies_group() -> None:
    pass


def _policy_file(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()
        body = json.loads(text)
    except OSError as exc:
        fail(f"cannot read {name}: {exc.strerror}", 1)
    except ValueError:
        fail(f"{name} is not valid JSON", EXIT_VALIDATION)
    if not isinstance(body, dict):
        fail(f"{name} must hold a JSON object", EXIT_VALIDATION)
    return body


def _rules(rule_specs: tuple[str, ...]) -> list[dict[str, Any]]:
    """--rule 'PATTERN:perm,perm[:deny]'."""
    rules = []
    for spec in rule_specs:
        pattern, _, rest = spec.partition(":")
        permissions, _, effect = rest.partition(":")
        if not pattern or not permissions:
            fail(f"--rule expects PATTERN:PERMISSION[,PERMISSION...][:deny], got {spec!r}", EXIT_VALIDATION)
        rule = {"path_pattern": pattern, "permissions": [p for p in permissions.split(",") if p]}
        if effect:
            rule["effect"] = effect
        rules.append(rule)
    return rules


def _show(policy, as_json: bool) -> None:
    if as_json:
        print_json(policy)
        return
    print_fields([("id", policy.id), ("name", policy.name), ("description", policy.description),
                  ("scope", policy.scope), ("active", policy.is_active), ("updated", policy.updated_at)])
    print_table(["pattern", "permissions", "effect"],
                [[r.path_pattern, r.permissions, r.effect or "allow"] for r in policy.rules], empty="(no rules)")
    if policy.bindings:
        print_table(["binding", "identity type", "identity", "expires"],
                    [[b.id, b.identity_type, b.identity_id, b.expires_at] for b in policy.bindings])


@policies_group.command("list", help="Every policy of the tenant.")
@json_option
@click.pass_context
def list_policies(ctx: click.Context, as_json: bool) -> None:
    items = list(sdk(ctx).policies.list())
    if as_json:
        print_json({"policies": items})
        return
    print_table(["id", "name", "scope", "rules", "bindings", "active"],
                [[p.id, p.name, p.scope, p.rule_count, p.binding_count, p.is_active] for p in items],
                empty="(no policies)")


@policies_group.command("get", help="One policy with its rules and bindings.")
@click.argument("policy_id")
@json_option
@click.pass_context
def get(ctx: click.Context, policy_id: str, as_json: bool) -> None:
    _show(sdk(ctx).policies.get(policy_id), as_json)


@policies_group.command("create", help="Create a policy from --rule options or a JSON --file "
                                       "({name, description, rules: [{path_pattern, permissions, effect}]}).")
@click.option("--name", help="Policy name (or in --file).")
@click.option("--description", help="Description.")
@click.option("--rule", "rule_specs", multiple=True, metavar="PATTERN:PERMS[:deny]",
              help="e.g. 'apps/web/*:read,list' (repeatable).")
@click.option("--file", "file_name", help="JSON body ('-' = stdin).")
@json_option
@click.pass_context
def create(ctx: click.Context, name: str | None, description: str | None, rule_specs: tuple[str, ...],
           file_name: str | None, as_json: bool) -> None:
    body = _policy_file(file_name) if file_name else {}
    name = name or body.get("name")
    rules = _rules(rule_specs) or body.get("rules")
    if not name or not rules:
        fail("a policy needs --name and at least one --rule (or both in --file)", EXIT_VALIDATION)
    policy = sdk(ctx).policies.create(name, rules, description=description or body.get("description"),
                                      scope=body.get("scope"), is_active=body.get("is_active"))
    respond(as_json, policy, f"created policy {policy.id} ({policy.name})")


@policies_group.command("update", help="Change a policy's name, description, rules (replaced) or state.")
@click.argument("policy_id")
@click.option("--name")
@click.option("--description")
@click.option("--rule", "rule_specs", multiple=True, metavar="PATTERN:PERMS[:deny]", help="Replaces all rules.")
@click.option("--active/--inactive", default=None, help="Enable or disable the policy.")
@json_option
@click.pass_context
def update(ctx: click.Context, policy_id: str, name: str | None, description: str | None,
           rule_specs: tuple[str, ...], active: bool | None, as_json: bool) -> None:
    policy = sdk(ctx).policies.update(policy_id, name=name, description=description,
                                      rules=_rules(rule_specs) or None, is_active=active)
    respond(as_json, policy, f"updated policy {policy.id}")


@policies_group.command("delete", help="Delete a policy (refused while bound unless --force).")
@click.argument("policy_id")
@click.option("--force", is_flag=True, help="Remove its bindings too.")
@json_option
@click.pass_context
def delete(ctx: click.Context, policy_id: str, force: bool, as_json: bool) -> None:
    result = sdk(ctx).policies.delete(policy_id, force=force)
    respond(as_json, result, f"deleted policy {result.id}")


@policies_group.command("bindings", help="Who a policy is bound to.")
@click.argument("policy_id")
@json_option
@click.pass_context
def bindings(ctx: click.Context, policy_id: str, as_json: bool) -> None:
    items = sdk(ctx).policies.bindings(policy_id)
    if as_json:
        print_json({"bindings": items})
        return
    print_table(["id", "identity type", "identity", "expires", "created"],
                [[b.id, b.identity_type, b.identity_id, b.expires_at, b.created_at] for b in items],
                empty="(not bound)")


@policies_group.command("bind", help="Bind a policy to user:<email>, sa:<name> or group:<name>.")
@click.argument("policy_id")
@click.argument("identity_id")
@click.option("--type", "identity_type", type=click.Choice(["user", "service_account", "group"]),
              help="Default: from the identity's prefix.")
@click.option("--expires-at", help="ISO 8601 time the binding lapses.")
@json_option
@click.pass_context
def bind(ctx: click.Context, policy_id: str, identity_id: str, identity_type: str | None, expires_at: str | None,
         as_json: bool) -> None:
    kind = identity_type or {"user": "user", "sa": "service_account", "group": "group"}.get(identity_id.split(":")[0])
    if kind is None:
        fail("give --type, or an identity starting with user:, sa: or group:", EXIT_VALIDATION)
    binding = sdk(ctx).policies.bind(policy_id, kind, identity_id, expires_at=expires_at)
    respond(as_json, binding, f"bound {policy_id} to {binding.identity_id} ({binding.id})")


@policies_group.command("unbind", help="Remove one binding of a policy.")
@click.argument("policy_id")
@click.argument("binding_id")
@json_option
@click.pass_context
def unbind(ctx: click.Context, policy_id: str, binding_id: str, as_json: bool) -> None:
    result = sdk(ctx).policies.unbind(policy_id, binding_id)
    respond(as_json, result, f"removed binding {result.id}")


@policies_group.command("test", help="Dry run: would IDENTITY (default: you) get PERMISSION on PATH, and why.")
@click.argument("path")
@click.argument("permission", type=click.Choice(["read", "write", "delete", "list", "rotate", "admin"]))
@click.option("--identity", "identity_id", help="user:<email>, sa:<name> (admins only for others).")
@click.option("--group", "groups", multiple=True, help="group:<name> to evaluate as a member of (repeatable).")
@json_option
@click.pass_context
def test(ctx: click.Context, path: str, permission: str, identity_id: str | None, groups: tuple[str, ...],
         as_json: bool) -> None:
    result = sdk(ctx).policies.test(path, permission, identity_id=identity_id, groups=list(groups) or None)
    if as_json:
        print_json(result)
        return
    verdict = "ALLOWED" if result.allowed else f"DENIED ({result.code})"
    click.echo(f"{verdict}: {result.identity_id} {permission} {path}")
    reason = result.decision.get("reason") or result.decision.get("rule")
    if reason:
        click.echo(f"because: {reason if isinstance(reason, str) else json.dumps(reason)}")
