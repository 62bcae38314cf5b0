"""The shared case table (agreement.yaml): one Deployment per case (and, for `KIND_CASES`, one of
every other gated kind), judged by `check` offline and by the webhook through the real API
server, with the verdict both must give."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.workloads import KINDS
from tests.builders import as_kind

HERE = Path(__file__).resolve().parent
TABLE = HERE / "agreement.yaml"
CONFIG = HERE / "config.yaml"
"""The policy the table is written for (the enforcing controller's)."""
_LONG_BRANCH = "b" * 3000
"""Longer than the default max_value_length (2048)."""


@dataclass(frozen=True)
class Case:
    """One row of the table."""

    name: str
    user: str
    groups: tuple[str, ...]
    namespace: str
    manifest: dict[str, Any]
    allowed: bool
    reasons: tuple[str, ...]

    @property
    def text(self) -> str:
        """The manifest as YAML, fed to both `check` and `kubectl apply`."""
        return yaml.safe_dump(self.manifest, sort_keys=False, width=10_000)


def _annotations(defaults: dict[str, Any], row: dict[str, Any]) -> dict[str, str]:
    given = row.get("provenance", {})
    values: dict[str, Any] = {} if given == "none" else {**defaults["provenance"], **given}
    return {f"provenance.dev/{k}": (_LONG_BRANCH if v == "LONG_BRANCH" else str(v))
            for k, v in values.items() if v is not None}


def _manifest(name: str, namespace: str, where: str, annotations: dict[str, str],
              images: list[str], init_images: list[str]) -> dict[str, Any]:
    labels = {"app": name}
    pod_meta: dict[str, Any] = {"labels": dict(labels)}
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if where in ("template", "both") and annotations:
        pod_meta["annotations"] = dict(annotations)
    if where in ("deployment", "both") and annotations:
        meta["annotations"] = dict(annotations)
    pod: dict[str, Any] = {"containers": [
        {"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    if init_images:
        pod["initContainers"] = [
            {"name": f"init{i}", "image": image} for i, image in enumerate(init_images)]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": pod_meta, "spec": pod}}}


KIND_CASES = ("compliant", "nothing-at-all", "image-by-tag", "deployed-by-someone-else",
              "production-by-a-non-deployer")
"""Cases also run, as `<case>-<kind>`, for every other gated kind."""


def load_cases() -> list[Case]:
    """Every case of the table, built."""
    doc = yaml.safe_load(TABLE.read_text())
    defaults = doc["defaults"]
    cases = []
    for row in doc["cases"]:
        merged = {**defaults, **{k: v for k, v in row.items() if k != "provenance"}}
        manifest = _manifest(row["name"], merged["namespace"], merged["where"],
                             _annotations(defaults, row), merged["images"],
                             merged["init_images"])
        kinds = [k.kind for k in KINDS] if row["name"] in KIND_CASES else ["Deployment"]
        for kind in kinds:
            name = row["name"] if kind == "Deployment" else f"{row['name']}-{kind.lower()}"
            shaped = as_kind(manifest, kind)
            shaped["metadata"]["name"] = name
            cases.append(Case(
                name=name, user=merged["user"], groups=tuple(merged["groups"]),
                namespace=merged["namespace"], manifest=shaped,
                allowed=row["expect"]["allowed"], reasons=tuple(row["expect"]["reasons"])))
    return cases
