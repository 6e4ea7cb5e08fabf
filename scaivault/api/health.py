"""Liveness, readiness, detailed health and version (spec/10 section 9)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify

from ..pagination import timestamp
from .. import __version__, ratelimit
from ..health import HealthChecker
from .http import runtime
from .authorization import identity_only
from .pipeline import endpoint

bp = Blueprint("health", __name__)


def _checker() -> HealthChecker:
    rt = runtime()
    checker = rt.__dict__.get("health_checker")
    if checker is None:
        checker = rt.__dict__["health_checker"] = HealthChecker(rt)
    return checker


def _now() -> str:
    return timestamp(datetime.now(timezone.utc))


@bp.get("/v1/health")
@endpoint(None, authenticated=False)
def liveness():
    return jsonify({"status": "healthy", "timestamp": _now()})


@bp.get("/v1/health/ready")
@endpoint(None, authenticated=False)
def readiness():
    results, errors = _checker().run()
    # each check is "ok", "error" or "degraded" (requests still succeed: Redis lost, the KMS on its
    # secondary key or on cached keys), which stays ready: a Redis blip must not empty a fleet
    degraded = {name: r.get("message") or "degraded" for name, r in results.items() if r.get("status") == "degraded"}
    body = {"status": "not_ready" if errors else "degraded" if degraded else "ready",
            "checks": {name: r["status"] for name, r in results.items()}}
    if errors:
        body["errors"] = errors
    if degraded:
        body["warnings"] = degraded
    return jsonify(body), (503 if errors else 200)


@bp.get("/v1/health/detailed")
@endpoint(None, scope="admin", tenant=False, authorize=identity_only())
def detailed():
    results, errors = _checker().run(detailed=True)
    return jsonify({
        "status": "healthy" if not errors else "unhealthy",
        "version": __version__,
        "uptime_seconds": int(time.time() - runtime().started_at),
        "checks": results,
        "rate_limiter": ratelimit.status(current_app),
        **({"errors": errors} if errors else {}),
    })


@bp.get("/v1/version")
@endpoint(None, authenticated=False)
def version():
    return jsonify({"version": __version__, "api_version": "v1", "name": "scaivault"})
