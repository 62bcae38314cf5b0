"""Fixtures for the chart tests: a private helm home and the third-party CRDs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

CERT_MANAGER = ("github.com/cert-manager/cert-manager", "v1.16.5",
                ["deploy/crds/crd-issuers.yaml", "deploy/crds/crd-certificates.yaml"])
PROMETHEUS_OPERATOR = ("github.com/prometheus-operator/prometheus-operator", "v0.80.1",
                       ["example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"])


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def _module_dir(module: str, version: str) -> Path:
    """The source of a Go module, from the module cache or the Go module proxy (pinned)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is needed to fetch the cert-manager and prometheus-operator CRDs "
                    "(the Go module proxy is the one source this machine reaches)")
    out = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                         capture_output=True, text=True, timeout=600, cwd="/",
                         env={**os.environ, "GOFLAGS": "-mod=mod"})
    if out.returncode != 0:
        pytest.fail(f"go mod download {module}@{version}: {out.stdout} {out.stderr}")
    return Path(json.loads(out.stdout)["Dir"])


def _crds() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for module, version, paths in (CERT_MANAGER, PROMETHEUS_OPERATOR):
        base = _module_dir(module, version)
        for rel in paths:
            for doc in yaml.safe_load_all((base / rel).read_text()):
                if not doc:
                    continue
                # cert-manager keeps its CRDs as Helm templates: the labels hold template
                # expressions (in YAML comments or strings). The schema is what matters here.
                doc["metadata"].pop("labels", None)
                doc["metadata"].pop("annotations", None)
                docs.append(doc)
    return docs


@pytest.fixture(scope="session")
def third_party_crds() -> list[dict[str, Any]]:
    """The real cert-manager (Issuer, Certificate) and ServiceMonitor CRDs, pinned."""
    return _crds()
