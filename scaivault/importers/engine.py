"""The importer core shared by every source: compare with ScaiVault, replay versions, summarise.

Idempotence rests on three metadata keys written with every imported version (never values):
`import_source` (where it came from, e.g. `vault:secret/apps/db`), `import_source_version` (the
source's id of the version, when it has one) and `import_scaivault_version` (the ScaiVault version
that write created: known in advance because every write carries `options.cas`). A secret is
ScaiVault's own again once a later version exists there, and is then never overwritten unless the
caller asks for it (--overwrite).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

MARK_SOURCE = "import_source"
MARK_REF = "import_source_version"
MARK_VERSION = "import_scaivault_version"
PAGE = 100                      # the API's batch read takes at most 100 paths
RATE_LIMIT_WAITS = 30           # waits per call for a 429 the SDK gave up on (Retry-After beyond its max_wait)

WRITTEN, UNCHANGED, SKIPPED, FAILED = "written", "unchanged", "skipped", "failed"


class SourceError(Exception):
    """The source refused or failed. `exit_code` follows the CLI's table when it ends the whole run."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Version:
    """One version at the source: its id there (None when the source has no versions) and how to read it."""

    ref: str | None
    load: Callable[[], dict[str, Any] | None]


@dataclass
class SourceSecret:
    path: str                           # destination path in ScaiVault
    origin: str                         # e.g. "vault:secret/apps/db"
    current: dict[str, Any]             # the source's current value (already read)
    versions: list[Version]             # readable versions, oldest first; the last one is `current`
    metadata: dict[str, Any] = field(default_factory=dict)
    max_versions: int | None = None

    @property
    def current_ref(self) -> str | None:
        return self.versions[-1].ref


@dataclass
class Entry:
    """A secret the source listed: where it goes, and how to read it (None: deleted at the source)."""

    path: str
    load: Callable[[], SourceSecret | None]


@dataclass
class Outcome:
    path: str
    status: str                 # written | unchanged | skipped | failed
    versions: int = 0           # versions written (or that would be, in a dry run)
    detail: str | None = None   # created | updated | metadata, or why skipped / failed

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "versions": self.versions, "detail": self.detail}


@dataclass
class Summary:
    dry_run: bool = False
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def versions_written(self) -> int:
        return sum(o.versions for o in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "total": len(self.outcomes),
                **{s: self.count(s) for s in (WRITTEN, UNCHANGED, SKIPPED, FAILED)},
                "versions_written": self.versions_written,
                "results": [o.as_dict() for o in self.outcomes if o.status != UNCHANGED]}


@dataclass
class _Plan:
    versions: list[Version] = field(default_factory=list)
    patch: dict[str, Any] | None = None
    reason: str | None = None


def scaivault_path(name: str) -> str:
    """A source name as a ScaiVault path: lowercase; a character outside a-z, 0-9, '-', '_' becomes '-';
    empty segments (leading, trailing or doubled '/') dropped. Names that then collide fail, never merge."""
    segments = (re.sub(r"[^a-z0-9_-]", "-", part) for part in name.lower().split("/"))
    return "/".join(part for part in segments if part)


def plain_metadata(metadata: Any) -> dict[str, Any]:
    """A secret's metadata as a dict, without the SDK model's empty defaults."""
    if metadata is None:
        return {}
    raw = metadata.model_dump(exclude_none=True) if hasattr(metadata, "model_dump") else dict(metadata)
    if raw.get("tags") == []:
        raw.pop("tags")
    return raw


def secret_type_for(data: dict[str, Any]) -> str:
    return "kv" if all(isinstance(v, str) for v in data.values()) else "json"


class Importer:
    """Runs one import through a SyncScaiVaultClient. `advance()` is called once per source secret;
    `on_wait(seconds)` each time a rate limit makes the import wait (a long import outlasts the
    write limit's window, and every call it repeats is safe: reads, cas writes, metadata patches)."""

    def __init__(self, client: Any, *, dry_run: bool = False, overwrite: bool = False,
                 on_wait: Callable[[float], None] = lambda seconds: None, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.dry_run = dry_run
        self.overwrite = overwrite
        self.on_wait = on_wait
        self.sleep = sleep

    def _api(self, call: Callable[[], Any]) -> Any:
        from scaivault_sdk.errors import RateLimitError

        for attempt in range(RATE_LIMIT_WAITS + 1):
            try:
                return call()
            except RateLimitError as exc:
                if attempt == RATE_LIMIT_WAITS:
                    raise
                delay = max(float(exc.retry_after or 1.0), 0.1)
                self.on_wait(delay)
                self.sleep(delay)

    def run(self, entries: Sequence[Entry], advance: Callable[[], None] = lambda: None) -> Summary:
        summary = Summary(dry_run=self.dry_run)
        seen: set[str] = set()
        unique: list[Entry] = []
        for entry in entries:
            if entry.path in seen:
                summary.outcomes.append(Outcome(entry.path, FAILED, detail="another source secret maps to this path"))
                advance()
                continue
            seen.add(entry.path)
            unique.append(entry)
        for start in range(0, len(unique), PAGE):
            loaded: list[SourceSecret] = []
            for entry in unique[start:start + PAGE]:
                try:
                    source = entry.load()
                except SourceError as exc:
                    summary.outcomes.append(Outcome(entry.path, FAILED, detail=str(exc)))
                    advance()
                    continue
                if source is None:
                    summary.outcomes.append(Outcome(entry.path, SKIPPED, detail="deleted at the source"))
                    advance()
                    continue
                loaded.append(source)
            current, errors = self._current([s.path for s in loaded])
            for source in loaded:
                summary.outcomes.append(self._one(source, current.get(source.path), errors.get(source.path)))
                advance()
        return summary

    # ------------------------------------------------------------------ steps
    def _current(self, paths: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """One batch read of the page: {path: Secret} and {path: BatchError} (not-found ones dropped)."""
        if not paths:
            return {}, {}
        result = self._api(lambda: self.client.secrets.batch_read(paths, include_metadata=True))
        errors = {p: e for p, e in result.errors.items() if e.code != "secret_not_found"}
        return result.secrets, errors

    def _one(self, source: SourceSecret, current: Any, error: Any) -> Outcome:
        if error is not None:
            return Outcome(source.path, FAILED, detail=f"{error.code}: {error.message}")
        plan = self._plan(source, current)
        if plan.reason:
            return Outcome(source.path, SKIPPED, detail=plan.reason)
        if plan.patch:
            if not self.dry_run:
                try:
                    self._api(lambda: self.client.secrets.update_metadata(source.path, plan.patch))
                except Exception as exc:
                    return Outcome(source.path, FAILED, detail=_api_reason(exc))
            return Outcome(source.path, WRITTEN, detail="metadata")
        if not plan.versions:
            return Outcome(source.path, UNCHANGED)
        detail = "updated" if current is not None else "created"
        if self.dry_run:
            return Outcome(source.path, WRITTEN, versions=len(plan.versions), detail=detail)
        return self._write(source, current, plan.versions, detail)

    def _plan(self, source: SourceSecret, current: Any) -> _Plan:
        if current is None:
            return _Plan(versions=list(source.versions))
        meta = plain_metadata(current.metadata)
        mark = {MARK_SOURCE: source.origin, MARK_REF: source.current_ref}
        if current.data == source.current:
            desired = {**source.metadata, **mark, MARK_VERSION: str(current.version)}
            patch = {k: v for k, v in desired.items() if meta.get(k) != v and not (v is None and k not in meta)}
            return _Plan(patch=patch or None)
        ours = meta.get(MARK_SOURCE) == source.origin and meta.get(MARK_VERSION) == str(current.version)
        if not ours and not self.overwrite:
            why = ("changed in ScaiVault since the last import" if meta.get(MARK_SOURCE) == source.origin
                   else "exists in ScaiVault with another value")
            return _Plan(reason=why + " (--overwrite replaces it)")
        refs = [v.ref for v in source.versions]
        last = meta.get(MARK_REF) if ours else None
        if last is not None and last in refs[:-1]:
            return _Plan(versions=source.versions[refs.index(last) + 1:])
        return _Plan(versions=source.versions[-1:])

    def _write(self, source: SourceSecret, current: Any, versions: list[Version], detail: str) -> Outcome:
        from scaivault_sdk.errors import AuthenticationError, ConflictError, ScaiVaultConnectionError

        cas = current.version if current is not None else 0
        base = plain_metadata(current.metadata) if current is not None else {}
        written = 0
        for version in versions:
            try:
                data = source.current if version is source.versions[-1] else version.load()
            except SourceError as exc:
                return Outcome(source.path, FAILED, versions=written, detail=str(exc))
            if data is None:            # deleted or destroyed at the source meanwhile
                continue
            metadata = {**base, **source.metadata, MARK_SOURCE: source.origin, MARK_VERSION: str(cas + 1)}
            if version.ref is None:
                metadata.pop(MARK_REF, None)
            else:
                metadata[MARK_REF] = version.ref
            try:
                info = self._api(lambda: self.client.secrets.write(
                    source.path, data, metadata=metadata, cas=cas, max_versions=source.max_versions,
                    secret_type=secret_type_for(source.current) if cas == 0 else None))
            except (AuthenticationError, ScaiVaultConnectionError):
                raise
            except ConflictError:
                return Outcome(source.path, FAILED, versions=written,
                               detail="changed in ScaiVault during the import (check-and-set refused); rerun")
            except Exception as exc:
                return Outcome(source.path, FAILED, versions=written, detail=_api_reason(exc))
            cas = info.version
            written += 1
        return Outcome(source.path, WRITTEN, versions=written, detail=detail)


def _api_reason(exc: Exception) -> str:
    from scaivault_sdk.errors import AuthenticationError, ScaiVaultConnectionError, ScaiVaultError

    if isinstance(exc, (AuthenticationError, ScaiVaultConnectionError)) or not isinstance(exc, ScaiVaultError):
        raise exc
    return f"{exc.code}: {exc.message}"

