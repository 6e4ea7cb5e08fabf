def test_liveness_answers_without_auth(client):
    response = client.get("/v1/health")
    assert response.status_code == 200
    assert response.get_json()["status"] == "healthy"
    assert response.headers["X-Request-ID"].startswith("req_")


def test_unknown_route_gets_the_json_404_envelope(client):
    response = client.get("/v1/nope", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    body = response.get_json()
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"] == response.headers["X-Request-ID"] != "abc-123"
    assert response.headers["X-Request-ID"].startswith("req_")


def test_readiness_reports_every_dependency(client):
    response = client.get("/v1/health/ready")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["checks"] == {"database": "ok", "audit": "ok", "redis": "ok", "encryption": body["checks"]["encryption"]}
