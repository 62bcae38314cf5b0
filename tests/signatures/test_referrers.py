"""Sigstore bundles found through the OCI 1.1 referrers API, not the fallback tag.

docker-registry 2.8 answers the API with 404, so every other bundle test reaches the bundles
through the `sha256-<hex>` tag. Here the registry is go-containerregistry's, with the API on
(bin/referrers-registry), and the fallback tags are left out: a bundle that verifies was found
through the API, or not at all.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from controller.policy.violations import Reason
from controller.registry import Deadline, RegistryClient, RegistrySettings
from tests.fixtures.registry import DEMO_REPOSITORY, RegistryServer
from tests.signatures.helpers import (
    BUNDLE_FLAGS,
    COMMIT,
    LEGACY_FLAGS,
    OTHER_PEM,
    TRUSTED_PEM,
    VerifierFactory,
    cosign,
    push_random_image,
    run,
)
from tests.signatures.test_cosign_fixtures import DIGESTS
from tests.signatures.test_fresh_cosign import slsa_predicate


@pytest.fixture(scope="module")
def layout_without_fallback(referrers_registry: RegistryServer) -> dict[str, str]:
    tags = referrers_registry.load_layout(DEMO_REPOSITORY, fallback_tags=False)
    # The legacy `.sig` and `.att` tags stay: they are cosign's other format, not referrers.
    assert not [t for t in tags if re.fullmatch(r"sha256-[0-9a-f]{64}", t)]
    return tags


def fallback_tag_status(registry: RegistryServer, repository: str, digest: str) -> int:
    tag = digest.replace(":", "-", 1)
    status, _, _ = registry._request("GET", f"{registry.url}/v2/{repository}/manifests/{tag}")
    return status


def referrers_of(registry: RegistryServer, repository: str, digest: str) -> list[Any]:
    """The referrers API's answer, read directly (the ground the client is tested on)."""
    url = f"{registry.url}/v2/{repository}/referrers/{digest}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        manifests: list[Any] = json.loads(resp.read())["manifests"]
    return manifests


def test_the_registry_serves_the_api(
    referrers_registry: RegistryServer, layout_without_fallback: dict[str, str],
) -> None:
    # v1 carries a signature bundle and an attestation bundle.
    assert len(referrers_of(referrers_registry, DEMO_REPOSITORY, DIGESTS["v1"])) == 2
    assert fallback_tag_status(referrers_registry, DEMO_REPOSITORY, DIGESTS["v1"]) == 404


async def test_the_client_reads_the_api(
    referrers_registry: RegistryServer, layout_without_fallback: dict[str, str],
) -> None:
    host = referrers_registry.host
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        found = await client.referrers(host, DEMO_REPOSITORY, DIGESTS["v1"],
                                       deadline=Deadline.after(5))
        assert len(found) == 2
        assert all(d.media_type == "application/vnd.oci.image.manifest.v1+json" for d in found)
        assert await client.referrers(host, DEMO_REPOSITORY, DIGESTS["v5"],
                                      deadline=Deadline.after(5)) == ()
        # Answered by the API, so the registry is not remembered as one without it.
        assert client._no_referrers_api == {}


@pytest.mark.parametrize(("tag", "reason"), [
    ("v1", None), ("v2", None), ("multi", None), ("v4", Reason.SIGNATURE_UNTRUSTED),
    ("v5", Reason.SIGNATURE_MISSING),
])
async def test_fixture_bundles_verify_through_the_api(
    referrers_registry: RegistryServer, layout_without_fallback: dict[str, str],
    verifier_factory: VerifierFactory, tag: str, reason: Reason | None,
) -> None:
    verifier = verifier_factory(referrers_registry.host)
    outcome = await run(verifier, f"{referrers_registry.host}/{DEMO_REPOSITORY}@{DIGESTS[tag]}")
    assert [v.reason for v in outcome.violations] == ([reason] if reason else [])
    (evidence,) = outcome.evidence
    assert evidence.signature_formats == (() if reason else ("bundle",))


async def test_fixture_attestation_verifies_through_the_api(
    referrers_registry: RegistryServer, layout_without_fallback: dict[str, str],
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(referrers_registry.host, default_require="attestation")
    outcome = await run(verifier, f"{referrers_registry.host}/{DEMO_REPOSITORY}@{DIGESTS['v1']}")
    assert outcome.violations == ()
    assert outcome.evidence[0].attestation_commit == COMMIT
    assert outcome.evidence[0].attestation_formats == ("bundle",)


async def test_fresh_cosign_bundles_go_through_the_api(
    referrers_registry: RegistryServer, verifier_factory: VerifierFactory, tmp_path: Path,
) -> None:
    # cosign 3 asks the registry for the API first; finding it, it writes no fallback tag.
    registry, repo = referrers_registry, "fresh/referrers"
    digest = push_random_image(registry, repo)
    image = f"{registry.host}/{repo}@{digest}"
    cosign("sign", *BUNDLE_FLAGS, image)
    cosign("attest", *BUNDLE_FLAGS, "--type", "slsaprovenance1",
           "--predicate", str(slsa_predicate(tmp_path, COMMIT)), image)
    assert fallback_tag_status(registry, repo, digest) == 404
    assert len(referrers_of(registry, repo, digest)) == 2
    verifier = verifier_factory(registry.host, default_require="attestation")
    outcome = await run(verifier, image)
    assert outcome.violations == ()
    (evidence,) = outcome.evidence
    assert evidence.signature_formats == ("bundle",)
    assert evidence.attestation_formats == ("bundle",)
    assert evidence.attestation_commit == COMMIT


async def test_one_key_in_two_formats_is_one_signer(
    referrers_registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    # A bundle (through the API) and a legacy .sig, both by the trusted key: a threshold of two
    # keys is not met by one key signing twice.
    registry, repo = referrers_registry, "fresh/threshold"
    digest = push_random_image(registry, repo)
    image = f"{registry.host}/{repo}@{digest}"
    cosign("sign", *BUNDLE_FLAGS, image)
    cosign("sign", *LEGACY_FLAGS, image)
    rules = [{"prefix": f"{registry.host}/{repo}", "threshold": 2}]
    keys = [{"name": "release", "pem": TRUSTED_PEM}, {"name": "other", "pem": OTHER_PEM}]
    outcome = await run(verifier_factory(registry.host, keys=keys, rules=rules), image)
    assert [v.reason for v in outcome.violations] == [Reason.SIGNATURE_THRESHOLD]
    assert outcome.evidence[0].signature_formats == ("bundle", "legacy-sig")
    one = await run(verifier_factory(registry.host), image)
    assert one.violations == ()

