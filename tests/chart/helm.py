"""Driving the real helm binary over the chart, and reading its output."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from controller.dev.controlplane import find_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "provenance-controller"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
"""The scenario values files, each rendered, dry-run applied and linted."""
SCENARIOS: list[Path | None] = [None, *CI_VALUES]
"""None stands for the default values."""
KUBE_VERSION = "1.34.0"
RELEASE_NAMESPACE = "provenance-system"


def scenario_id(path: Path | None) -> str:
    return "default" if path is None else path.stem


def helm(*args: str, home: Path, kubeconfig: Path | None = None,
         check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run helm with its caches and config in `home`, never the user's."""
    env = {
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "PATH": "/usr/bin:/bin",
    }
    argv = [str(find_binary("helm")), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def template(values: Path | None, *extra: str, home: Path, release: str = "pc",
             namespace: str = RELEASE_NAMESPACE) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace,
            "--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["-f", str(values)]
    return helm(*args, *extra, home=home).stdout


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and
               (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]
