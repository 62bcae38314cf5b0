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
    """~65 entries over several 16 KiB segments, a checkpoint, then a few more entries."""
    for batch in range(6):
        await asyncio.gather(*(ledger.append(admission_entry(f"t-{batch}-{i}"))
                               for i in range(10)))
    await ledger.checkpoint()
    for i in range(5):
        await ledger.append(admission_entry(f"after-{i}"))
    segments = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    assert len(segments) >= 4 and len(segments[-1].entries()) >= 5
    return segments


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
    await api.request("PATCH", configmaps_path(config.namespace, seg.name),
                      body={"data": data}, content_type=MERGE_PATCH)


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
    seg = filled[-1]
    _seq, key, raw = seg.entries()[2]
    assert '"name":"web"' in raw
    await patch_data(kube_api, ledger_config, seg, {key: raw.replace('"name":"web"',
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
    seg = filled[-1]
    (_a, key_a, raw_a), (_b, key_b, raw_b) = seg.entries()[1:3]
    await patch_data(kube_api, ledger_config, seg, {key_a: raw_b, key_b: raw_a})
    expect(await verify(control_plane, ledger_config), TamperKind.REORDERED_ENTRIES)


async def test_swapped_entries_with_renumbering(filled: list[Segment], kube_api: KubeApi,
                                                control_plane: LocalControlPlane,
                                                ledger_config: LedgerConfig) -> None:
    """The attacker also fixes the sequence numbers; the links still give the order away."""
    seg = filled[-1]
    (seq_a, key_a, raw_a), (seq_b, key_b, raw_b) = seg.entries()[1:3]
    a, b = Record.model_validate_json(raw_a), Record.model_validate_json(raw_b)
    new_a = record_bytes(b.model_copy(update={"seq": seq_a})).decode()
    new_b = record_bytes(a.model_copy(update={"seq": seq_b})).decode()
    await patch_data(kube_api, ledger_config, seg, {key_a: new_a, key_b: new_b})
    expect(await verify(control_plane, ledger_config), TamperKind.REORDERED_ENTRIES)


async def test_truncation_is_caught_by_a_saved_checkpoint(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig, tmp_path: Path, ledger: Ledger) -> None:
    await ledger.checkpoint()  # covers the newest entries too
    saved = tmp_path / "checkpoint.json"
    code, _out, err = await verify(control_plane, ledger_config, "--save-checkpoint", str(saved))
    assert code == 0, err
    # The attacker deletes the newest segment and rolls the checkpoint ConfigMap back to the
    # last seal's checkpoint, which is genuinely signed and consistent with what remains.
    newest = filled[-1]
    first = Record.model_validate_json(newest.entries()[0][2])
    assert isinstance(first.entry, SealEntry) and first.entry.checkpoint is not None
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, newest.name))
    await patch_data(kube_api, ledger_config, Segment(
        0, checkpoint_map_name(ledger_config.chain), "", "", False),
        {"latest": first.entry.checkpoint.model_dump_json()})
    code, _out, _err = await verify(control_plane, ledger_config)
    assert code == 0, "without a saved checkpoint a consistent truncation is undetectable"
    expect(await verify(control_plane, ledger_config, "--checkpoint", str(saved)),
           TamperKind.TRUNCATED)


async def test_rewritten_history_is_caught_by_a_saved_checkpoint(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig, tmp_path: Path, ledger: Ledger) -> None:
    await ledger.checkpoint()  # covers the newest entries too
    saved = tmp_path / "checkpoint.json"
    assert (await verify(control_plane, ledger_config, "--save-checkpoint", str(saved)))[0] == 0
    # Rewrite the open segment from its third entry on, relinking every later entry, and drop
    # the newest checkpoint entry (the last one) that would give it away: a consistent but
    # different chain, and the checkpoint ConfigMap emptied.
    segments = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    seg = segments[-1]
    entries = seg.entries()
    assert Record.model_validate_json(entries[-1][2]).entry.type == "checkpoint"
    head = bytes.fromhex(Record.model_validate_json(entries[2][2]).prev)
    data: dict[str, Any] = {}
    for index, (_seq, key, raw) in enumerate(entries[2:]):
        record = Record.model_validate_json(raw)
        if index == 0:
            entry = record.entry.model_copy(update={"name": "api"})
            record = record.model_copy(update={"entry": entry})
        if record.entry.type == "checkpoint":
            data[key] = None
            continue
        record = record.model_copy(update={"prev": head.hex(), "seq": _seq})
        raw_new = record_bytes(record)
        head = next_head(head, leaf_hash(raw_new))
        data[key] = raw_new.decode()
    # Renumbering is not needed when the checkpoint entry is last; drop trailing gaps instead.
    await patch_data(kube_api, ledger_config, seg, data)
    await patch_data(kube_api, ledger_config, Segment(
        0, checkpoint_map_name(ledger_config.chain), "", "", False), {"latest": None})
    result = await verify(control_plane, ledger_config, "--checkpoint", str(saved))
    expect(result, TamperKind.CHECKPOINT_MISMATCH)


async def test_a_forged_checkpoint_is_named(filled: list[Segment], kube_api: KubeApi,
                                            control_plane: LocalControlPlane,
                                            ledger_config: LedgerConfig) -> None:
    from controller.ledger.chain import CheckpointSigner

    # Signed, and consistent with the chain, but by a key that is not the controller's.
    forged = CheckpointSigner.generate().sign(chain=ledger_config.chain, size=0,
                                              head=bytes(32))
    await patch_data(kube_api, ledger_config, Segment(
        0, checkpoint_map_name(ledger_config.chain), "", "", False),
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


async def test_a_removed_public_key_does_not_pass_for_verified(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    # Checkpoints exist (the chain was signed); without the key nobody could check them.
    await patch_data(kube_api, ledger_config, Segment(
        0, checkpoint_map_name(ledger_config.chain), "", "", False), {"public-key": None})
    expect(await verify(control_plane, ledger_config), TamperKind.BAD_SIGNATURE)


async def test_a_pruned_before_marker_cannot_hide_the_chain(
        filled: list[Segment], kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    # No segment was deleted, but a marker claims everything before 99999 was pruned.
    await patch_data(kube_api, ledger_config, Segment(
        0, checkpoint_map_name(ledger_config.chain), "", "", False),
        {"pruned-before": "99999", "latest": None})
    expect(await verify(control_plane, ledger_config), TamperKind.CHECKPOINT_MISMATCH)
