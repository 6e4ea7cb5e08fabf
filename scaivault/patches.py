"""Every patch of a library's internals, in one place (design.md invariant 13).

Each patch names the versions of the library it was written for and checked against. On any
other version (or when the internal it relies on is gone) it is not applied: ScaiVault logs a
warning once and keeps the library's own, unpatched behaviour, which is slower or plainer but
correct. setup.cfg bounds each patched library to the versions tested here, and
tests/lowest_versions.sh runs a smoke subset on the lowest versions setup.cfg allows.

    TESTED[name] = (lowest, first untested)   # the patch applies for lowest <= version < first untested
"""
from __future__ import annotations

import functools
import json
import logging
import secrets
import ssl
from importlib import metadata
from typing import Any, Callable

log = logging.getLogger("scaivault.patches")

# (patch name) -> (distribution, lowest version the patch was written for, first version not tested)
TESTED: dict[str, tuple[str, str, str]] = {
    "gunicorn.one_send_response": ("gunicorn", "26.2", "28"),      # Response._emit_body appeared in 26.2
    "gunicorn.json_parser_errors": ("gunicorn", "23", "28"),       # util.write_error(sock, status, reason, mesg)
    "gevent.quiet_tls_handshakes": ("gevent", "24.2.1", "27"),          # Hub.NOT_ERROR
    "gevent.pywsgi_json_errors": ("gevent", "24.2.1", "27"),            # WSGIHandler error paths
    "pg8000.statement_cache": ("pg8000", "1.31", "1.32"),           # pg8000.native.to_statement(sql)
    "pg8000.socket": ("pg8000", "1.31", "1.32"),                    # Connection._usock
    "flask_limiter.no_request_hooks": ("flask-limiter", "3.8", "5"),  # hooks bound to the Limiter
    "limits.shared_cluster_client": ("limits", "5.0", "6"),         # RedisClusterStorage's attributes
}

_applied: dict[str, bool] = {}
_warned: set[str] = set()


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
        if digits != part:      # 1.31.0rc1: stop at the pre-release part
            break
    return tuple(out)


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def supported(patch: str) -> bool:
    """True when the installed library is a version `patch` was written and tested for."""
    return installed_within(*TESTED[patch])


def installed_within(distribution: str, lowest: str, first_untested: str) -> bool:
    """Is `distribution` installed at a version in [lowest, first_untested)?"""
    version = installed_version(distribution)
    if version is None:
        return False
    return _version_tuple(lowest) <= _version_tuple(version) < _version_tuple(first_untested)


def _skip(patch: str, why: str) -> bool:
    if patch not in _warned:
        _warned.add(patch)
        distribution, lowest, first_untested = TESTED[patch]
        log.warning("library patch not applied; using the library's own behaviour",
                    extra={"patch": patch, "library": distribution,
                           "installed": installed_version(distribution) or "absent",
                           "tested": f">={lowest},<{first_untested}", "reason": why})
    _applied[patch] = False
    return False


def _guard(patch: str, *required: Callable[[], bool]) -> bool:
    """Version check plus presence checks of the internals the patch touches."""
    if not supported(patch):
        return _skip(patch, "untested version")
    for check in required:
        try:
            ok = check()
        except Exception:
            ok = False
        if not ok:
            return _skip(patch, "internal interface changed")
    _applied[patch] = True
    return True


def status() -> dict[str, bool]:
    """Which patches were applied in this process (for health details and tests)."""
    return dict(_applied)


# ---------------------------------------------------------------------- gunicorn

class _HeaderCapture:
    """Stands in for the client socket while gunicorn formats a header block."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


def gunicorn_one_send_responses() -> bool:
    """Send a response's header block and its first body piece in one send().

    gunicorn writes them in two; on loopback and in containers each send() also pays for the
    receiver's side. Needs Response._emit_body (gunicorn 26.2+): without it the body would be
    written before the captured header block, so older versions keep two sends.
    """
    patch = "gunicorn.one_send_response"
    from gunicorn import util
    from gunicorn.http import wsgi

    if getattr(wsgi.Response, "one_send", False):
        _applied[patch] = True
        return True
    if not _guard(patch, lambda: callable(getattr(wsgi.Response, "_emit_body", None)),
                  lambda: callable(getattr(util, "write", None))):
        return False

    class OneSendResponse(wsgi.Response):
        one_send = True
        _head: bytes | None = None

        def send_headers(self):
            if self.headers_sent:
                return
            sock, capture = self.sock, _HeaderCapture()
            self.sock = capture
            try:
                super().send_headers()
            finally:
                self.sock = sock
            self._head = capture.data

        def _flush_head(self) -> None:
            head, self._head = self._head, None
            if head:
                util.write(self.sock, head)

        def _emit_body(self, data):
            head, self._head = self._head, None
            if head and not self.chunked:
                util.write(self.sock, head + data)
                return
            if head:
                util.write(self.sock, head)
            super()._emit_body(data)

        def write(self, arg):
            super().write(arg)
            self._flush_head()      # a body-less answer (HEAD, 204, 304) returns before _emit_body

        def sendfile(self, respiter):
            return False

        def close(self):
            if not self.headers_sent:
                self.send_headers()
            self._flush_head()
            super().close()

    wsgi.Response = OneSendResponse
    return True


_PARSER_ERROR_CODES = {403: "forbidden", 500: "internal_error"}


def _write_error_envelope(sock, status_int, reason, mesg) -> None:
    """gunicorn's answer to a request it cannot parse, as the spec/10 JSON envelope.

    gunicorn's own page is HTML and quotes the offending request text; this names neither.
    """
    from gunicorn import util

    status, headers, body = _envelope(status_int, reason)
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    util.write_nonblock(sock, head.encode("latin1") + body)


def _envelope(status_int: int, reason: str) -> tuple[str, list[tuple[str, str]], bytes]:
    code = _PARSER_ERROR_CODES.get(status_int, "invalid_request")
    request_id = "req_" + secrets.token_hex(12)
    body = json.dumps({"error": {"code": code, "message": f"malformed HTTP request ({reason.lower()})",
                                 "request_id": request_id}}).encode()
    headers = [("Connection", "close"), ("Content-Type", "application/json"), ("X-Request-ID", request_id),
               ("Content-Length", str(len(body)))]
    return f"{status_int} {reason}", headers, body


def server_worker_class() -> str:
    """The gunicorn worker class to serve with (issue 10 measured it against "gevent").

    gevent's pywsgi server under gunicorn costs less CPU per request than gunicorn's own HTTP
    parser on gevent (about 20% on a secret read). Its handler answers requests it cannot parse
    with plain text; ScaiVault's handler turns those into the JSON envelope, which needs gevent
    internals (WSGIHandler.handle_one_request's return protocol, _send_error_response_if_possible).
    On an untested gevent, serve with gunicorn's "gevent" worker instead, whose parser errors
    are enveloped by gunicorn_json_parser_errors.
    """
    from gevent import pywsgi

    if not _guard("gevent.pywsgi_json_errors",
                  lambda: callable(pywsgi.WSGIHandler.handle_one_request),
                  lambda: callable(pywsgi.WSGIHandler._send_error_response_if_possible)):
        return "gevent"
    return "scaivault.patches.ScaiVaultPyWSGIWorker"


def _pywsgi_worker():
    from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

    class ScaiVaultPyWSGIHandler(PyWSGIHandler):
        """gevent's pywsgi handler whose own error answers are the spec/10 JSON envelope."""

        def handle_one_request(self):
            result = super().handle_one_request()
            # (status, raw response bytes): a request line or header block gevent refused
            if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], bytes):
                head = result[1].split(b"\r\n", 1)[0].decode("latin1").split(" ", 2)
                status_int = int(head[1]) if len(head) > 1 and head[1].isdigit() else 400
                reason = head[2] if len(head) > 2 else "Bad Request"
                status, headers, body = _envelope(status_int, reason)
                raw = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
                return result[0], raw.encode("latin1") + body
            return result

        def log_request(self):
            # gunicorn's log_request copies the request's headers and times for its access log and
            # then drops them when that log is off (ScaiVault writes its own access line): 2% of a read
            if getattr(self.server.log, "access_log_enabled", True):
                super().log_request()

        def _send_error_response_if_possible(self, error_code):
            if self.response_length:
                self.close_connection = True
                return
            status, headers, body = _envelope(error_code, "Internal Server Error" if error_code == 500 else "Bad Request")
            try:
                self.start_response(status, headers)
                self.write(body)
            except OSError:
                self.close_connection = True

    class ScaiVaultPyWSGIWorker(GeventPyWSGIWorker):
        wsgi_handler = ScaiVaultPyWSGIHandler

    return ScaiVaultPyWSGIWorker


def __getattr__(name: str):
    # gunicorn imports the worker class by name ("scaivault.patches.ScaiVaultPyWSGIWorker") in the
    # worker process; built on first use so that importing this module never imports gevent
    if name == "ScaiVaultPyWSGIWorker":
        worker = globals()[name] = _pywsgi_worker()
        return worker
    raise AttributeError(name)


def gunicorn_json_parser_errors() -> bool:
    """The worker's handle_error() is gunicorn's only caller of util.write_error; its HTML page
    would break the rule that every answer is the JSON envelope."""
    from gunicorn import util

    if not _guard("gunicorn.json_parser_errors", lambda: callable(util.write_error),
                  lambda: callable(util.write_nonblock)):
        return False
    util.write_error = _write_error_envelope
    return True


# ---------------------------------------------------------------------- gevent

def gevent_quiet_tls_handshakes() -> bool:
    """A TCP probe or a client without a certificate fails the TLS handshake inside gevent's
    accept greenlet; that is routine, so keep gevent from printing a traceback for it."""
    import gevent

    hub = gevent.get_hub()
    if not _guard("gevent.quiet_tls_handshakes", lambda: isinstance(hub.NOT_ERROR, tuple)):
        return False
    hub.NOT_ERROR = tuple(set(hub.NOT_ERROR) | {ssl.SSLError})
    return True


# ---------------------------------------------------------------------- pg8000

def pg8000_statement_cache() -> bool:
    """pg8000 re-parses every statement's text for :named parameters on each run (about a
    millisecond for a long statement); the result depends only on the text, so parse each
    distinct statement once."""
    import pg8000.native

    if hasattr(pg8000.native.to_statement, "cache_info"):
        _applied["pg8000.statement_cache"] = True
        return True
    if not _guard("pg8000.statement_cache", lambda: callable(pg8000.native.to_statement)):
        return False
    pg8000.native.to_statement = functools.lru_cache(maxsize=4096)(pg8000.native.to_statement)
    return True


def pg8000_socket(conn: Any):
    """The connection's raw socket (for a no-round-trip liveness check), or None when this
    pg8000 does not expose it where it was tested (callers then ping instead)."""
    if _applied.get("pg8000.socket") is None:
        _guard("pg8000.socket", lambda: True)
    if not _applied["pg8000.socket"]:
        return None
    return getattr(conn, "_usock", None)


# ---------------------------------------------------------------------- flask-limiter

def flask_limiter_without_request_hooks(app, limiter) -> bool:
    """Keep flask-limiter for its storage, without its per-request hooks.

    `init_app` registers a before_request filter (plus after/teardown hooks) that resolves the
    decorated and default limits of every request; ScaiVault has none, so it never limits
    anything, yet it cost 5-8% of a secret read. `ratelimit.enforce()` is the one check.
    """
    if not _guard("flask_limiter.no_request_hooks",
                  lambda: isinstance(app.before_request_funcs.get(None, []), list)):
        return False

    def ours(hook) -> bool:
        owner = getattr(hook, "__self__", None)
        if owner is None and isinstance(hook, functools.partial) and hook.args:
            owner = hook.args[0]
        return owner is limiter

    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        if None in hooks:
            hooks[None] = [hook for hook in hooks[None] if not ours(hook)]
    return True


# ---------------------------------------------------------------------- limits

SHARED_CLUSTER_SCHEME = "scaivault+redis+cluster"


def limits_shared_cluster_storage() -> str | None:
    """The storage scheme under which `limits` builds its Redis Cluster storage over a client it is
    given (storage option `client`), or None when this `limits` is not a version it was tested on
    (the caller then lets `limits` build its own cluster client from the redis+cluster:// URL).

    `limits.storage.RedisClusterStorage` always builds its own RedisCluster (a second set of
    connection pools per process, and a slot-map fetch at app creation). With the runtime's client
    the limiter rides the same pools, as it does on a single Redis (`connection_pool`)."""
    try:
        from limits.storage import RedisClusterStorage, Storage
        from limits.storage.redis import RedisStorage
        from limits._storage_scheme import SCHEMES
    except ImportError:
        return None
    if SHARED_CLUSTER_SCHEME in SCHEMES:
        return SHARED_CLUSTER_SCHEME
    if not _guard("limits.shared_cluster_client",
                  lambda: callable(RedisStorage.initialize_storage) and callable(RedisClusterStorage.get_connection),
                  lambda: "redis+cluster" in RedisClusterStorage.STORAGE_SCHEME):
        return None

    class SharedClientRedisClusterStorage(RedisClusterStorage):
        """limits' cluster storage (its Lua scripts, key prefix, exceptions) over a given client."""

        STORAGE_SCHEME = [SHARED_CLUSTER_SCHEME]

        def __init__(self, uri: str, client=None, key_prefix: str = RedisStorage.PREFIX,
                     wrap_exceptions: bool = False, **options) -> None:
            self.key_prefix = key_prefix
            self.target_server = "redis"
            self.dependency = self.dependencies["redis"].module
            self.storage = client
            self.initialize_storage(uri)
            Storage.__init__(self, uri, wrap_exceptions, **options)

    return SHARED_CLUSTER_SCHEME
