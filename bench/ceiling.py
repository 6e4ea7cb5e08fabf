"""The ceiling: a bare Flask route doing one pooled pg8000 query, on the same stack as ScaiVault.

`gunicorn -k gevent -w 2 bench.ceiling:app` with DATABASE_URL set; GET /q?p=<path> selects
one secrets row by (tenant, path) through scaivault.db's pool, like the read path's lookup.
"""
from __future__ import annotations

import os

from flask import Flask, jsonify, request

from scaivault.config import DatabaseURL
from scaivault.db import Database

app = Flask("ceiling")
_db = Database(DatabaseURL.parse("DATABASE_URL", os.environ["DATABASE_URL"]), pool_size=10)


@app.get("/q")
def one_query():
    row = _db.one("SELECT path, current_version FROM secrets WHERE tenant_id = :t AND path = :p",
                  t=os.environ.get("BENCH_TENANT", "tnt_bench"), p=request.args.get("p", ""))
    return jsonify(row or {})
