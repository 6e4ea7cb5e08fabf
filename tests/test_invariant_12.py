"""Design invariant 12: nothing a tenant controls can stall a worker for others.

Matching and parsing are linear or bounded (tests/test_glob.py: the review's pathological rule
is matched in microseconds; tests/test_security_input.py: the same rule bound to a user at the
API); outbound calls are bounded and never made under a process-wide lock (tests/test_jwks_stall.py:
logins against a stalled ScaiKey answer within one timeout together). This module adds a check
on the source that fails when a process-wide lock is held around a network call, and a test of
the auth epoch against a Redis that accepts connections but never answers.
"""
from __future__ import annotations

import ast
import re
import socket
import threading
import time
from pathlib import Path

import redis

from scaivault.auth.epoch import AuthEpoch

ROOT = Path(__file__).resolve().parent.parent
# calls that leave the process in this codebase: HTTP, Redis, the database, the KMS
NETWORK_CALL = re.compile(r"(^|\.)requests\.|redis|urlopen|(^|\.)db\.|_load_root$|ensure_root$|\.unwrap$|\.wrap$"
                          r"|(^|\.)connect$|get_connection|_fetch$|_load_discovery$|\.execute$|\.scalar$")
# (file, lock) pairs that may be held across a network call, with the reason
ALLOWED = {
    ("scaivault/crypto/keyring.py", "self._root_init_lock"):
        "the first load of the encryption root at start-up: there is no root to serve until one caller has it",
}


def _process_wide_lock(item: ast.withitem) -> str | None:
    expr = item.context_expr
    if isinstance(expr, ast.Call) and (expr.args or expr.keywords):
        return None                      # a lock per key (one partner's unwrap), not process-wide
    text = ast.unparse(expr)
    return text if re.search(r"lock|_state\b", text, re.I) else None


def _calls(body: list[ast.stmt]):
    for statement in body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Call):
                yield ast.unparse(node.func)


def locks_held_across_network_calls(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.With):
            for item in node.items:
                lock = _process_wide_lock(item)
                if lock and (filename, lock) not in ALLOWED:
                    found += [f"{filename}:{node.lineno} {lock} -> {call}()" for call in _calls(node.body)
                              if NETWORK_CALL.search(call)]
    return found


def test_no_process_wide_lock_is_held_across_a_network_call():
    found = []
    for path in sorted((ROOT / "scaivault").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py")):
        found += locks_held_across_network_calls(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, found


def test_the_lock_check_catches_the_jwks_cache_as_it_was():
    """The pre-fix JwksCache held its lock across the fetch; the check must flag that shape."""
    before = '''
class JwksCache:
    def key_for(self, kid):
        with self._lock:
            self._fetch()
    def _other(self):
        with self._lock:
            requests.get(self.url, timeout=5)
'''
    assert len(locks_held_across_network_calls(before, "x.py")) == 2


def test_the_auth_epoch_does_not_queue_requests_behind_a_stalled_redis():
    """Before: every request waited on the epoch lock while one read hung on Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept_and_never_answer() -> None:
        try:
            while True:
                accepted.append(listener.accept())
        except OSError:
            return                                             # the listener was closed

    threading.Thread(target=accept_and_never_answer, daemon=True).start()
    port = listener.getsockname()[1]
    stalled = redis.Redis(host="127.0.0.1", port=port, socket_timeout=3, socket_connect_timeout=3)
    epoch = AuthEpoch(lambda: stalled)
    epoch._value, epoch._checked_at = b"7", float("-inf")      # a value read before Redis stalled
    reader = threading.Thread(target=epoch.current, daemon=True)
    reader.start()
    time.sleep(0.2)                                            # the reader now hangs on Redis
    began = time.perf_counter()
    answers = [epoch.current() for _ in range(5)]
    assert time.perf_counter() - began < 0.5
    assert answers == [b"7"] * 5                               # the last value serves meanwhile
    time.sleep(2.0)                                            # past EPOCH_READ_STALL_SECONDS
    assert epoch.current() not in (b"7", None)                 # a stalled read counts as unreadable
    listener.close()
