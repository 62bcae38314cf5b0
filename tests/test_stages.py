"""controller.stages: the signature and ledger stages, with a real verifier and a real ledger."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.admission import Admission, judge
from controller.config import Config, parse_config
from controller.dev.controlplane import LocalControlPlane
from controller.errors import ConfigError
from controller.kube import Credentials, KubeApi
from controller.ledger import Ledger
from controller.ledger.chain import CheckpointSigner
from controller.policy.violations import Reason
from controller.review import parse_review
from controller.signatures import ImageEvidence, ImageVerifier, SignatureConfig
from controller.stages import (
    BreakGlassStage,
    LedgerStage,
    RollbackStage,
    SignatureStage,
    _ledger_image,
)
from tests.builders import deployment, prov_annotations, review, workload
from tests.fixtures.registry import DEMO_REPOSITORY, RegistryServer
from tests.ledger.helpers import new_ledger, unique_config

KEY = Path(__file__).parent / "data" / "cosign" / "cosign.pub"
UNREACHABLE = "127.0.0.1:9"  # discard port: nothing listens, so every fetch fails at once
IMAGE = f"{UNREACHABLE}/team/app@sha256:" + "a" * 64
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _signing_config() -> Config:
    return Config(signatures=SignatureConfig.model_validate({
        "enabled": True, "keys": [{"name": "k", "path": str(KEY)}],
        "registry": {"insecure_registries": [UNREACHABLE]}}))


async def test_an_update_that_deploys_nothing_new_is_not_reverified() -> None:
    config = _signing_config()
    verifier = ImageVerifier(config.signatures)
    admission = Admission(config, stages=(SignatureStage(verifier, config),), budget_seconds=3)
    try:
        old = deployment(containers=[IMAGE])
        relabelled = deployment(containers=[IMAGE])
        relabelled["metadata"]["labels"] = {"team": "a"}
        no_change = await admission.review(parse_review(review(relabelled, operation="UPDATE",
                                                               old=old)))
        assert no_change.decision.violations == ()
        # A change to what runs is verified, and the unreachable registry denies it.
        new_image = deployment(containers=[IMAGE.replace("a" * 64, "b" * 64)])
        changed = await admission.review(parse_review(review(new_image, operation="UPDATE",
                                                             old=old)))
        assert [v.reason for v in changed.decision.violations] == [Reason.REGISTRY_ERROR]
    finally:
        await verifier.close()


async def test_the_signature_stage_leaves_time_for_the_ledger() -> None:
    config = _signing_config()
    verifier = ImageVerifier(config.signatures)
    stage = SignatureStage(verifier, config, reserve_seconds=1.5)
    seen: list[float] = []
    original = verifier.verify

    async def spy(*args: object, **kwargs: object) -> object:
        seen.append(float(kwargs["deadline"]))  # type: ignore[arg-type]
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    verifier.verify = spy  # type: ignore[method-assign,assignment]
    try:
        admission = Admission(config, stages=(stage,), budget_seconds=3)
        before = time.monotonic()
        await admission.review(parse_review(review(deployment(containers=[IMAGE]))))
        assert seen
        assert seen[0] <= before + 3 - 1.5 + 0.1
    finally:
        await verifier.close()


def test_ledger_evidence_says_verified_only_when_the_rule_was_met() -> None:
    failed = ImageEvidence(container="container app", image=IMAGE, digest="sha256:" + "a" * 64,
                           requirement="attestation", verified=False,
                           signature_formats=("bundle",), key_ids=("k1",),
                           attestation_commit="f" * 40)
    record = _ledger_image(failed)
    assert record.signature is not None
    assert record.attestation is not None
    assert not record.signature.verified
    assert not record.attestation.verified
    assert record.attestation.commit_sha == "f" * 40


@pytest.fixture
async def real_ledger(kube_api: KubeApi,
                      control_plane: LocalControlPlane) -> AsyncIterator[Ledger]:
    ledger = await new_ledger(kube_api, unique_config(max_entry_bytes=16 * 1024,
                                                      segment_max_bytes=64 * 1024),
                              periodic_checkpoints=True)
    await ledger.start()
    yield ledger
    await ledger.close()


async def test_everything_the_checks_accept_can_be_recorded(real_ledger: Ledger) -> None:
    # A 1,500-character branch passes the annotation limit (2,048); the ledger must take it too,
    # or an admissible Deployment would be denied as an internal error.
    config = Config()
    admission = Admission(config, stages=(LedgerStage(real_ledger, config),), budget_seconds=5)
    obj = deployment(ann=prov_annotations(branch="b" * 1500))
    outcome = await admission.review(parse_review(review(obj)))
    assert outcome.decision.violations == ()
    assert outcome.recorded_seq is not None


RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


async def _records(ledger: Ledger) -> list[dict[str, Any]]:
    from controller.ledger.verify import load_chain, verify_segments

    data = await load_chain(ledger.api, ledger.config.namespace, ledger.config.chain,
                            key_namespace=ledger.config.checkpoint_key_namespace)
    report = verify_segments(data, chain=ledger.config.chain,
                             max_entry_bytes=ledger.config.max_entry_bytes)
    return [r.record.entry.model_dump(mode="json") for r in report.records
            if r.record.entry.type == "admission"]


@pytest.mark.parametrize("record_derived", [False, True])
async def test_derived_objects_are_recorded_only_when_asked(
        kube_api: KubeApi, record_derived: bool) -> None:
    config = Config(ledger=unique_config(record_derived=record_derived))
    ledger = await new_ledger(kube_api, config.ledger, periodic_checkpoints=True)
    await ledger.start()
    try:
        admission = Admission(config, stages=(LedgerStage(ledger, config),), budget_seconds=5)
        authored = await admission.review(parse_review(review(workload(
            "StatefulSet", "db", template_ann=prov_annotations()))))
        derived = await admission.review(parse_review(review(workload(
            "Pod", "db-0", ann=prov_annotations()), username=RS_CONTROLLER)))
        person = await admission.review(parse_review(review(workload(
            "Pod", "debug", ann=prov_annotations()))))
        assert authored.decision.allowed and derived.decision.allowed and person.decision.allowed
        assert authored.recorded_seq is not None and person.recorded_seq is not None
        assert (derived.recorded_seq is not None) is record_derived
        kinds = [(e["kind"], e["name"]) for e in await _records(ledger)]
        assert kinds == [("StatefulSet", "db"), *([("Pod", "db-0")] if record_derived else []),
                         ("Pod", "debug")]
    finally:
        await ledger.close()


async def test_an_ephemeral_container_is_recorded_with_its_subresource(real_ledger: Ledger) -> None:
    config = Config()
    admission = Admission(config, stages=(LedgerStage(real_ledger, config),), budget_seconds=5)
    old = workload("Pod", "web", ann=prov_annotations())
    new = workload("Pod", "web", ann=prov_annotations())
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": IMAGE}]
    outcome = await admission.review(parse_review(review(
        new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")))
    assert outcome.decision.violations == () and outcome.recorded_seq is not None
    [entry] = await _records(real_ledger)
    assert (entry["kind"], entry["subresource"], entry["operation"]) == (
        "Pod", "ephemeralcontainers", "UPDATE")
    assert [c["kind"] for c in entry["containers"]] == ["container", "ephemeralContainer"]


BREAK_GLASS = parse_config("""
environments: {production: {namespaces: [prod], groups: [deployers]}}
break_glass:
  environments:
    production: {groups: [sre], waivable: [ActorMismatch]}
""")


def _emergency(**overrides: str | None) -> dict[str, Any]:
    values: dict[str, str | None] = {
        "deployed_by": "bob", "break_glass": "INC-4711: checkout is down",
        "break_glass_waive": "ActorMismatch"}
    values.update(overrides)
    return deployment("checkout", "prod", ann=prov_annotations(**values))


async def test_break_glass_is_recorded_and_announced(kube_api: KubeApi) -> None:
    config = BREAK_GLASS.model_copy(update={"ledger": unique_config()})
    ledger = await new_ledger(kube_api, config.ledger, periodic_checkpoints=True)
    await ledger.start()
    told: list[tuple[str, tuple[str, ...]]] = []
    stage = BreakGlassStage(config, on_break_glass=lambda r, b: told.append((r.name, b.waived)))
    admission = Admission(config, stages=(stage, LedgerStage(ledger, config)), budget_seconds=5)
    try:
        outcome = await admission.review(parse_review(review(
            _emergency(), username="alice", groups=["deployers", "sre"])))
        assert outcome.decision.allowed and outcome.decision.violations == ()
        assert any("break glass by alice" in n for n in outcome.decision.warnings())
        assert told == [("checkout", ("ActorMismatch",))]
        [entry] = await _records(ledger)
        assert entry["break_glass"] == {"reason": "INC-4711: checkout is down",
                                        "username": "alice", "waived": ["ActorMismatch"]}
        # A normal deploy records no break_glass at all (its canonical bytes are unchanged).
        normal = await admission.review(parse_review(review(
            deployment("checkout", "prod", ann=prov_annotations(deployed_by="alice")),
            username="alice", groups=["deployers"])))
        assert normal.decision.allowed
        assert "break_glass" not in (await _records(ledger))[1]
    finally:
        await ledger.close()


@pytest.mark.parametrize(("overrides", "groups", "why"), [
    ({"break_glass": None}, ["deployers", "sre"], "the reason must be"),
    ({"break_glass": "asap"}, ["deployers", "sre"], "the reason must be"),
    ({"break_glass_waive": None}, ["deployers", "sre"], "name the reason codes"),
    ({}, ["deployers"], "may not break glass in environment 'production'"),
    ({"break_glass_waive": "ActorMismatch,SignatureMissing"}, ["deployers", "sre"],
     "SignatureMissing may not be waived"),
])
async def test_break_glass_refused(overrides: dict[str, str | None], groups: list[str],
                                   why: str) -> None:
    told: list[object] = []
    stage = BreakGlassStage(BREAK_GLASS, on_break_glass=lambda r, b: told.append(b))
    admission = Admission(BREAK_GLASS, stages=(stage,), budget_seconds=5)
    outcome = await admission.review(parse_review(review(
        _emergency(**overrides), username="alice", groups=groups)))
    assert [v.reason for v in outcome.decision.violations] == [
        Reason.ACTOR_MISMATCH, Reason.BREAK_GLASS_REFUSED]
    assert why in outcome.decision.violations[1].message
    assert outcome.break_glass is None and told == []


def test_never_waivable_codes_are_refused_in_the_configuration() -> None:
    for code in ("ImageNotPinned", "LedgerUnavailable", "NoSuchCode"):
        with pytest.raises(ConfigError, match=code):
            parse_config("break_glass: {default: {groups: [sre], waivable: [" + code + "]}}")


ROLLBACK = parse_config("""
environments: {production: {namespaces: [prod], users: [alice, bob]}}
rollback: {groups: [oncall]}
""")
V1 = "registry.example.com/shop/app@sha256:" + "1" * 64
V2 = "registry.example.com/shop/app@sha256:" + "2" * 64


def _version(image: str, *, uid: str = "u-web") -> dict[str, Any]:
    obj = deployment("web", "prod", containers=[image],
                     template_ann=prov_annotations(deployed_by="alice"), ann={})
    obj["metadata"]["uid"] = uid
    return obj


async def test_rollout_undo_by_another_authorised_user_is_a_rollback(kube_api: KubeApi) -> None:
    from controller.ledger import build_outcome_entry
    from controller.ledger.reader import LedgerReader

    config = ROLLBACK.model_copy(update={"ledger": unique_config()})
    ledger = await new_ledger(kube_api, config.ledger, periodic_checkpoints=True)
    await ledger.start()
    # A long-lived shared read, made before any of this object's entries: a rollback must
    # still be recognised (a read older than the request is not the last word).
    reader = LedgerReader(kube_api, config.ledger, verifier=None, ttl=3600)
    assert await reader.views() == []
    admission = Admission(config, stages=(RollbackStage(reader, config),
                                          LedgerStage(ledger, config)), budget_seconds=5)

    async def persisted(seq: int | None, body: dict[str, Any]) -> None:
        assert seq is not None
        leaf = next(r for r in await _stored(ledger) if r.seq == seq).leaf
        await ledger.append(build_outcome_entry("persisted", ref_seq=seq, ref_leaf=leaf,
                                                body=body, namespace="prod", name="web"))

    try:
        v1, v2 = _version(V1), _version(V2)
        first = await admission.review(parse_review(review(v1, username="alice")))
        await persisted(first.recorded_seq, v1)
        second = await admission.review(parse_review(review(v2, operation="UPDATE", old=v1,
                                                            username="alice")))
        await persisted(second.recorded_seq, v2)
        # bob (may deploy to production) undoes to v1, whose template names alice.
        undo = await admission.review(parse_review(review(v1, operation="UPDATE", old=v2,
                                                          username="bob")))
        assert undo.decision.violations == (), undo.decision.violations
        assert undo.rollback is not None and undo.rollback.restored_from == first.recorded_seq
        entry = (await _records(ledger))[-1]
        assert entry["actor"]["username"] == "bob"
        assert entry["rollback"]["original_deployer"] == "alice"
        assert entry["rollback"]["restored_from"] == first.recorded_seq
        # carol may not deploy to production, and is not on the rollback list.
        carol = await admission.review(parse_review(review(v1, operation="UPDATE", old=v2,
                                                           username="carol")))
        assert {v.reason for v in carol.decision.violations} == {
            Reason.ACTOR_MISMATCH, Reason.ACTOR_NOT_AUTHORISED}
        # dave is on the rollback list through his group.
        dave = await admission.review(parse_review(review(v1, operation="UPDATE", old=v2,
                                                          username="dave", groups=["oncall"])))
        assert dave.decision.violations == () and dave.rollback is not None
        # A template never admitted for this object is not a rollback.
        other = await admission.review(parse_review(review(
            _version(V1.replace("1" * 64, "3" * 64)), operation="UPDATE", old=v2,
            username="bob")))
        assert [v.reason for v in other.decision.violations] == [Reason.ACTOR_MISMATCH]
        # Nor is v1's template on another object that reuses the name.
        reused = await admission.review(parse_review(review(
            _version(V1, uid="u-other"), operation="UPDATE", old=_version(V2, uid="u-other"),
            username="bob")))
        assert [v.reason for v in reused.decision.violations] == [Reason.ACTOR_MISMATCH]
    finally:
        await ledger.close()


async def test_no_rollback_from_a_ledger_that_does_not_verify(kube_api: KubeApi) -> None:
    from controller.ledger import build_outcome_entry
    from controller.ledger.reader import LedgerReader

    config = ROLLBACK.model_copy(update={"ledger": unique_config()})
    ledger = await new_ledger(kube_api, config.ledger, periodic_checkpoints=True)
    await ledger.start()
    reader = LedgerReader(kube_api, config.ledger, verifier=None, ttl=0)
    admission = Admission(config, stages=(RollbackStage(reader, config),
                                          LedgerStage(ledger, config)), budget_seconds=5)
    try:
        v1, v2 = _version(V1), _version(V2)
        first = await admission.review(parse_review(review(v1, username="alice")))
        assert first.recorded_seq is not None
        leaf = (await _stored(ledger))[0].leaf
        await ledger.append(build_outcome_entry("persisted", ref_seq=first.recorded_seq,
                                                ref_leaf=leaf, body=v1, namespace="prod",
                                                name="web"))
    finally:
        await ledger.close()
    # Someone rewrites the stored v1 entry (a different deployer, the same template).
    path = f"/api/v1/namespaces/{config.ledger.namespace}/configmaps/{config.ledger.chain}-00000000"
    segment = await kube_api.request("GET", path)
    key = sorted(k for k in segment["data"] if k.startswith("e-"))[0]
    segment["data"][key] = segment["data"][key].replace('"alice"', '"mallory"', 1)
    # Segments are immutable: the rewriter must delete and recreate it.
    await kube_api.request("DELETE", path)
    await kube_api.request("POST", path.rsplit("/", 1)[0], body={
        "apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": segment["data"],
        "metadata": {"name": segment["metadata"]["name"],
                     "labels": segment["metadata"]["labels"]}})
    undo = await admission.review(parse_review(review(v1, operation="UPDATE", old=v2,
                                                      username="bob")))
    assert [v.reason for v in undo.decision.violations] == [Reason.ACTOR_MISMATCH]
    assert undo.rollback is None
    assert any("the ledger could not be read" in n for n in undo.decision.notes)


async def _stored(ledger: Ledger) -> list[Any]:
    from controller.ledger.verify import load_chain, verify_segments

    data = await load_chain(ledger.api, ledger.config.namespace, ledger.config.chain,
                            key_namespace=ledger.config.checkpoint_key_namespace)
    return verify_segments(data, chain=ledger.config.chain,
                           max_entry_bytes=ledger.config.max_entry_bytes).records


async def test_a_rollback_is_verified_under_todays_trust(
        kube_api: KubeApi, registry: RegistryServer, cosign_registry: dict[str, str]) -> None:
    from controller.ledger import build_outcome_entry
    from controller.ledger.reader import LedgerReader

    def config(key: Path) -> Config:
        return ROLLBACK.model_copy(update={"ledger": ledger_config, "signatures":
                                           SignatureConfig.model_validate({
                                               "enabled": True,
                                               "keys": [{"name": "release", "path": str(key)}],
                                               "registry": {"insecure_registries": [
                                                   registry.host]}})})

    verifiers: list[ImageVerifier] = []

    def pipeline(cfg: Config) -> Admission:
        verifiers.append(ImageVerifier(cfg.signatures))
        return Admission(cfg, stages=(
            RollbackStage(LedgerReader(kube_api, cfg.ledger, verifier=None, ttl=0), cfg),
            SignatureStage(verifiers[-1], cfg), LedgerStage(ledger, cfg)), budget_seconds=10)

    ledger_config = unique_config()
    ledger = await new_ledger(kube_api, ledger_config, periodic_checkpoints=True)
    await ledger.start()
    images = [f"{registry.host}/{DEMO_REPOSITORY}@{cosign_registry[t]}" for t in ("v1", "v2")]
    v1, v2 = (_version(image) for image in images)
    try:
        then = pipeline(config(KEY))
        for obj, old in ((v1, None), (v2, v1)):
            kwargs: dict[str, Any] = {"operation": "UPDATE", "old": old} if old else {}
            done = await then.review(parse_review(review(obj, username="alice", **kwargs)))
            assert done.recorded_seq is not None, done.decision.violations
            leaf = next(r for r in await _stored(ledger) if r.seq == done.recorded_seq).leaf
            await ledger.append(build_outcome_entry("persisted", ref_seq=done.recorded_seq,
                                                    ref_leaf=leaf, body=obj, namespace="prod",
                                                    name="web"))
        undo = parse_review(review(v1, operation="UPDATE", old=v2, username="bob"))
        # Under the trust it was admitted with, bob's undo is a rollback.
        assert (await pipeline(config(KEY)).review(undo)).decision.violations == ()
        # The key that signed v1 has since been removed from the trust: the rollback is
        # recognised, and denied for its signature.
        revoked = await pipeline(config(KEY.parent / "other-key.pub")).review(undo)
        assert revoked.rollback is not None
        assert [v.reason for v in revoked.decision.violations] == [Reason.SIGNATURE_UNTRUSTED]
    finally:
        await ledger.close()
        for verifier in verifiers:
            await verifier.close()


def _environment_config() -> Config:
    """Signatures required only in production; `prod` is production's namespace."""
    return parse_config(f"""
environments:
  production: {{namespaces: [prod], users: [admin]}}
signatures:
  enabled: true
  keys: [{{name: k, path: "{KEY}"}}]
  default_require: none
  rules: [{{prefix: "{UNREACHABLE}/", environments: [production]}}]
  registry: {{insecure_registries: ["{UNREACHABLE}"]}}
""")


@pytest.mark.parametrize(("namespace", "annotated", "checked"), [
    ("prod", "staging", True),  # the namespace's mapping wins over the annotation
    ("prod", None, True),
    ("dev", "production", True),  # an unmapped namespace: the annotation decides
    ("dev", "staging", False),
    ("dev", None, False),
])
async def test_the_namespace_decides_the_signature_rule(
    namespace: str, annotated: str | None, checked: bool,
) -> None:
    config = _environment_config()
    verifier = ImageVerifier(config.signatures)
    try:
        stage = SignatureStage(verifier, config)
        obj = deployment(namespace=namespace, containers=[IMAGE],
                         ann=prov_annotations(environment=annotated))
        request = parse_review(review(obj))
        outcome = await stage.run(request, judge(request, config, now=NOW),
                                  deadline=time.monotonic() + 3)
        # Under the production rule the unreachable registry denies; under none, nothing is read.
        got = [v.reason for v in outcome.decision.violations if v.reason == Reason.REGISTRY_ERROR]
        assert got == ([Reason.REGISTRY_ERROR] if checked else [])
        (evidence,) = outcome.evidence
        assert evidence.requirement == ("signature" if checked else "none")
    finally:
        await verifier.close()


@pytest.mark.parametrize("mode", ["enforce", "audit"])
async def test_a_failed_ledger_append_denies_even_in_audit_mode(mode: str) -> None:
    # A real Ledger that cannot write (never started, and its API server does not exist).
    config = parse_config(f"mode: {mode}")
    ledger = Ledger(KubeApi(Credentials(server=f"https://{UNREACHABLE}")), unique_config(),
                    signer=CheckpointSigner.generate())
    admission = Admission(config, stages=(LedgerStage(ledger, config),), budget_seconds=2)
    outcome = await admission.review(parse_review(review(deployment())))
    assert not outcome.decision.allowed
    assert [v.reason for v in outcome.decision.violations] == [Reason.LEDGER_UNAVAILABLE]
    assert "could not be recorded" in outcome.decision.violations[0].message
    assert outcome.recorded_seq is None


async def test_nothing_is_appended_for_a_denial_or_a_dry_run() -> None:
    # The unwritable ledger would turn any append into LedgerUnavailable: none is attempted.
    config = Config()
    ledger = Ledger(KubeApi(Credentials(server=f"https://{UNREACHABLE}")), unique_config(),
                    signer=CheckpointSigner.generate())
    admission = Admission(config, stages=(LedgerStage(ledger, config),), budget_seconds=2)
    dry = await admission.review(parse_review(review(deployment(), dry_run=True)))
    assert dry.decision.allowed and dry.decision.violations == ()
    denied = await admission.review(parse_review(review(deployment(containers=["nginx"]))))
    assert [v.reason for v in denied.decision.violations] == [Reason.IMAGE_NOT_PINNED]
