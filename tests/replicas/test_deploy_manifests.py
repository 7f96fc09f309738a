"""The Kubernetes manifests and the Dockerfile under deploy/: a JSON-Schema check of the fields each
kind requires, and cross-checks a schema cannot make (selectors match, references resolve, every
VOICEID_* variable is a real setting, every command is a real CLI command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from voiceid.cli import app as cli_app
from voiceid.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
METADATA = {"type": "object", "required": ["name"], "properties": {"name": NAME}}
CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": NAME,
        "image": {"type": "string", "minLength": 1},
        "args": {"type": "array", "items": {"type": "string"}},
        "resources": {"type": "object", "required": ["requests", "limits"]},
    },
}
POD_TEMPLATE = {
    "type": "object",
    "required": ["metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "required": ["labels"]},
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER}},
        },
    },
}


def _kind(kind: str, api: str, spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", *(["spec"] if spec else []), *extra.get("required", [])],
        "properties": {"apiVersion": {"const": api}, "kind": {"const": kind}, "metadata": METADATA},
    }
    if spec:
        schema["properties"]["spec"] = spec
    return schema


SCHEMAS = {
    "Deployment": _kind(
        "Deployment",
        "apps/v1",
        {
            "type": "object",
            "required": ["selector", "template"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "selector": {"type": "object", "required": ["matchLabels"]},
                "template": POD_TEMPLATE,
            },
        },
    ),
    "Job": _kind(
        "Job",
        "batch/v1",
        {"type": "object", "required": ["template"], "properties": {"template": POD_TEMPLATE}},
    ),
    "Service": _kind(
        "Service",
        "v1",
        {
            "type": "object",
            "required": ["selector", "ports"],
            "properties": {"ports": {"type": "array", "minItems": 1, "items": {"required": ["port", "targetPort"]}}},
        },
    ),
    "HorizontalPodAutoscaler": _kind(
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        {
            "type": "object",
            "required": ["scaleTargetRef", "minReplicas", "maxReplicas", "metrics"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["apiVersion", "kind", "name"]},
                "minReplicas": {"type": "integer", "minimum": 1},
                "maxReplicas": {"type": "integer", "minimum": 1},
            },
        },
    ),
    "Secret": _kind("Secret", "v1", None, required=["stringData"]),
    "ConfigMap": _kind("ConfigMap", "v1", None, required=["data"]),
}


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] == kind}


def _containers() -> list[dict[str, Any]]:
    return [
        c
        for d in _documents()
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def test_every_manifest_matches_the_schema_of_its_kind():
    docs = _documents()
    assert {d["kind"] for d in docs} == set(SCHEMAS)
    for doc in docs:
        errors = [e.message for e in jsonschema_rs.validator_for(SCHEMAS[doc["kind"]]).iter_errors(doc)]
        assert errors == [], (doc["kind"], doc["metadata"].get("name"), errors)


def test_the_schema_check_catches_a_broken_manifest():
    broken = _by("Deployment")["voiceid-serve"]
    del broken["spec"]["template"]["spec"]["containers"][0]["image"]
    assert not jsonschema_rs.validator_for(SCHEMAS["Deployment"]).is_valid(broken)


def test_selectors_references_and_probes_fit_together():
    deployments, secrets, configs = _by("Deployment"), _by("Secret"), _by("ConfigMap")
    for deployment in deployments.values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    serve = deployments["voiceid-serve"]
    container = serve["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [service] = _by("Service").values()
    assert service["spec"]["selector"].items() <= serve["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    [hpa] = _by("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for c in _containers():
        for source in c["envFrom"]:
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configs


def test_every_variable_is_a_setting_and_the_shared_secrets_are_there():
    fields = {f"VOICEID_{name.upper()}" for name in Settings.model_fields}
    variables = {
        k for d in [*_by("Secret").values(), *_by("ConfigMap").values()] for k in d.get("stringData", d.get("data", {}))
    }
    assert variables <= fields, variables - fields
    shared = {"VOICEID_DATABASE_URL", "VOICEID_ENCRYPTION_KEY", "VOICEID_SESSION_SECRET", "VOICEID_KEYSTORE_URL"}
    assert shared <= variables


@pytest.mark.parametrize("container", _containers(), ids=lambda c: c["name"])
def test_every_command_is_a_real_cli_command(container):
    from typer.main import get_command

    command: Any = get_command(cli_app)
    for word in container["args"]:
        if word.startswith("-"):
            break
        assert word in command.commands, (container["name"], word)
        command = command.commands[word]


def test_the_dockerfile_runs_the_cli_and_bakes_the_verified_model():
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["voiceid"]' in text and "voiceid models fetch" in text
    assert "USER voiceid" in text  # not root


def _dockerfile_env() -> dict[str, str]:
    """The ENV assignments of the Dockerfile (continuation lines joined)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(word.split("=", 1) for word in line[4:].split() if "=" in word)
    return env


def test_the_image_bakes_every_model_directory_outside_the_data_dir():
    # The model dirs default to <data dir>/models/...; in the image the data dir is the writable (often
    # mounted) state directory, so every model dir is set explicitly to a baked, read-only path.
    env = _dockerfile_env()
    model_dirs = {f"VOICEID_{name.upper()}" for name in Settings.model_fields if name.endswith("model_dir")}
    assert model_dirs == {"VOICEID_MODEL_DIR", "VOICEID_CM_MODEL_DIR"}
    for variable in model_dirs:
        assert variable in env, variable
        assert not env[variable].startswith(env["VOICEID_DATA_DIR"].rstrip("/") + "/"), variable


def test_no_pod_gets_service_link_variables():
    # A Service named "voiceid" makes Kubernetes inject VOICEID_PORT=tcp://<ip>:<port> into every pod
    # of the namespace that does not opt out: the name of the port setting, and not a port.
    services = set(_by("Service"))
    assert "voiceid" in services
    for d in _documents():
        if d["kind"] in ("Deployment", "Job"):
            assert d["spec"]["template"]["spec"].get("enableServiceLinks") is False, d["metadata"]["name"]
