"""`scaivault rotation ...` and `scaivault webhooks ...`: rotation schedules and outbound event webhooks."""
from __future__ import annotations

import sys

import click

from . import ClientGroup, sdk
from .output import EXIT_VALIDATION, fail, json_option, print_fields, print_json, print_table, respond


@click.group("rotation", cls=ClientGroup, help="Rotation policies (schedules) and secret policies (value recipes).")
def rotation_group() -> None:
    pass


@rotation_group.command("list", help="Rotation policies.")
@click.option("--active-only", is_flag=True)
@json_option
@click.pass_context
def rotation_list(ctx: click.Context, active_only: bool, as_json: bool) -> None:
    items = list(sdk(ctx).rotation.policies(active_only=active_only))
    if as_json:
        print_json({"policies": items})
        return
    print_table(["id", "name", "interval", "secrets", "active"],
                [[p.get("id"), p.get("name"), p.get("interval"), p.get("secrets_count"), p.get("is_active")]
                 for p in items], empty="(no rotation policies)")


@rotation_group.command("get", help="One rotation policy.")
@click.argument("policy_id")
@json_option
@click.pass_context
def rotation_get(ctx: click.Context, policy_id: str, as_json: bool) -> None:
    policy = sdk(ctx).rotation.get_policy(policy_id)
    if as_json:
        print_json(policy)
    else:
        print_fields(sorted(policy.model_dump().items()))


@rotation_group.command("create", help="Create a rotation policy (--interval 90d).")
@click.argument("name")
@click.option("--interval", required=True)
@click.option("--secret-policy", "secret_policy_id", help="Recipe that generates the new values.")
@click.option("--auto-generate/--no-auto-generate", default=None)
@click.option("--grace-period")
@click.option("--warn-before", help='e.g. "7d,1d"')
@json_option
@click.pass_context
def rotation_create(ctx: click.Context, name, interval, secret_policy_id, auto_generate, grace_period, warn_before,
                    as_json: bool) -> None:
    policy = sdk(ctx).rotation.create_policy(name, interval, secret_policy_id=secret_policy_id,
                                             auto_generate=auto_generate, grace_period=grace_period,
                                             warn_before=warn_before)
    respond(as_json, policy, f"created rotation policy {policy.id} ({policy.name})")


@rotation_group.command("delete", help="Delete a rotation policy (its secrets are detached).")
@click.argument("policy_id")
@click.pass_context
def rotation_delete(ctx: click.Context, policy_id: str) -> None:
    sdk(ctx).rotation.delete_policy(policy_id)
    click.echo(f"deleted rotation policy {policy_id}")


@rotation_group.command("attach", help="Attach a secret to a rotation policy.")
@click.argument("policy_id")
@click.argument("path")
@json_option
@click.pass_context
def rotation_attach(ctx: click.Context, policy_id: str, path: str, as_json: bool) -> None:
    respond(as_json, sdk(ctx).rotation.attach(policy_id, path), f"attached {path} to {policy_id}")


@rotation_group.command("detach", help="Detach a secret from a rotation policy.")
@click.argument("policy_id")
@click.argument("path")
@click.pass_context
def rotation_detach(ctx: click.Context, policy_id: str, path: str) -> None:
    sdk(ctx).rotation.detach(policy_id, path)
    click.echo(f"detached {path} from {policy_id}")


@rotation_group.command("rotate", help="Rotate a policy's secrets now (or only --path ...).")
@click.argument("policy_id")
@click.option("--path", "paths", multiple=True)
@json_option
@click.pass_context
def rotation_rotate(ctx: click.Context, policy_id: str, paths: tuple[str, ...], as_json: bool) -> None:
    result = sdk(ctx).rotation.rotate(policy_id, list(paths) or None)
    if as_json:
        print_json(result)
        return
    items = result if isinstance(result, list) else [result]
    print_table(["path", "status", "new version"],
                [[i.get("secret_path"), i.get("status"), i.get("new_version")] for i in items], empty="(nothing rotated)")


@rotation_group.command("history", help="Rotation history of a policy.")
@click.argument("policy_id")
@click.option("--status", type=click.Choice(["success", "failed", "pending"]))
@json_option
@click.pass_context
def rotation_history(ctx: click.Context, policy_id: str, status: str | None, as_json: bool) -> None:
    body = sdk(ctx).rotation.history(policy_id, status=status)
    if as_json:
        print_json(body)
        return
    print_table(["path", "status", "trigger", "old", "new", "completed"],
                [[h.get("secret_path"), h.get("status"), h.get("trigger"), h.get("old_version"), h.get("new_version"),
                  h.get("completed_at")] for h in body.get("data", [])], empty="(no rotations)")


@click.group("webhooks", cls=ClientGroup, help="Signed outbound event webhooks (admins).")
def webhooks_group() -> None:
    pass


@webhooks_group.command("list", help="Webhooks of the tenant.")
@json_option
@click.pass_context
def webhooks_list(ctx: click.Context, as_json: bool) -> None:
    items = list(sdk(ctx).webhooks.list())
    if as_json:
        print_json({"webhooks": items})
        return
    print_table(["id", "name", "url", "events", "enabled"], [[w.id, w.name, w.url, w.events, w.enabled] for w in items],
                empty="(no webhooks)")


@webhooks_group.command("create", help="Create a webhook; the signing secret is read from stdin (never argv).")
@click.argument("name")
@click.option("--url", required=True)
@click.option("--event", "events", multiple=True, required=True, help="secret.updated, secret.*, * (repeatable).")
@click.option("--path-prefix", help="Only events about secrets under this prefix.")
@json_option
@click.pass_context
def webhooks_create(ctx: click.Context, name, url, events, path_prefix, as_json: bool) -> None:
    secret = (click.prompt("Signing secret", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()).strip()
    if not secret:
        fail("no signing secret on stdin", EXIT_VALIDATION)
    hook = sdk(ctx).webhooks.create(name, url, secret, list(events),
                                    filters={"path_prefix": path_prefix} if path_prefix else None)
    respond(as_json, hook, f"created webhook {hook.id} ({hook.name})")


@webhooks_group.command("delete", help="Delete a webhook.")
@click.argument("webhook_id")
@click.pass_context
def webhooks_delete(ctx: click.Context, webhook_id: str) -> None:
    sdk(ctx).webhooks.delete(webhook_id)
    click.echo(f"deleted webhook {webhook_id}")


@webhooks_group.command("test", help="Send a signed webhook.test event now.")
@click.argument("webhook_id")
@json_option
@click.pass_context
def webhooks_test(ctx: click.Context, webhook_id: str, as_json: bool) -> None:
    result = sdk(ctx).webhooks.test(webhook_id)
    if as_json:
        print_json(result)
    else:
        print_fields(sorted(result.items()))


@webhooks_group.command("deliveries", help="The delivery log of a webhook, newest first.")
@click.argument("webhook_id")
@click.option("--status", type=click.Choice(["success", "failed", "pending", "skipped"]))
@json_option
@click.pass_context
def webhooks_deliveries(ctx: click.Context, webhook_id: str, status: str | None, as_json: bool) -> None:
    body = sdk(ctx).webhooks.deliveries(webhook_id, status=status)
    if as_json:
        print_json(body)
        return
    print_table(["delivery", "event", "status", "attempts"],
                [[d.get("id") or d.get("delivery_id"), d.get("event_type"), d.get("status"), d.get("attempts")]
                 for d in body.get("deliveries", [])], empty="(no deliveries)")
