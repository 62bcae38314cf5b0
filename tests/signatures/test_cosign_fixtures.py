"""Agreement with `cosign verify` on the shipped fixtures (tests/data/cosign/README.md)."""

from __future__ import annotations

import pytest

from controller.policy.violations import Reason
from tests.fixtures.registry import DEMO_REPOSITORY, RegistryServer
from tests.signatures.helpers import COMMIT, VerifierFactory, run

DIGESTS = {
    "v1": "sha256:b5b1e7f55d49730ba3119608964ba401309f389835dac7ab40657beafbb5ad07",
    "v2": "sha256:c16b6fdd5113f7c6f9e3074b1fb2721282cc4658a2b656f283c14e9c4399c78c",
    "v3": "sha256:0de0ba3d48ca88d2dc8bfc1fd8a79c554cf8bb7d66355a6a8e4e0fbfa756d5b6",
    "v4": "sha256:2ed5bdb0884172298883d487c1ef574457f8261f562e7f624026a2d5e0f884df",
    "v5": "sha256:e44ac84d24aa992dd31a42b7071ed921be45da2a0ae4b202bdf95edaf524be0a",
    "multi": "sha256:467c8c03ab45b3f54258ddeea936ed8e356bf898826ead1e0c8ca746d37e6646",
}


def image(registry: RegistryServer, tag: str) -> str:
    return f"{registry.host}/{DEMO_REPOSITORY}@{DIGESTS[tag]}"


def test_layout_loaded_with_readme_digests(cosign_registry: dict[str, str]) -> None:
    for tag, digest in DIGESTS.items():
        assert cosign_registry[tag] == digest


@pytest.mark.parametrize(("tag", "reason", "formats"), [
    ("v1", None, ("bundle",)),
    ("v2", None, ("bundle",)),
    ("v3", None, ("legacy-sig",)),
    ("multi", None, ("bundle",)),
    ("v4", Reason.SIGNATURE_UNTRUSTED, ()),
    ("v5", Reason.SIGNATURE_MISSING, ()),
])
async def test_signature_verdicts_agree_with_cosign(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
    tag: str, reason: Reason | None, formats: tuple[str, ...],
) -> None:
    verifier = verifier_factory(registry.host)
    outcome = await run(verifier, image(registry, tag))
    assert [v.reason for v in outcome.violations] == ([reason] if reason else [])
    (evidence,) = outcome.evidence
    assert evidence.verified is (reason is None)
    assert evidence.signature_formats == formats
    assert evidence.digest == DIGESTS[tag]
    if reason is None:
        assert evidence.key_names == ("release",)
        assert evidence.key_ids == ("BaW4aGgJjXRYpWoD4uqc77KSI4C9pA4jMBmNyUaV4To=",)
    else:
        assert "container c0" in outcome.violations[0].message
        assert DIGESTS[tag] in outcome.violations[0].message
    assert evidence.index is (tag == "multi")


@pytest.mark.parametrize(("tag", "fmt"), [("v1", "bundle"), ("v3", "legacy-att")])
async def test_attestations_verified_with_commit(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
    tag: str, fmt: str,
) -> None:
    verifier = verifier_factory(registry.host, default_require="attestation")
    outcome = await run(verifier, image(registry, tag), git_sha=COMMIT.upper())
    assert outcome.violations == ()
    (evidence,) = outcome.evidence
    assert evidence.attestation_commit == COMMIT
    assert evidence.attestation_formats == (fmt,)


@pytest.mark.parametrize("tag", ["v2", "multi"])
async def test_attestation_missing_where_cosign_has_none(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
    tag: str,
) -> None:
    verifier = verifier_factory(registry.host, default_require="attestation")
    outcome = await run(verifier, image(registry, tag))
    assert [v.reason for v in outcome.violations] == [Reason.ATTESTATION_MISSING]
