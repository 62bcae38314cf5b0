"""The CLI against the real API server: RBAC denial, export, prune; periodic checkpoints."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.certs import KeyPair
from controller.dev.controlplane import LocalControlPlane, _client_cert
from controller.kube import KubeApi, KubeApiError
from controller.ledger.chain import CheckpointSigner, canonical_json, leaf_hash, next_head
from controller.ledger.cli import EXIT_FORBIDDEN, TAMPER_EXIT_CODES
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerUnavailable, TamperKind
from controller.ledger.segments import checkpoint_map_name, configmaps_path, list_segments
from controller.ledger.store import Ledger
from tests.ledger.helpers import admission_entry, run_cli


async def fill(ledger: Ledger, count: int) -> None:
    for start in range(0, count, 10):
        await asyncio.gather(*(ledger.append(admission_entry(f"f-{start + i}"))
                               for i in range(min(10, count - start))))


def user_kubeconfig(cp: LocalControlPlane, user: str, path: Path) -> None:
    """A kubeconfig for `user`, authenticated by a client certificate from the cluster's CA.

    (A ServiceAccount token would be closer to production, but `controller.kube` does not yet
    read bearer tokens from a kubeconfig: the `kubernetes` loader files them under `BearerToken`.)
    """
    ca = KeyPair((cp.workdir / "pki" / "client-ca.crt").read_bytes(),
                 (cp.workdir / "pki" / "client-ca.key").read_bytes())
    pair = _client_cert(ca, user=user, groups=[])
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    config: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": user, "user": {
            "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
            "client-key-data": base64.b64encode(pair.key_pem).decode()}}],
        "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))


async def test_rbac_denial_is_a_clear_error_and_readers_cannot_write(
        kube_api: KubeApi, control_plane: LocalControlPlane, ledger: Ledger,
        ledger_config: LedgerConfig, tmp_path: Path,
        signer: CheckpointSigner) -> None:
    await fill(ledger, 3)
    ns = ledger_config.namespace
    kubeconfig = tmp_path / "auditor.kubeconfig"
    user_kubeconfig(control_plane, "auditor", kubeconfig)

    code, _out, err = await asyncio.to_thread(run_cli, str(kubeconfig), ledger_config, "verify")
    assert code == EXIT_FORBIDDEN
    assert "forbidden" in err and "RBAC" in err and ns in err

    # An auditor role reads the ledger; it still may not write it.
    await kube_api.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
                           body={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                 "metadata": {"name": "ledger-reader"},
                                 "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                                            "verbs": ["get", "list"]}]})
    await kube_api.request(
        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        body={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
              "metadata": {"name": "ledger-reader"},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                          "name": "ledger-reader"},
              "subjects": [{"kind": "User", "name": "auditor",
                            "apiGroup": "rbac.authorization.k8s.io"}]})
    # An auditor without access to the key namespace pins the public key instead.
    pem = kubeconfig.parent / "ledger.pub"
    pem.write_bytes(signer.verifier.public_pem())
    for _ in range(50):  # RBAC changes reach the authorizer's cache within moments
        code, _out, err = await asyncio.to_thread(run_cli, str(kubeconfig), ledger_config,
                                                  "verify", "--public-key", str(pem))
        if code != EXIT_FORBIDDEN:
            break
        await asyncio.sleep(0.1)
    assert code == 0, err
    auditor = KubeApi.from_kubeconfig(str(kubeconfig))
    try:
        # Even holding the key, reader credentials get no writer started (the signed heads
        # beside the key are not theirs to read), let alone a write.
        writer = Ledger(auditor, ledger_config, signer=signer, periodic_checkpoints=False)
        with pytest.raises(LedgerUnavailable, match="may not"):
            await writer.start()
        await writer.close()
    finally:
        await auditor.close()


async def test_export_is_recomputable_jsonl(
        control_plane: LocalControlPlane, ledger: Ledger, ledger_config: LedgerConfig,
        tmp_path: Path) -> None:
    await fill(ledger, 30)
    out_file = tmp_path / "ledger.jsonl"
    code, _out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "export", "--format", "jsonl",
        "--file", str(out_file))
    assert code == 0, err
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [line["record"]["seq"] for line in lines] == list(range(len(lines)))
    # An audit system can recompute the chain from the export alone.
    head = bytes(32)
    for line in lines:
        leaf = leaf_hash(canonical_json(line["record"]))
        head = next_head(head, leaf)
        assert (line["leaf"], line["head"]) == (leaf.hex(), head.hex())


async def test_prune_keeps_the_chain_verifiable_from_a_checkpoint(
        kube_api: KubeApi, control_plane: LocalControlPlane, ledger: Ledger,
        ledger_config: LedgerConfig, signer: CheckpointSigner, tmp_path: Path) -> None:
    await fill(ledger, 80)
    await ledger.checkpoint()
    before = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    assert len(before) >= 5
    early = tmp_path / "early.json"
    code, _out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "verify", "--save-checkpoint",
        str(early))
    assert code == 0, err

    exported = tmp_path / "pruned.jsonl"
    code, _out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "prune", "--keep", "2",
        "--export-file", str(exported))
    assert code == 0, err
    after = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    sealed_before = [s for s in before if s.sealed]
    assert [s.number for s in after] == [s.number for s in before][-2:]
    assert after[0].number == sealed_before[-2].number
    pruned_count = sum(len(s.entries()) for s in before if s.number < after[0].number)
    assert len(exported.read_text().splitlines()) == pruned_count

    # Appends go on; the kept chain verifies from the first kept segment's signed checkpoint.
    for i in range(5):
        await ledger.append(admission_entry(f"after-prune-{i}"))
    pem = tmp_path / "key.pub"
    pem.write_bytes(signer.verifier.public_pem())
    code, _out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "verify", "--public-key",
        str(pem), "--checkpoint", str(early))
    assert code == 0, err
    assert "pruned" in err

    # Deleting a kept segment is still detected.
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, after[1].name))
    code, _out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "verify")
    assert code == TAMPER_EXIT_CODES[TamperKind.DELETED_SEGMENT], err


async def test_periodic_checkpoints_are_published(kube_api: KubeApi,
                                                  ledger_config: LedgerConfig,
                                                  signer: CheckpointSigner) -> None:
    config = ledger_config.model_copy(update={"checkpoint_interval_seconds": 1.0})
    writer = Ledger(kube_api, config, signer=signer)
    await writer.start()
    try:
        for i in range(3):
            await writer.append(admission_entry(f"p-{i}"))
        deadline = time.monotonic() + 10
        latest = None
        while time.monotonic() < deadline:
            try:
                cmap = await kube_api.request("GET", configmaps_path(
                    config.namespace, checkpoint_map_name(config.chain)))
                latest = json.loads(cmap["data"]["latest"])
                break
            except KubeApiError:
                await asyncio.sleep(0.2)
        # Three writes (seal entries start the second and third), then the checkpoint's own
        # write, which starts with a seal: it covers six entries.
        assert latest is not None and latest["size"] == 6
    finally:
        await writer.close()
