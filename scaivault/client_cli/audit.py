"""`scaivault audit ...`: query, export (and download), exports, summary, verify."""
from __future__ import annotations

import time

import click

from . import ClientGroup, sdk
from .output import fail, json_option, print_fields, print_json, print_table

FILTERS = [
    click.option("--from", "since", help="ISO 8601 start (e.g. 2026-01-31T00:00:00Z)."),
    click.option("--to", "until", help="ISO 8601 end."),
    click.option("--action", "actions", multiple=True, help="read, write, delete, ... (repeatable)."),
    click.option("--identity", "identity_id", help="user:<email>, sa:<name>, ..."),
    click.option("--path-prefix", help="Only entries about secrets under this prefix."),
    click.option("--success/--failure", "success", default=None, help="Only successful (or failed) requests."),
]


def audit_filters(func):
    for option in reversed(FILTERS):
        func = option(func)
    return func


@click.group("audit", cls=ClientGroup, help="Query and export the audit log (admins).")
def audit_group() -> None:
    pass


@audit_group.command("query", help="Audit entries, newest first.")
@audit_filters
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@json_option
@click.pass_context
def query(ctx: click.Context, since, until, actions, identity_id, path_prefix, success, limit: int,
          as_json: bool) -> None:
    entries = list(sdk(ctx).audit.query(since=since, until=until, action=list(actions) or None,
                                        identity_id=identity_id, path_prefix=path_prefix, success=success,
                                        page_size=min(limit, 1000), max_items=limit))
    if as_json:
        print_json({"logs": entries})
        return
    print_table(["time", "action", "identity", "path", "ok", "request"],
                [[e.timestamp, e.action, e.identity_id, e.secret_path, e.success, e.request_id] for e in entries],
                empty="(no entries)")


@audit_group.command("export", help="Start an export job; with --wait, wait for it and write the file(s) to "
                                    "--output (or stdout).")
@audit_filters
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--wait", is_flag=True, help="Poll until the job completes, then download.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write (with --wait).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait with --wait.")
@json_option
@click.pass_context
def export(ctx: click.Context, since, until, actions, identity_id, path_prefix, success, fmt: str, wait: bool,
           output: str | None, timeout: float, as_json: bool) -> None:
    client = sdk(ctx)
    filters = {k: v for k, v in (("action", list(actions) or None), ("identity_id", identity_id),
                                 ("path_prefix", path_prefix), ("success", success)) if v is not None}
    job = client.audit.export(since=since, until=until, format=fmt, filters=filters or None)
    if wait:
        deadline = time.monotonic() + timeout
        while job.status not in ("completed", "failed"):
            if time.monotonic() > deadline:
                fail(f"export {job.export_id} still {job.status} after {timeout:g}s", 1)
            time.sleep(0.5)
            job = client.audit.get_export(job.export_id)
        if job.status == "failed":
            fail(f"export {job.export_id} failed: {job.error}", 1)
        files = job.manifest or []
        chunks = [client.audit.download_export_file(job.export_id, part["file"]) for part in files]
        if output:
            with open(output, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
        elif not as_json:
            for chunk in chunks:
                click.echo(chunk.decode("utf-8"), nl=False)
            return
    if as_json:
        print_json(job)
    else:
        print_fields([("export", job.export_id), ("status", job.status), ("records", job.records_written
                                                                          or job.estimated_records),
                      ("written to", output)])


@audit_group.command("exports", help="Export jobs of this tenant, newest first.")
@json_option
@click.pass_context
def exports(ctx: click.Context, as_json: bool) -> None:
    jobs = sdk(ctx).audit.exports()
    if as_json:
        print_json({"exports": jobs})
        return
    print_table(["id", "status", "format", "records", "created"],
                [[j.export_id, j.status, j.format, j.records_written, j.created_at] for j in jobs],
                empty="(no exports)")


@audit_group.command("summary", help="Counts by action, identity and outcome (default: the last 30 days).")
@click.option("--from", "since")
@click.option("--to", "until")
@json_option
@click.pass_context
def summary(ctx: click.Context, since, until, as_json: bool) -> None:
    body = sdk(ctx).audit.summary(since=since, until=until)
    if as_json:
        print_json(body)
        return
    print_fields(sorted(body.items()))


@audit_group.command("verify", help="Check the tenant's audit hash chains; exit 1 when broken.")
@json_option
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    report = sdk(ctx).audit.verify()
    if as_json:
        print_json(report)
    else:
        print_fields(sorted(report.items()))
    if not report.get("valid", False):
        raise click.exceptions.Exit(1)
