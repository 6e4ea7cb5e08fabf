"""Source: HashiCorp Vault / OpenBao KV v2 (through hvac). Every readable version is replayed, oldest
first; custom_metadata becomes metadata; Vault's max_versions is kept when set."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from .engine import Entry, SourceError, SourceSecret, Version, scaivault_path

EXIT_AUTHORISATION = 3
EXIT_NOT_FOUND = 4


class VaultSource:
    def __init__(self, addr: str, token: str, mount: str, *, namespace: str | None = None, verify: Any = True,
                 timeout: float = 30.0):
        try:
            import hvac
        except ModuleNotFoundError:
            raise SourceError("`import vault` needs hvac: pip install 'scaivault[importers]'") from None
        self.mount = mount.strip("/")
        self.client = hvac.Client(url=addr, token=token, namespace=namespace, verify=verify, timeout=timeout)
        self.kv = self.client.secrets.kv.v2

    # ------------------------------------------------------------------ listing
    def entries(self, prefix: str, to: str | None) -> list[Entry]:
        """Every secret under the folder `prefix` (and `prefix` itself when it names a secret)."""
        folder = prefix.strip("/")
        paths: list[tuple[str, str]] = []          # (vault path, path relative to the prefix)
        if folder and not prefix.endswith("/") and self._exists(folder):
            paths.append((folder, ""))
        base = folder + "/" if folder else ""
        paths += [(p, p[len(base):]) for p in self._walk(base)]
        return [Entry(_destination(path, rel, to), self._loader(path, _destination(path, rel, to)))
                for path, rel in paths]

    def _walk(self, folder: str) -> list[str]:
        import hvac.exceptions

        try:
            keys = self._call(lambda: self.kv.list_secrets(path=folder, mount_point=self.mount))["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return []
        found: list[str] = []
        for key in sorted(keys):
            if key.endswith("/"):
                found += self._walk(folder + key)
            else:
                found.append(folder + key)
        return found

    def _exists(self, path: str) -> bool:
        import hvac.exceptions

        try:
            self._call(lambda: self.kv.read_secret_metadata(path=path, mount_point=self.mount))
        except hvac.exceptions.InvalidPath:
            return False
        return True

    # ------------------------------------------------------------------ reading
    def _loader(self, path: str, destination: str) -> Callable[[], SourceSecret | None]:
        def load() -> SourceSecret | None:
            import hvac.exceptions

            try:
                meta = self._call(lambda: self.kv.read_secret_metadata(path=path, mount_point=self.mount))["data"]
            except hvac.exceptions.InvalidPath:
                return None
            readable = sorted(int(n) for n, v in (meta.get("versions") or {}).items() if _readable(v))
            current = int(meta.get("current_version") or 0)
            if current not in readable:
                return None
            value = self._version(path, current)
            if value is None:
                return None
            readable = [n for n in readable if n <= current]
            versions = [Version(str(n), self._reader(path, n)) for n in readable]
            return SourceSecret(path=destination, origin=f"vault:{self.mount}/{path}", current=value,
                                versions=versions, metadata=custom_metadata(meta.get("custom_metadata")),
                                max_versions=int(meta.get("max_versions") or 0) or None)
        return load

    def _reader(self, path: str, number: int) -> Callable[[], dict | None]:
        return lambda: self._version(path, number)

    def _version(self, path: str, number: int) -> dict | None:
        import hvac.exceptions

        try:
            answer = self._call(lambda: self.kv.read_secret_version(
                path=path, version=number, mount_point=self.mount, raise_on_deleted_version=False))
        except hvac.exceptions.InvalidPath:
            return None
        return (answer.get("data") or {}).get("data")

    def _call(self, fn: Callable[[], Any]) -> Any:
        """hvac errors as SourceErrors with the CLI's exit codes (never the token)."""
        import hvac.exceptions
        import requests

        try:
            return fn()
        except hvac.exceptions.InvalidPath:
            raise
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
            raise SourceError(f"Vault refused: {_first_error(exc)}", EXIT_AUTHORISATION) from None
        except hvac.exceptions.VaultError as exc:
            raise SourceError(f"Vault error: {_first_error(exc)}") from None
        except requests.RequestException as exc:
            raise SourceError(f"cannot reach Vault: {type(exc).__name__}") from None


def custom_metadata(custom: dict | None) -> dict[str, Any]:
    """Vault custom_metadata (string to string) as ScaiVault metadata: `description` and `owner` keep
    their meaning, `tags` is split on commas, every other key is kept as a custom key."""
    out: dict[str, Any] = {}
    for key, value in (custom or {}).items():
        if key == "tags":
            out["tags"] = [t.strip() for t in str(value).split(",") if 0 < len(t.strip()) <= 64][:50]
        else:
            out[key] = value
    return out


def _readable(info: dict) -> bool:
    if info.get("destroyed"):
        return False
    deleted = info.get("deletion_time") or ""
    if not deleted:
        return True
    try:
        when = datetime.fromisoformat(deleted[:19]).replace(tzinfo=timezone.utc)
    except ValueError:
        return False
    return when > datetime.now(timezone.utc)      # a deletion scheduled for later


def _destination(path: str, relative: str, to: str | None) -> str:
    if to is None:
        return scaivault_path(path)
    return "/".join(p for p in (to.strip("/"), scaivault_path(relative)) if p)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return str(errors[0])[:200]
    return type(exc).__name__
