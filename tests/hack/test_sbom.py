"""`make sbom` (hack/sbom.sh): a valid CycloneDX SBOM of exactly what the image installs.

hack/sbom.sh builds a scratch venv with hack/install-locked.sh, the image's own installer, and
describes it with cyclonedx-py. Here the output is validated against the CycloneDX 1.6 JSON
schema by cyclonedx-python-lib's strict validator, and its components are compared with the lock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sbom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sbom") / "sbom.cdx.json"
    venv_bin = Path(sys.executable).parent
    subprocess.run(["bash", str(ROOT / "hack/sbom.sh"), str(out)], check=True, timeout=900,
                   env={**os.environ, "CYCLONEDX_PY": str(venv_bin / "cyclonedx-py"),
                        "SBOM_PYTHON": sys.executable}, capture_output=True)
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def _errors(document: dict[str, Any]) -> str | None:
    validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    error = validator.validate_str(json.dumps(document))
    return None if error is None else str(error)


def test_the_sbom_is_valid_cyclonedx(sbom: dict[str, Any]) -> None:
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["specVersion"] == "1.6"
    assert _errors(sbom) is None


def test_the_validation_can_fail(sbom: dict[str, Any]) -> None:
    # The validator is real: a document the schema forbids is refused.
    broken = json.loads(json.dumps(sbom))
    broken["components"][0]["type"] = "not-a-component-type"
    assert _errors(broken) is not None
    extra = {**sbom, "unexpected": True}
    assert _errors(extra) is not None


def _locked() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if re.match(r"[A-Za-z0-9]", line):
            req = Requirement(line.rstrip("\\ "))
            if req.marker is None or req.marker.evaluate():
                [spec] = list(req.specifier)
                out[canonicalize_name(req.name)] = spec.version
    return out


def test_the_sbom_lists_exactly_the_locked_runtime(sbom: dict[str, Any]) -> None:
    root = sbom["metadata"]["component"]
    assert root["name"] == "provenance-controller" and root["type"] == "application"
    components: dict[str, Any] = {canonicalize_name(c["name"]): c for c in sbom["components"]}
    locked = _locked()
    # pip is the venv's own (the image's /opt/venv has it too); nothing else beyond the lock.
    assert set(components) == set(locked) | {"pip"}
    for name, version in locked.items():
        assert components[name]["version"] == version, name
        purl = re.fullmatch(r"pkg:pypi/([^@]+)@(.+)", components[name]["purl"])
        assert purl, components[name]["purl"]
        assert (canonicalize_name(purl.group(1)), purl.group(2)) == (name, version)
    assert "setuptools" not in components, "the build tools must not reach the runtime"


def test_the_sbom_is_reproducible(sbom: dict[str, Any]) -> None:
    # --output-reproducible: no timestamp or random serial, so one commit gives one SBOM.
    assert "serialNumber" not in sbom
    assert "timestamp" not in sbom["metadata"]
