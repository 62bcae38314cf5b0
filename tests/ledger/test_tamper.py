"""Tampering with a real stored chain; `ledger verify` must detect and name each kind."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi
from controller.ledger.chain import leaf_hash, next_head, record_bytes
from controller.ledger.cli import TAMPER_EXIT_CODES
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import TamperKind
from controller.ledger.models import Record, SealEntry
from controller.ledger.segments import (
    MERGE_PATCH,
    Segment,
    checkpoint_map_name,
    configmaps_path,
    list_segments,
)
from controller.ledger.store import Ledger
from tests.ledger.helpers import admission_entry, run_cli


@pytest.fixture
async def filled(ledger: Ledger, kube_api: KubeApi, ledger_config: LedgerConfig
                 ) -> list[Segment]:
    """~75 entries in a dozen segments (one per write), a checkpoint, then a few more."""
    for batch in range(6):
        await asyncio.gather(*(ledger.append(admission_entry(f"t-{batch}-{i}"))
                               for i in range(10)))
    await ledger.checkpoint()
    for i in range(5):
        await ledger.append(admission_entry(f"after-{i}"))
    segments = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    assert len(segments) >= 12 and max(len(s.entries()) for s in segments) >= 4
    return segments


def biggest(segments: list[Segment]) -> Segment:
    """A segment of several entries (a group commit), for the tampering inside one."""
    return max(segments[:-1], key=lambda s: len(s.entries()))


async def verify(control_plane: LocalControlPlane, config: LedgerConfig,
                 *argv: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(run_cli, str(control_plane.kubeconfig), config, "verify",
                                   *argv)


def tampered(result: tuple[int, str, str]) -> list[str]:
    return [line for line in result[2].splitlines() if line.startswith("TAMPERED")]


def expect(result: tuple[int, str, str], kind: TamperKind) -> None:
    """The exit code and the first problem line name `kind`."""
    code, _out, err = result
    assert code == TAMPER_EXIT_CODES[kind], err
    assert tampered(result)[0].startswith(f"TAMPERED [{kind}]"), err


async def patch_data(api: KubeApi, config: LedgerConfig, seg: Segment,
                     data: dict[str, Any]) -> None:
    """Change a mutable ConfigMap (the checkpoint map) in place."""
    await api.request("PATCH", configmaps_path(config.namespace, seg.name),
                      body={"data": data}, content_type=MERGE_PATCH)


async def rewrite(api: KubeApi, config: LedgerConfig, seg: Segment,
                  changes: dict[str, str | None]) -> None:
    """What an attacker must do to change an immutable segment: delete it and create it again,
    immutable, with the same name, labels and annotations (None deletes a data key)."""
    path = configmaps_path(config.namespace, seg.name)
    original = await api.request("GET", path)
    data = {k: v for k, v in {**original["data"], **changes}.items() if v is not None}
    await api.request("DELETE", path)
    await api.request("POST", configmaps_path(config.namespace), body={
        "apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": data,
        "metadata": {"name": seg.name, "labels": original["metadata"]["labels"],
                     "annotations": original["metadata"].get("annotations", {})}})


def checkpoint_map(config: LedgerConfig) -> Segment:
    return Segment(0, checkpoint_map_name(config.chain), "", "", False)


async def test_clean_chain_verifies(filled: list[Segment], control_plane: LocalControlPlane,
                                    ledger_config: LedgerConfig, tmp_path: Path) -> None:
    saved = tmp_path / "checkpoint.json"
    code, out, err = await verify(control_plane, ledger_config, "--save-checkpoint", str(saved))
    assert code == 0, err
    assert out.startswith("ok: ")
    assert json.loads(saved.read_text())["size"] > 60
    code, _out, err = await verify(control_plane, ledger_config, "--checkpoint", str(saved))
    assert code == 0, err


async def test_edited_entry(filled: list[Segment], kube_api: KubeApi,
                            control_plane: LocalControlPlane,
                            ledger_config: LedgerConfig) -> None:
    seg = biggest(filled)
    _seq, key, raw = seg.entries()[2]
    assert '"name":"web"' in raw
    await rewrite(kube_api, ledger_config, seg, {key: raw.replace('"name":"web"',
                                                                  '"name":"api"')})
    expect(await verify(control_plane, ledger_config), TamperKind.EDITED_ENTRY)


async def test_deleted_middle_segment(filled: list[Segment], kube_api: KubeApi,
                                      control_plane: LocalControlPlane,
                                      ledger_config: LedgerConfig) -> None:
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, filled[1].name))
    result = await verify(control_plane, ledger_config)
    expect(result, TamperKind.DELETED_SEGMENT)
    assert "segment(s) 1 are missing" in result[2]


async def test_sealed_segment_deleted_and_recreated_byte_for_byte(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    seg = filled[1]
    original = await kube_api.request("GET", configmaps_path(ledger_config.namespace, seg.name))
    assert original["immutable"] is True
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, seg.name))
    await kube_api.request("POST", configmaps_path(ledger_config.namespace), body={
        "apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": original["data"],
        "metadata": {"name": seg.name, "labels": original["metadata"]["labels"],
                     "annotations": original["metadata"].get("annotations", {})}})
    result = await verify(control_plane, ledger_config)
    expect(result, TamperKind.RECREATED_SEGMENT)
    assert len(tampered(result)) == 1, "only the recreation is wrong"


async def test_swapped_entries(filled: list[Segment], kube_api: KubeApi,
                               control_plane: LocalControlPlane,
                               ledger_config: LedgerConfig) -> None:
    seg = biggest(filled)
    (_a, key_a, raw_a), (_b, key_b, raw_b) = seg.entries()[1:3]
    await rewrite(kube_api, ledger_config, seg, {key_a: raw_b, key_b: raw_a})
    expect(await verify(control_plane, ledger_config), TamperKind.REORDERED_ENTRIES)


async def test_swapped_entries_with_renumbering(filled: list[Segment], kube_api: KubeApi,
                                                control_plane: LocalControlPlane,
                                                ledger_config: LedgerConfig) -> None:
    """The attacker also fixes the sequence numbers; the links still give the order away."""
    seg = biggest(filled)
    (seq_a, key_a, raw_a), (seq_b, key_b, raw_b) = seg.entries()[1:3]
    a, b = Record.model_validate_json(raw_a), Record.model_validate_json(raw_b)
    new_a = record_bytes(b.model_copy(update={"seq": seq_a})).decode()
    new_b = record_bytes(a.model_copy(update={"seq": seq_b})).decode()
    await rewrite(kube_api, ledger_config, seg, {key_a: new_a, key_b: new_b})
    expect(await verify(control_plane, ledger_config), TamperKind.REORDERED_ENTRIES)


async def test_a_cut_with_the_checkpoint_rolled_back_is_caught_by_a_plain_verify(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig, tmp_path: Path, ledger: Ledger) -> None:
    await ledger.checkpoint()  # covers the newest entries too
    saved = tmp_path / "checkpoint.json"
    code, _out, err = await verify(control_plane, ledger_config, "--save-checkpoint", str(saved))
    assert code == 0, err
    await ledger.close()  # its signed head beside the key is written
    # The attacker deletes the newest segment and rolls the checkpoint ConfigMap back to the
    # previous seal's checkpoint, which is genuinely signed and consistent with what remains.
    segments = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    newest = segments[-1]
    first = Record.model_validate_json(newest.entries()[0][2])
    assert isinstance(first.entry, SealEntry) and first.entry.checkpoint is not None
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, newest.name))
    await patch_data(kube_api, ledger_config, checkpoint_map(ledger_config),
                     {"latest": first.entry.checkpoint.model_dump_json()})
    # The signed head beside the key, out of the attacker's reach, gives it away.
    result = await verify(control_plane, ledger_config)
    expect(result, TamperKind.TRUNCATED)
    assert "the signed head beside the ledger key" in result[2]
    expect(await verify(control_plane, ledger_config, "--checkpoint", str(saved)),
           TamperKind.TRUNCATED)


async def test_every_segment_and_the_checkpoint_map_deleted_is_a_cut_not_an_empty_ledger(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig, ledger: Ledger) -> None:
    await ledger.close()
    for seg in await list_segments(kube_api, ledger_config.namespace, ledger_config.chain):
        await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, seg.name))
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace,
                                                     checkpoint_map_name(ledger_config.chain)))
    expect(await verify(control_plane, ledger_config), TamperKind.TRUNCATED)


async def test_a_consistent_rewrite_cannot_be_signed(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig, ledger: Ledger) -> None:
    from controller.ledger.chain import CheckpointSigner

    await ledger.close()
    # Rewrite the newest segment: every link recomputed, and a head signed with the
    # attacker's own key, which is all a writer of the ledger namespace can sign with.
    segments = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    seg = segments[-1]
    entries = seg.entries()
    head = bytes.fromhex(Record.model_validate_json(entries[0][2]).prev)
    data: dict[str, str | None] = {}
    seq = entries[0][0]
    for index, (seq, key, raw) in enumerate(entries):  # noqa: B007 (seq: the last one)
        record = Record.model_validate_json(raw)
        if index == len(entries) - 1:
            record = record.model_copy(update={"entry": record.entry.model_copy(
                update={"name": "api"})})
        raw_new = record_bytes(record.model_copy(update={"prev": head.hex()}))
        head = next_head(head, leaf_hash(raw_new))
        data[key] = raw_new.decode()
    data["head"] = CheckpointSigner.generate().sign(
        chain=ledger_config.chain, size=seq + 1, head=head).model_dump_json()
    await rewrite(kube_api, ledger_config, seg, data)
    result = await verify(control_plane, ledger_config)
    expect(result, TamperKind.UNSIGNED_SEGMENT)


async def test_a_forged_checkpoint_is_named(filled: list[Segment], kube_api: KubeApi,
                                            control_plane: LocalControlPlane,
                                            ledger_config: LedgerConfig) -> None:
    from controller.ledger.chain import CheckpointSigner

    # Signed, and consistent with the chain, but by a key that is not the controller's.
    forged = CheckpointSigner.generate().sign(chain=ledger_config.chain, size=0,
                                              head=bytes(32))
    await patch_data(kube_api, ledger_config, checkpoint_map(ledger_config),
                     {"latest": forged.model_dump_json()})
    expect(await verify(control_plane, ledger_config), TamperKind.BAD_SIGNATURE)


async def test_a_sealed_segment_recreated_mutable_is_named_twice(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    seg = filled[0]
    original = await kube_api.request("GET", configmaps_path(ledger_config.namespace, seg.name))
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, seg.name))
    await kube_api.request("POST", configmaps_path(ledger_config.namespace), body={
        "apiVersion": "v1", "kind": "ConfigMap", "data": original["data"],
        "metadata": {"name": seg.name, "labels": original["metadata"]["labels"]}})
    result = await verify(control_plane, ledger_config)
    kinds = {line.split("]")[0].removeprefix("TAMPERED [") for line in tampered(result)}
    assert kinds == {TamperKind.UNSEALED_SEGMENT, TamperKind.RECREATED_SEGMENT}
    assert result[0] == TAMPER_EXIT_CODES[TamperKind.UNSEALED_SEGMENT]


async def test_the_key_in_the_ledger_namespace_is_not_the_one_trusted(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    from controller.ledger.chain import CheckpointSigner

    # The attacker swaps in their own public key and a checkpoint signed with it; the public
    # key beside the ledger key is the one checked.
    mallory = CheckpointSigner.generate()
    forged = mallory.sign(chain=ledger_config.chain, size=0, head=bytes(32))
    await patch_data(kube_api, ledger_config, checkpoint_map(ledger_config), {
        "public-key": mallory.verifier.public_pem().decode(),
        "latest": forged.model_dump_json()})
    expect(await verify(control_plane, ledger_config), TamperKind.BAD_SIGNATURE)


async def test_a_pruned_before_marker_cannot_hide_the_chain(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    # No segment was deleted, but a marker claims everything before 99999 was pruned.
    await patch_data(kube_api, ledger_config, checkpoint_map(ledger_config),
                     {"pruned-before": "99999", "latest": None})
    expect(await verify(control_plane, ledger_config), TamperKind.CHECKPOINT_MISMATCH)


async def test_a_relabelled_segment_is_reported_as_tampering(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    from controller.ledger.segments import LABEL_ROLE

    seg = filled[-1]
    await kube_api.request("PATCH", configmaps_path(ledger_config.namespace, seg.name),
                           body={"metadata": {"labels": {LABEL_ROLE: None}}},
                           content_type=MERGE_PATCH)
    result = await verify(control_plane, ledger_config)
    expect(result, TamperKind.RELABELLED_SEGMENT)
    assert f"segment {seg.number}'s labels were changed" in result[2]
