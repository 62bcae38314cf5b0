"""controller.stages: the signature and ledger stages, with a real verifier and a real ledger."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.admission import Admission, judge
from controller.config import Config, parse_config
from controller.dev.controlplane import LocalControlPlane
from controller.kube import Credentials, KubeApi
from controller.ledger import Ledger
from controller.policy.violations import Reason
from controller.review import parse_review
from controller.signatures import ImageEvidence, ImageVerifier, SignatureConfig
from controller.stages import LedgerStage, SignatureStage, _ledger_image
from tests.builders import deployment, prov_annotations, review
from tests.ledger.helpers import unique_config

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
    ledger = Ledger(kube_api, unique_config(max_entry_bytes=16 * 1024,
                                            segment_max_bytes=64 * 1024))
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
    ledger = Ledger(KubeApi(Credentials(server=f"https://{UNREACHABLE}")), unique_config())
    admission = Admission(config, stages=(LedgerStage(ledger, config),), budget_seconds=2)
    outcome = await admission.review(parse_review(review(deployment())))
    assert not outcome.decision.allowed
    assert [v.reason for v in outcome.decision.violations] == [Reason.LEDGER_UNAVAILABLE]
    assert "could not be recorded" in outcome.decision.violations[0].message
    assert outcome.recorded_seq is None


async def test_nothing_is_appended_for_a_denial_or_a_dry_run() -> None:
    # The unwritable ledger would turn any append into LedgerUnavailable: none is attempted.
    config = Config()
    ledger = Ledger(KubeApi(Credentials(server=f"https://{UNREACHABLE}")), unique_config())
    admission = Admission(config, stages=(LedgerStage(ledger, config),), budget_seconds=2)
    dry = await admission.review(parse_review(review(deployment(), dry_run=True)))
    assert dry.decision.allowed and dry.decision.violations == ()
    denied = await admission.review(parse_review(review(deployment(containers=["nginx"]))))
    assert [v.reason for v in denied.decision.violations] == [Reason.IMAGE_NOT_PINNED]
