"""Shared builders for the ledger tests: AdmissionReviews, Deployments, namespaces."""

from __future__ import annotations

import uuid
from typing import Any

from controller.config import Config
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.entries import build_admission_entry
from controller.ledger.keys import load_signer
from controller.ledger.models import AdmissionEntry
from controller.ledger.store import Ledger
from controller.review import WorkloadRequest, parse_review

DIGEST = "sha256:" + "ab" * 32
CONFIG = Config()


def deployment(name: str, *, namespace: str = "default", image: str = f"nginx@{DIGEST}",
               build: str = "b-1", replicas: int = 0, env: str = "v1",
               progress_deadline: int | None = None) -> dict[str, Any]:
    """A Deployment manifest with provenance annotations; 0 replicas by default (no kubelet)."""
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": image,
                                     "env": [{"name": "VERSION", "value": env}]}]},
        },
    }
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "annotations": {
            "provenance.dev/git-sha": "0123456789abcdef0123456789abcdef01234567",
            "provenance.dev/build-id": build,
            # kubectl authenticates as "admin" in the test cluster; the enforcing webhook of the
            # e2e session judges these applies too.
            "provenance.dev/deployed-by": "admin",
        }},
        "spec": spec,
    }


def review(obj: dict[str, Any], *, uid: str | None = None, operation: str = "CREATE",
           dry_run: bool = False, username: str = "alice") -> WorkloadRequest:
    """The request our webhook would see for `obj`."""
    return parse_review({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": obj["metadata"].get("namespace", "default"),
            "name": obj["metadata"]["name"],
            "operation": operation,
            "userInfo": {"username": username, "uid": "u-1", "groups": ["dev"]},
            "object": obj, "dryRun": dry_run,
        },
    })


def admission_entry(uid: str | None = None, *, name: str = "web",
                    namespace: str = "default") -> AdmissionEntry:
    return build_admission_entry(review(deployment(name, namespace=namespace), uid=uid), CONFIG)


def unique_config(**overrides: Any) -> LedgerConfig:
    """A ledger in its own namespace, so that tests never see each other's chains."""
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "namespace": f"ledger-{suffix}", "checkpoint_key_namespace": f"keys-{suffix}",
        "segment_max_bytes": 16 * 1024, "max_entry_bytes": 4 * 1024,
    }
    values.update(overrides)
    return LedgerConfig(**values)


async def ensure_namespace(api: KubeApi, name: str) -> None:
    try:
        await api.request("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except KubeApiError as exc:
        if exc.status != 409:
            raise


def run_cli(kubeconfig: str, config: LedgerConfig, command: str,
            *argv: str) -> tuple[int, str, str]:
    """Run `ledger COMMAND` in-process (from a thread: the handler runs its own event loop)."""
    import argparse
    import contextlib
    import io

    from controller.ledger.cli import add_subcommands

    parser = argparse.ArgumentParser(prog="kubectl-provenance")
    add_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ledger", command, "--kubeconfig", kubeconfig,
                              "--namespace", config.namespace, "--chain", config.chain,
                              "--key-namespace", config.checkpoint_key_namespace, *argv])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = args.handler(args)
    return code, out.getvalue(), err.getvalue()


async def new_ledger(api: KubeApi, config: LedgerConfig, *, periodic_checkpoints: bool = False,
                     **kwargs: Any) -> Ledger:
    """A writer with the ledger's key (created in its key namespace on first use); not started.

    Every writer of one ledger shares the key, as the controller's replicas do."""
    await ensure_namespace(api, config.checkpoint_key_namespace)
    signer = await load_signer(api, config, create=True)
    return Ledger(api, config, signer=signer, periodic_checkpoints=periodic_checkpoints, **kwargs)
