"""The floor of the HTTP stack: a WSGI app that answers every request with the same small JSON.

`gunicorn -k scaivault.patches.ScaiVaultPyWSGIWorker -w 2 bench.bare_wsgi:app`: what ScaiVault's
server costs per request before any application work (bench/secrets_kv.py, workload `bare`).
"""
from __future__ import annotations

_BODY = b'{"ok":true}\n'
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))]


def app(environ, start_response):
    start_response("200 OK", list(_HEADERS))
    return [_BODY]
