"""The admission entry built from a request."""

from __future__ import annotations

import pytest

from controller.ledger.chain import canonical_json
from controller.ledger.entries import build_admission_entry
from controller.ledger.errors import DryRunNotRecorded
from controller.ledger.models import SignatureRecord, VerifiedImage
from tests.ledger.helpers import CONFIG, DIGEST, deployment, review


def test_entry_records_provenance_actor_and_digests() -> None:
    obj = deployment("web", image=f"registry.example/team/web:1.2@{DIGEST}")
    obj["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox:1"}]
    entry = build_admission_entry(review(obj, uid="u-42"), CONFIG)
    assert entry.admission_uid == "u-42"
    assert entry.operation == "CREATE"
    assert (entry.namespace, entry.name) == ("default", "web")
    assert entry.actor.username == "alice"
    assert entry.actor.groups == ("dev",)
    assert entry.actor.annotated == "admin"  # as claimed; the authenticated user is alice
    assert entry.provenance.commit_sha == "0123456789abcdef0123456789abcdef01234567"
    assert entry.provenance.build_id == "b-1"
    init, app = entry.containers
    assert (init.kind, init.digest, init.repository) == (
        "initContainer", None, "docker.io/library/busybox")
    assert (app.kind, app.digest, app.repository) == (
        "container", DIGEST, "registry.example/team/web")
    assert app.signature is None
    assert entry.template_hash.startswith("sha256:")


def test_entry_takes_verifier_evidence() -> None:
    obj = deployment("web")
    image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
    evidence = VerifiedImage(digest=DIGEST, signature=SignatureRecord(
        verified=True, formats=("cosign-simple-signing",), key_ids=("k1",)))
    entry = build_admission_entry(review(obj), CONFIG, images={image: evidence})
    assert entry.containers[0].signature == evidence.signature


def test_dry_run_never_becomes_an_entry() -> None:
    with pytest.raises(DryRunNotRecorded):
        build_admission_entry(review(deployment("web"), dry_run=True), CONFIG)


def test_annotations_hash_tells_builds_of_one_template_apart() -> None:
    one = build_admission_entry(review(deployment("web", build="b-1")), CONFIG)
    two = build_admission_entry(review(deployment("web", build="b-2")), CONFIG)
    assert one.template_hash == two.template_hash
    assert one.annotations_hash != two.annotations_hash


def test_observed_bodies_may_be_read_only_mapping_views() -> None:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from controller.workloads import KINDS, template_hash
    from controller.workloads import plain as _plain

    class View(Mapping[str, Any]):
        """Like kopf's body views: a Mapping, not a dict."""

        def __init__(self, raw: dict[str, Any]) -> None:
            self._raw = raw

        def __getitem__(self, key: str) -> Any:
            value = self._raw[key]
            return View(value) if isinstance(value, dict) else value

        def __iter__(self) -> Iterator[str]:
            return iter(self._raw)

        def __len__(self) -> int:
            return len(self._raw)

    raw = deployment("web")
    assert template_hash(KINDS[0], _plain(View(raw))) == template_hash(KINDS[0], raw)


def test_an_entry_without_waivers_keeps_its_canonical_bytes() -> None:
    # `waived` was added after the first entries were written: omitted when empty, old entries
    # still re-serialise to exactly their stored bytes.
    entry = build_admission_entry(review(deployment("web")), CONFIG)
    assert b"waived" not in canonical_json(entry.model_dump(mode="json"))
    waived = build_admission_entry(review(deployment("web")), CONFIG, waived=("ImageNotPinned",))
    assert b'"waived":["ImageNotPinned"]' in canonical_json(waived.model_dump(mode="json"))
