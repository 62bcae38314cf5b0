"""Sigstore bundle verification against sigstore-conformance's 70 bundle-verify cases, and more.

The cases are Sigstore's own (tests/data/sigstore-conformance/README.md): real bundles from the
public-good instance and from hand-built trust roots. Each runs twice, as the conformance harness
runs a client: with the artifact's path and with `sha256:<hex>` of it, through the
`verify-bundle` entry point. The expected verdict is the directory name.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import hashlib
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rfc3161_client import decode_timestamp_response

from controller.cli import main
from controller.signatures.bundle import (
    MAX_BUNDLE_BYTES,
    VerifiedBundle,
    _validate_keyed_hashedrekord_v001,
    parse_digest,
    verify_bundle,
    verify_bundle_async,
    verify_legacy_signature,
    with_proto3_defaults,
)
from controller.signatures.certificate import check_source
from controller.signatures.errors import VerificationError
from controller.signatures.keyless import IdentityPolicy, KeylessSigner, SignerMismatch
from controller.signatures.keys import PublicKey, load_public_key
from controller.signatures.trust import (
    TrustRoot,
    load_trust_root_file,
    parse_trust_root,
    public_good,
)
from tests.signatures.sigstore_instance import COMMIT as INSTANCE_COMMIT
from tests.signatures.sigstore_instance import GITHUB_ISSUER, LocalSigstore
from tests.signatures.sigstore_instance import SUBJECT as INSTANCE_SUBJECT
from tests.signatures.sigstore_log import LocalLog, key_signed_blob_bundle, key_signed_dsse_bundle

CASES = Path(__file__).parent.parent / "data" / "sigstore-conformance" / "bundle-verify"
IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ISSUER = "https://token.actions.githubusercontent.com"
REPOSITORY = "sigstore-conformance/extremely-dangerous-public-oidc-beacon"


@dataclass(frozen=True)
class Case:
    """One conformance case, read as the suite's README describes."""

    name: str
    path: Path

    @property
    def should_verify(self) -> bool:
        return not self.name.endswith("_fail")

    @property
    def artifact(self) -> Path:
        own = self.path / "artifact"
        return own if own.exists() else CASES / "a.txt"

    @property
    def digest(self) -> str:
        return f"sha256:{hashlib.sha256(self.artifact.read_bytes()).hexdigest()}"

    def _text(self, name: str, default: str) -> str:
        f = self.path / name
        return f.read_text().strip() if f.exists() else default

    def argv(self, target: str) -> list[str]:
        args = ["verify-bundle", "--bundle", str(self.path / "bundle.sigstore.json")]
        if (self.path / "key.pub").exists():
            args += ["--key", str(self.path / "key.pub")]
        else:
            args += ["--certificate-identity", self._text("identity", IDENTITY),
                     "--certificate-oidc-issuer", self._text("issuer", ISSUER)]
        if (self.path / "trusted_root.json").exists():
            args += ["--trusted-root", str(self.path / "trusted_root.json")]
        return [*args, target]


ALL_CASES = sorted((Case(p.name, p) for p in CASES.iterdir() if p.is_dir()),
                   key=lambda c: c.name)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`kubectl-provenance` in-process: its exit code and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def verdicts() -> list[tuple[str, bool, bool, str]]:
    """Every case, by path and by digest: (label, expected, got, message)."""
    out = []
    for case in ALL_CASES:
        for how, target in (("path", str(case.artifact)), ("digest", case.digest)):
            code, err = run_cli(case.argv(target))
            out.append((f"{case.name} by {how}", case.should_verify, code == 0, err.strip()))
    return out


def test_the_corpus_is_whole() -> None:
    assert len(ALL_CASES) == 70
    assert sum(c.should_verify for c in ALL_CASES) == 21


@pytest.mark.parametrize("how", ["path", "digest"])
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_conformance_case(case: Case, how: str) -> None:
    target = str(case.artifact) if how == "path" else case.digest
    code, err = run_cli(case.argv(target))
    if case.should_verify:
        assert code == 0, f"{case.name} should verify: {err}"
    else:
        assert code == 1, f"{case.name} should be refused, got exit {code}"
        assert err.startswith(f"FAIL: {target}: "), err


def test_conformance_score(capsys: pytest.CaptureFixture[str]) -> None:
    results = verdicts()
    right = sum(expected == got for _, expected, got, _ in results)
    misses = [label for label, expected, got, _ in results if expected != got]
    with capsys.disabled():
        print(f"\nsigstore-conformance bundle-verify: {right} of {len(results)} verdicts right"
              + (f"; misses: {', '.join(misses)}" if misses else ""))
    assert len(results) == 140
    assert right == 140, misses


# -- the API, beyond the conformance protocol ---------------------------------------------------

def case(name: str) -> Case:
    return Case(name, CASES / name)


def root_of(c: Case) -> TrustRoot:
    own = c.path / "trusted_root.json"
    return load_trust_root_file(own, name="case") if own.exists() else public_good()


def beacon(**extra: str) -> IdentityPolicy:
    return KeylessSigner.model_validate(
        {"name": "beacon", "issuer": ISSUER, "subject": IDENTITY, **extra}).policy()


def verify_case(c: Case, signer: IdentityPolicy | PublicKey | None = None,
                digest: str | None = None) -> VerifiedBundle:
    return verify_bundle((c.path / "bundle.sigstore.json").read_bytes(),
                         digest=c.digest if digest is None else digest, signer=signer or beacon(),
                         trust_root=root_of(c))


def test_verified_facts_of_a_keyless_message_signature() -> None:
    facts = verify_case(case("happy-path-v0.3"))
    assert facts.signer == "beacon" and facts.trust_root == "public-good"
    assert facts.log_entry_kind == "hashedrekord/0.0.1" and facts.log_index == 79571823
    assert [t.source for t in facts.times] == ["transparency-log"]
    assert facts.statement is None
    assert facts.identity is not None
    assert facts.identity.source_digest == "c7b3dfb335f051e1c86bda4c716fac97df62ad81"
    assert facts.identity.source_ref == "refs/heads/main"
    assert facts.identity.runner_environment == "github-hosted"


def test_the_certificate_commit_is_checked_against_git_sha() -> None:
    identity = verify_case(case("happy-path-v0.3")).identity
    assert identity is not None
    assert check_source(identity, git_sha="c7b3dfb335f051e1c86bda4c716fac97df62ad81",
                        branch="main") == ()
    [wrong] = check_source(identity, git_sha="0" * 40, branch="main")
    assert wrong.field == "commit" and wrong.found == "c7b3dfb335f051e1c86bda4c716fac97df62ad81"


def test_a_dsse_bundle_gives_its_statement() -> None:
    facts = verify_case(case("happy-path-intoto-in-dsse-v3"))
    assert facts.statement is not None
    assert facts.statement.predicate_type == "https://slsa.dev/provenance/v1"
    assert facts.log_entry_kind == "dsse/0.0.1"


def test_rekor_v2_bundles_get_their_time_from_the_timestamp_authority() -> None:
    facts = verify_case(case("rekor2-happy-path"))
    assert facts.log_entry_kind == "hashedrekord/0.0.2"
    assert [t.source for t in facts.times] == ["timestamp-authority"]


def test_the_legacy_intoto_entry_kind_verifies() -> None:
    facts = verify_case(case("intoto-with-custom-trust-root"))
    assert facts.log_entry_kind == "intoto/0.0.2"
    assert sorted(t.source for t in facts.times) == ["timestamp-authority", "transparency-log"]


@pytest.mark.parametrize("name", ["happy-path-v0.3", "happy-path-intoto-in-dsse-v3",
                                  "rekor2-happy-path", "managed-key-happy-path"])
def test_a_bundle_replayed_onto_another_digest_is_refused(name: str) -> None:
    c = case(name)
    signer = load_public_key((c.path / "key.pub").read_bytes(), name="k") if (
        c.path / "key.pub").exists() else beacon()
    verify_case(c, signer)
    with pytest.raises(VerificationError):
        verify_case(c, signer, digest="sha256:" + "ab" * 32)


@pytest.mark.parametrize(("extra", "field"), [
    ({"subject": IDENTITY.replace("@refs/heads/main", "@refs/heads/dev")}, "identity"),
    ({"issuer": "https://accounts.google.com"}, "issuer"),
    ({"repository": "sigstore-conformance/other"}, "repository"),
    ({"ref": "refs/tags/v*"}, "ref"),
    ({"workflow": ".github/workflows/release.yml"}, "workflow"),
    ({"workflow_sha": "0" * 40}, "workflow-sha"),
    ({"trigger": "push"}, "trigger"),
    ({"runner_environment": "self-hosted"}, "runner-environment"),
])
def test_a_signer_mismatch_names_the_wrong_field(extra: dict[str, str], field: str) -> None:
    with pytest.raises(SignerMismatch) as caught:
        verify_case(case("happy-path-v0.3"), beacon(**extra))
    assert caught.value.mismatch.field == field
    assert field in str(caught.value)


def test_every_github_claim_that_matches_is_accepted() -> None:
    policy = beacon(repository=REPOSITORY, ref="refs/heads/*",
                    workflow=".github/workflows/extremely-dangerous-oidc-beacon.yml",
                    workflow_sha="c7b3dfb335f051e1c86bda4c716fac97df62ad81",
                    trigger="workflow_dispatch", runner_environment="github-hosted")
    verify_case(case("happy-path-v0.3"), policy)
    verify_case(case("happy-path-v0.3"), beacon(repository=f"https://github.com/{REPOSITORY}"))


def test_a_subject_regex_is_matched_whole() -> None:
    org = r"^https://github\.com/sigstore-conformance/[^/]+/\.github/workflows/[^@]+@refs/heads/main$"
    policy = KeylessSigner(name="org", issuer=ISSUER, subject_regex=org).policy()
    verify_case(case("happy-path-v0.3"), policy)
    other = KeylessSigner(name="org", issuer=ISSUER,
                          subject_regex=r"^https://github\.com/sigstore-conformance/x/.*$")
    with pytest.raises(SignerMismatch, match="identity"):
        verify_case(case("happy-path-v0.3"), other.policy())


def test_a_key_signed_bundle_needs_the_very_key() -> None:
    c = case("managed-key-happy-path")
    good = load_public_key((c.path / "key.pub").read_bytes(), name="release")
    facts = verify_case(c, good)
    assert facts.signer == "release" and facts.identity is None
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_case(c, load_public_key(other, name="other"))


def test_a_key_is_refused_for_a_certificate_bundle_and_an_identity_for_a_key_bundle() -> None:
    key = load_public_key((CASES / "managed-key-happy-path" / "key.pub").read_bytes(), name="k")
    with pytest.raises(VerificationError, match="certificate, not a key"):
        verify_case(case("happy-path-v0.3"), key)
    with pytest.raises(VerificationError, match="key, not a certificate"):
        verify_case(case("managed-key-happy-path"), beacon())


def test_a_key_bundle_whose_log_entry_names_another_key_is_refused() -> None:
    # The same bundle, its log entry rewritten to name another key, its signature left alone:
    # its inclusion proof no longer verifies (nor its SET, nor the body check).
    c = case("managed-key-happy-path")
    doc = json.loads((c.path / "bundle.sigstore.json").read_bytes())
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    body["spec"]["signature"]["publicKey"]["content"] = base64.b64encode(other).decode()
    entry["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()
    key = load_public_key((c.path / "key.pub").read_bytes(), name="k")
    with pytest.raises(VerificationError, match="invalid log entry"):
        verify_bundle(json.dumps(doc).encode(), digest=c.digest, signer=key,
                      trust_root=public_good())


def _tamper(body: dict[str, Any], path: tuple[str, ...], value: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def test_the_key_log_entry_body_must_be_the_bundles_own() -> None:
    # Step (8) on its own: an honestly logged entry of another signature, key or digest.
    c = case("managed-key-happy-path")
    doc = json.loads((c.path / "bundle.sigstore.json").read_bytes())
    body = json.loads(base64.b64decode(
        doc["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]))
    signature = base64.b64decode(doc["messageSignature"]["signature"])
    hashed = parse_digest(c.digest)
    key = load_public_key((c.path / "key.pub").read_bytes(), name="k")
    _validate_keyed_hashedrekord_v001(body, signature, hashed, key)
    other_key = base64.b64encode(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    for path, value, why in [
        (("spec", "signature", "publicKey", "content"), other_key, "another key"),
        (("spec", "data", "hash", "value"), "ab" * 32, "another digest"),
        (("spec", "signature", "content"), base64.b64encode(b"x" * 70).decode(),
         "another signature"),
        (("kind",), "dsse", "not a hashedrekord"),
    ]:
        with pytest.raises(VerificationError, match=why):
            _validate_keyed_hashedrekord_v001(_tamper(body, path, value), signature, hashed, key)


@pytest.mark.parametrize("digest", ["sha256:ABC", "sha512:" + "a" * 128, "a" * 64, ""])
def test_a_malformed_digest_is_refused(digest: str) -> None:
    with pytest.raises(VerificationError, match="digest"):
        verify_case(case("happy-path-v0.3"), digest=digest)


def test_an_oversized_bundle_is_refused_unparsed() -> None:
    with pytest.raises(VerificationError, match="larger than"):
        verify_bundle(b" " * (MAX_BUNDLE_BYTES + 1), digest=case("happy-path-v0.3").digest,
                      signer=beacon(), trust_root=public_good())


class _ThreadRecorder:
    """A policy that accepts like `inner` and records the thread it ran on."""

    def __init__(self, inner: IdentityPolicy) -> None:
        self.inner = inner
        self.threads: list[int] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def verify(self, cert: x509.Certificate) -> None:
        self.threads.append(threading.get_ident())
        self.inner.verify(cert)


async def test_the_async_entry_point_verifies_off_the_event_loop() -> None:
    c = case("happy-path-v0.3")
    recorder = _ThreadRecorder(beacon())
    facts = await verify_bundle_async(
        (c.path / "bundle.sigstore.json").read_bytes(), digest=c.digest, signer=recorder,
        trust_root=public_good(), timeout=10.0)
    assert facts.log_index == 79571823
    assert recorder.threads and threading.get_ident() not in recorder.threads


async def test_the_async_entry_point_keeps_its_deadline() -> None:
    c = case("happy-path-v0.3")
    release = threading.Event()

    class Slow(_ThreadRecorder):
        def verify(self, cert: x509.Certificate) -> None:
            release.wait(5)
            super().verify(cert)

    with pytest.raises(TimeoutError):
        await verify_bundle_async(
            (c.path / "bundle.sigstore.json").read_bytes(), digest=c.digest,
            signer=Slow(beacon()), trust_root=public_good(), timeout=0.05)
    release.set()
    await asyncio.sleep(0)


# -- key-signed bundles in a log the test controls ----------------------------------------------

IMAGE_DIGEST = "sha256:" + "5e" * 32


def _pub(key: ec.EllipticCurvePrivateKey, name: str) -> PublicKey:
    return load_public_key(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), name=name)


def _statement(digest: str = IMAGE_DIGEST) -> dict[str, Any]:
    return {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.example.com/app",
                         "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}


@pytest.fixture(scope="module")
def local_log() -> LocalLog:
    return LocalLog()


@pytest.fixture(scope="module")
def release_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_a_key_signed_dsse_bundle_verifies_for_its_subject(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    data = key_signed_dsse_bundle(local_log, release_key, _statement())
    facts = verify_bundle(data, digest=IMAGE_DIGEST, signer=_pub(release_key, "release"),
                          trust_root=local_log.trust_root())
    assert facts.signer == "release" and facts.log_entry_kind == "dsse/0.0.1"
    assert facts.statement is not None and facts.statement.covers(IMAGE_DIGEST)
    assert [t.source for t in facts.times] == ["transparency-log"]
    with pytest.raises(VerificationError, match="does not name"):
        verify_bundle(data, digest="sha256:" + "00" * 32, signer=_pub(release_key, "release"),
                      trust_root=local_log.trust_root())


def test_a_key_signed_dsse_bundle_by_another_key_is_refused(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    data = key_signed_dsse_bundle(local_log, other, _statement())
    with pytest.raises(VerificationError, match="not signed by key release"):
        verify_bundle(data, digest=IMAGE_DIGEST, signer=_pub(release_key, "release"),
                      trust_root=local_log.trust_root())


def test_an_honestly_logged_entry_of_another_key_or_payload_is_refused(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    # The log's signatures all verify; only the entry's content tells the replay apart.
    other = ec.generate_private_key(ec.SECP256R1())
    root = local_log.trust_root()
    key = _pub(release_key, "release")
    for data, why in [
        (key_signed_dsse_bundle(local_log, release_key, _statement(),
                                logged_key=other.public_key()), "other signatures"),
        (key_signed_dsse_bundle(local_log, release_key, _statement(),
                                logged_payload=b"{}"), "another payload"),
        (key_signed_blob_bundle(local_log, release_key, b"blob", logged_key=other.public_key()),
         "another key"),
    ]:
        with pytest.raises(VerificationError, match=why):
            verify_bundle(data, digest=_digest_for(data), signer=key, trust_root=root)


def _digest_for(data: bytes) -> str:
    doc = json.loads(data)
    if "messageSignature" in doc:
        stated = doc["messageSignature"]["messageDigest"]["digest"]
        return "sha256:" + base64.b64decode(stated).hex()
    return IMAGE_DIGEST


def test_a_key_signed_blob_verifies_by_digest_only(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    data = key_signed_blob_bundle(local_log, release_key, b"blob")
    digest = "sha256:" + hashlib.sha256(b"blob").hexdigest()
    facts = verify_bundle(data, digest=digest, signer=_pub(release_key, "release"),
                          trust_root=local_log.trust_root())
    assert facts.log_entry_kind == "hashedrekord/0.0.1"


def test_a_log_the_root_does_not_name_is_refused(
        release_key: ec.EllipticCurvePrivateKey) -> None:
    data = key_signed_dsse_bundle(LocalLog(), release_key, _statement())
    with pytest.raises(VerificationError, match="invalid log entry: checkpoint"):
        verify_bundle(data, digest=IMAGE_DIGEST, signer=_pub(release_key, "release"),
                      trust_root=LocalLog().trust_root())


# --- cosign 2 keyless .sig: verify_legacy_signature -------------------------------------------

def _legacy(sigstore: LocalSigstore, **changes: str) -> tuple[bytes, bytes, dict[str, str]]:
    digest = "sha256:" + "cd" * 32
    payload, notes = sigstore.legacy_sig(digest, "registry.test/app")
    notes.update(changes)
    return payload, base64.b64decode(notes["dev.cosignproject.cosign/signature"]), notes


def _verify_legacy(sigstore: LocalSigstore, payload: bytes, signature: bytes,
                   notes: dict[str, str], root: TrustRoot | None = None) -> VerifiedBundle:
    policy = KeylessSigner(name="rel", issuer=GITHUB_ISSUER, subject=INSTANCE_SUBJECT,
                           trust_root="test").policy()
    return verify_legacy_signature(
        payload, signature, certificate_pem=notes["dev.sigstore.cosign/certificate"],
        rekor_bundle=notes.get("dev.sigstore.cosign/bundle", ""), signer=policy,
        trust_root=root or parse_trust_root(sigstore.trusted_root_json(), name="test"))


def test_a_cosign_2_keyless_sig_verifies_with_its_logged_time() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    verified = _verify_legacy(sigstore, payload, signature, notes)
    assert verified.digest == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert verified.identity is not None and verified.identity.source_digest == INSTANCE_COMMIT
    assert [t.source for t in verified.times] == ["transparency-log"]
    assert verified.log_entry_kind == "hashedrekord/0.0.1"


def test_a_cosign_2_sig_over_another_payload_is_refused() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    with pytest.raises(VerificationError, match="the signature does not verify"):
        _verify_legacy(sigstore, payload.replace(b"registry.test", b"registry.evil"), signature,
                       notes)


def test_a_cosign_2_sig_whose_log_entry_is_anothers_is_refused() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    # An honestly logged entry of another signature by another certificate, SET and all.
    _, _, other = _legacy(sigstore)
    notes["dev.sigstore.cosign/bundle"] = other["dev.sigstore.cosign/bundle"]
    with pytest.raises(VerificationError, match="the log entry records another"):
        _verify_legacy(sigstore, payload, signature, notes)


def test_a_cosign_2_sig_logged_elsewhere_or_not_at_all_is_refused() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    foreign = LocalSigstore()
    with pytest.raises(VerificationError):
        _verify_legacy(sigstore, payload, signature, notes,
                       root=parse_trust_root(foreign.trusted_root_json(), name="test"))
    del notes["dev.sigstore.cosign/bundle"]
    with pytest.raises(VerificationError, match="no verified signing time"):
        _verify_legacy(sigstore, payload, signature, notes)
    with pytest.raises(VerificationError, match="malformed Rekor bundle"):
        _verify_legacy(sigstore, payload, signature,
                       {**notes, "dev.sigstore.cosign/bundle": '{"Payload": {}}'})


def test_proto3_defaults_fill_only_the_absent_zero_fields_of_a_first_log_entry() -> None:
    # The first entry of a log, as cosign writes it: index 0 and an empty path are omitted.
    first = {"logId": {"keyId": "AA=="}, "inclusionProof": {"rootHash": "AA==", "treeSize": "1"}}
    later = {"logIndex": "7", "inclusionProof": {"logIndex": "7", "hashes": ["AA=="]}}
    doc = {"verificationMaterial": {"tlogEntries": [first, later]}, "other": 1}
    out = json.loads(with_proto3_defaults(json.dumps(doc).encode()))
    entries = out["verificationMaterial"]["tlogEntries"]
    assert entries[0]["logIndex"] == "0"
    assert entries[0]["inclusionProof"] == {"rootHash": "AA==", "treeSize": "1",
                                            "logIndex": "0", "hashes": []}
    assert entries[1] == later  # present values are never rewritten
    assert out["other"] == 1
    assert with_proto3_defaults(b"not json") == b"not json"


@pytest.mark.parametrize("doc", [[], {"verificationMaterial": []},
                                 {"verificationMaterial": {"tlogEntries": {}}}],
                         ids=["not-an-object", "material-not-an-object", "entries-not-a-list"])
def test_proto3_defaults_leave_a_bundle_of_another_shape_to_the_parser(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    assert with_proto3_defaults(raw) == raw
    with pytest.raises(VerificationError, match="malformed bundle"):
        verify_bundle(raw, digest=IMAGE_DIGEST, signer=beacon(), trust_root=public_good())


def test_proto3_defaults_skip_an_entry_that_is_not_an_object_and_fill_the_next() -> None:
    doc = {"verificationMaterial": {"tlogEntries": ["junk", {"inclusionProof": {}}]}}
    out = json.loads(with_proto3_defaults(json.dumps(doc).encode()))
    assert out["verificationMaterial"]["tlogEntries"] == [
        "junk", {"logIndex": "0", "inclusionProof": {"logIndex": "0", "hashes": []}}]


# --- log entries re-signed by the test's own log: each consistency check on its own ---------

BUNDLE_V01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"


def _set(doc: Any, path: tuple[str | int, ...], value: object) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _relogged(log: LocalLog, data: bytes, changes: dict[tuple[str | int, ...], object], *,
              kind: str | None = None, version: str | None = None) -> bytes:
    """`data` with its log entry's body changed at `changes` and logged again, honestly.

    Every signature of the log (checkpoint, SET) verifies over the new body, so only the
    verifier's own comparison of the body with the bundle can refuse it.
    """
    doc = json.loads(data)
    [entry] = doc["verificationMaterial"]["tlogEntries"]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    for path, value in changes.items():
        _set(body, path, value)
    doc["verificationMaterial"]["tlogEntries"] = [log.entry(
        body, kind=kind or entry["kindVersion"]["kind"],
        version=version or entry["kindVersion"]["version"],
        integrated_time=int(entry["integratedTime"]))]
    return json.dumps(doc).encode()


def _b64s(data: bytes) -> str:
    return base64.b64encode(data).decode()


BLOB = b"blob"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def test_the_facts_of_a_key_signed_blob_name_its_digest_root_and_log_entry(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    facts = verify_bundle(key_signed_blob_bundle(local_log, release_key, BLOB),
                          digest=BLOB_DIGEST, signer=_pub(release_key, "release"),
                          trust_root=local_log.trust_root())
    assert facts.digest == BLOB_DIGEST and facts.signer == "release"
    assert facts.trust_root == "test-log" and facts.log_index == 0
    assert facts.statement is None and facts.identity is None


def test_a_key_signed_blob_whose_stated_digest_is_another_is_refused(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    # The signature and the log entry are over the admitted digest; the bundle's own
    # messageDigest names another one, and a bundle must not contradict itself.
    doc = json.loads(key_signed_blob_bundle(local_log, release_key, BLOB))
    doc["messageSignature"]["messageDigest"]["digest"] = _b64s(hashlib.sha256(b"other").digest())
    with pytest.raises(VerificationError, match="message digest is not the admitted digest"):
        verify_bundle(json.dumps(doc).encode(), digest=BLOB_DIGEST,
                      signer=_pub(release_key, "release"), trust_root=local_log.trust_root())


def test_a_bundle_of_exactly_the_size_limit_is_read(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    data = key_signed_blob_bundle(local_log, release_key, BLOB)
    padded = data + b" " * (MAX_BUNDLE_BYTES - len(data))
    assert len(padded) == MAX_BUNDLE_BYTES
    verify_bundle(padded, digest=BLOB_DIGEST, signer=_pub(release_key, "release"),
                  trust_root=local_log.trust_root())


def _retired(root_json: str, *lists: str) -> str:
    """The root with the keys in `lists` (tlogs, ctlogs) retired: validity ended in 2024."""
    doc = json.loads(root_json)
    for name in lists:
        for log in doc[name]:
            log["publicKey"]["validFor"]["end"] = "2024-01-01T00:00:00Z"
    return json.dumps(doc)


def test_a_retired_log_key_still_verifies_the_entries_it_signed(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    # A log key's end of validity stops new signing, not verification of what it logged.
    root = parse_trust_root(_retired(local_log.trust_root().root._inner.to_json(), "tlogs"),
                            name="retired")
    verify_bundle(key_signed_blob_bundle(local_log, release_key, BLOB), digest=BLOB_DIGEST,
                  signer=_pub(release_key, "release"), trust_root=root)


@pytest.mark.parametrize(("changes", "why"), [
    ({("spec", "signature", "content"): "*"}, "signature is not base64"),
    ({("spec", "signature", "publicKey", "content"): _b64s(b"not a key")}, "another key"),
    ({("apiVersion",): "0.0.2"}, "not a hashedrekord 0.0.1"),
    ({("spec", "data", "hash", "algorithm"): "sha512"}, "another digest"),
], ids=["signature-not-base64", "key-unparseable", "api-version", "hash-algorithm"])
def test_a_key_signed_blobs_logged_body_must_be_its_own(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey,
        changes: dict[tuple[str | int, ...], object], why: str) -> None:
    data = key_signed_blob_bundle(local_log, release_key, BLOB)
    doc = json.loads(data)
    signature = doc["messageSignature"]["signature"]
    # "*" stands for the signature with a character outside the base64 alphabet in it, which
    # a lenient decoder would skip and so read as the very signature.
    changes = {path: signature[:8] + "*" + signature[8:] if value == "*" else value
               for path, value in changes.items()}
    with pytest.raises(VerificationError, match=why):
        verify_bundle(_relogged(local_log, data, changes), digest=BLOB_DIGEST,
                      signer=_pub(release_key, "release"), trust_root=local_log.trust_root())


def test_a_key_signed_dsse_bundles_logged_body_must_be_its_own(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    data = key_signed_dsse_bundle(local_log, release_key, _statement())
    logged = json.loads(base64.b64decode(
        json.loads(data)["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]))
    [signature] = logged["spec"]["signatures"]
    cases: list[tuple[dict[tuple[str | int, ...], object], str]] = [
        ({("apiVersion",): "0.0.2"}, "not a dsse 0.0.1"),
        ({("spec", "signatures"): [signature, signature]}, "other signatures"),
        ({("spec", "payloadHash", "algorithm"): "sha512"}, "another payload"),
    ]
    for changes, why in cases:
        with pytest.raises(VerificationError, match=why):
            verify_bundle(_relogged(local_log, data, changes), digest=IMAGE_DIGEST,
                          signer=_pub(release_key, "release"), trust_root=local_log.trust_root())


def _without_promise(data: bytes, *, media_type: str | None = None) -> bytes:
    doc = json.loads(data)
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    if media_type is not None:
        doc["mediaType"] = media_type
    return json.dumps(doc).encode()


def test_the_evidence_of_time_a_key_signed_bundle_needs_depends_on_its_version(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey) -> None:
    data = key_signed_blob_bundle(local_log, release_key, BLOB)
    key, root = _pub(release_key, "release"), local_log.trust_root()
    v01 = json.loads(data)
    v01["mediaType"] = BUNDLE_V01
    facts = verify_bundle(json.dumps(v01).encode(), digest=BLOB_DIGEST, signer=key,
                          trust_root=root)
    assert [t.source for t in facts.times] == ["transparency-log"]
    # v0.1 needs the SET; v0.3 needs the SET or a signed timestamp: with neither there is no
    # verified time at all.
    with pytest.raises(VerificationError,
                       match=r"a v0\.1 bundle must contain an inclusion promise"):
        verify_bundle(_without_promise(data, media_type=BUNDLE_V01), digest=BLOB_DIGEST,
                      signer=key, trust_root=root)
    with pytest.raises(VerificationError, match="inclusion promise or signed timestamps"):
        verify_bundle(_without_promise(data), digest=BLOB_DIGEST, signer=key, trust_root=root)


def test_the_facts_of_a_cosign_2_sig_name_its_signer_root_log_entry_and_logged_time() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    verified = _verify_legacy(sigstore, payload, signature, notes)
    assert verified.signer == "rel" and verified.trust_root == "test"
    assert verified.log_index == 0
    assert [t.at for t in verified.times] == [datetime.datetime.fromtimestamp(sigstore.now,
                                                                              datetime.UTC)]


def test_a_cosign_2_sig_logged_by_a_retired_log_and_ct_key_verifies() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    root = parse_trust_root(_retired(sigstore.trusted_root_json(), "tlogs", "ctlogs"),
                            name="test")
    _verify_legacy(sigstore, payload, signature, notes, root=root)


def test_the_legacy_material_size_limit_counts_every_part_and_is_inclusive() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    cert, rekor = notes["dev.sigstore.cosign/certificate"], notes["dev.sigstore.cosign/bundle"]
    room = MAX_BUNDLE_BYTES - len(payload) - len(cert) - len(rekor)
    # Trailing whitespace is still valid JSON and PEM: only the size differs.
    _verify_legacy(sigstore, payload, signature,
                   {**notes, "dev.sigstore.cosign/bundle": rekor + " " * room})
    for padded in ({"dev.sigstore.cosign/bundle": rekor + " " * (room + 1)},
                   {"dev.sigstore.cosign/certificate": cert + "\n" * (room + 1)}):
        with pytest.raises(VerificationError, match="larger than"):
            _verify_legacy(sigstore, payload, signature, {**notes, **padded})


def _relogged_legacy(sigstore: LocalSigstore, notes: dict[str, str],
                     changes: dict[tuple[str, ...], str]) -> dict[str, str]:
    """The `.sig` annotations with the Rekor bundle's body changed and logged again."""
    rekor = json.loads(notes["dev.sigstore.cosign/bundle"])
    body = json.loads(base64.b64decode(rekor["Payload"]["body"]))
    for path, value in changes.items():
        _set(body, path, value)
    entry = sigstore.log.entry(body, kind="hashedrekord", version="0.0.1",
                               integrated_time=sigstore.now)
    rekor["SignedEntryTimestamp"] = entry["inclusionPromise"]["signedEntryTimestamp"]
    rekor["Payload"]["body"] = entry["canonicalizedBody"]
    return {**notes, "dev.sigstore.cosign/bundle": json.dumps(rekor)}


@pytest.mark.parametrize(("changes", "why"), [
    ({}, None),
    ({("apiVersion",): "0.0.2"}, "not a hashedrekord 0.0.1"),
    ({("kind",): "rekord"}, "not a hashedrekord 0.0.1"),
    ({("spec", "data", "hash", "algorithm"): "sha512"}, "another payload"),
    ({("spec", "signature", "content"): _b64s(b"x" * 70)}, "another signature"),
    ({("spec", "signature", "publicKey", "content"): _b64s(b"not a certificate")},
     "another signing certificate"),
], ids=["as-logged", "api-version", "kind", "hash-algorithm", "signature", "certificate"])
def test_a_cosign_2_sigs_logged_body_must_be_its_own(
        changes: dict[tuple[str, ...], str], why: str | None) -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    relogged = _relogged_legacy(sigstore, notes, changes)
    if why is None:
        _verify_legacy(sigstore, payload, signature, relogged)
        return
    with pytest.raises(VerificationError, match=why):
        _verify_legacy(sigstore, payload, signature, relogged)


@pytest.mark.parametrize("edge", ["not-before", "not-after"])
def test_a_cosign_2_sig_logged_at_either_end_of_its_certificates_validity_verifies(
        edge: str) -> None:
    # Validity is inclusive at both ends (RFC 5280 4.1.2.5).
    sigstore = LocalSigstore()
    signer = (sigstore.issue(valid_from=sigstore.now) if edge == "not-before"
              else sigstore.issue(valid_from=sigstore.now - 600, minutes=10))
    payload, notes = sigstore.legacy_sig("sha256:" + "cd" * 32, "registry.test/app", signer)
    signature = base64.b64decode(notes["dev.cosignproject.cosign/signature"])
    _verify_legacy(sigstore, payload, signature, notes)


# --- keyless DSSE bundles from the test's own Sigstore ----------------------------------------

def _verify_keyless(sigstore: LocalSigstore, data: bytes,
                    digest: str = IMAGE_DIGEST) -> VerifiedBundle:
    policy = KeylessSigner(name="rel", issuer=GITHUB_ISSUER, subject=INSTANCE_SUBJECT,
                           trust_root="test").policy()
    return verify_bundle(data, digest=digest, signer=policy,
                         trust_root=parse_trust_root(sigstore.trusted_root_json(), name="test"))


def test_a_keyless_bundles_facts_name_the_admitted_digest() -> None:
    sigstore = LocalSigstore()
    facts = _verify_keyless(sigstore, sigstore.sign_image(IMAGE_DIGEST))
    assert facts.digest == IMAGE_DIGEST and facts.log_entry_kind == "dsse/0.0.1"


def test_a_statement_for_other_digests_is_refused_naming_them() -> None:
    sigstore = LocalSigstore()
    statement = _statement("sha256:" + "aa" * 32)
    statement["subject"].append({"name": "other", "digest": {"sha256": "bb" * 32}})
    with pytest.raises(VerificationError, match=f"it names sha256:{'aa' * 32}, "
                                                f"sha256:{'bb' * 32}"):
        _verify_keyless(sigstore, sigstore.dsse_bundle(statement))


def test_a_dsse_bundle_logged_as_a_hashedrekord_is_refused() -> None:
    sigstore = LocalSigstore()
    data = _relogged(sigstore.log, sigstore.sign_image(IMAGE_DIGEST), {}, kind="hashedrekord")
    with pytest.raises(VerificationError, match=r"unsupported DSSE log entry type "
                                                r"hashedrekord/0\.0\.1"):
        _verify_keyless(sigstore, data)


def _intoto_bundle(sigstore: LocalSigstore) -> bytes:
    """A keyless DSSE bundle logged as Rekor v1's legacy intoto 0.0.2 kind."""
    signer = sigstore.issue()
    doc = json.loads(sigstore.sign_image(IMAGE_DIGEST, signer))
    envelope = doc["dsseEnvelope"]
    body = {"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {
        "envelope": {"payloadType": envelope["payloadType"], "signatures": [{
            # Rekor stores the signature base64-encoded twice.
            "sig": _b64s(envelope["signatures"][0]["sig"].encode()),
            "publicKey": _b64s(signer.cert.public_bytes(serialization.Encoding.PEM))}]},
        "hash": {"algorithm": "sha256", "value": "00" * 32},
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(
            base64.b64decode(envelope["payload"])).hexdigest()}}}}
    doc["verificationMaterial"]["tlogEntries"] = [
        sigstore.log.entry(body, kind="intoto", version="0.0.2", integrated_time=sigstore.now)]
    return json.dumps(doc).encode()


def test_an_intoto_entry_verifies_with_its_logged_time() -> None:
    sigstore = LocalSigstore()
    facts = _verify_keyless(sigstore, _intoto_bundle(sigstore))
    assert facts.log_entry_kind == "intoto/0.0.2"
    assert [t.source for t in facts.times] == ["transparency-log"]


INTOTO_SIGNATURES = ("spec", "content", "envelope", "signatures")


@pytest.mark.parametrize(("changes", "why"), [
    ({("apiVersion",): "0.0.3"}, "not an intoto 0.0.2"),
    ({("kind",): "dsse"}, "not an intoto 0.0.2"),
    ({INTOTO_SIGNATURES: "twice"}, "exactly one signature"),
    ({INTOTO_SIGNATURES: {"sig": "x"}}, "exactly one signature"),
    ({(*INTOTO_SIGNATURES, 0, "sig"): _b64s(_b64s(b"x" * 70).encode())}, "another signature"),
    ({(*INTOTO_SIGNATURES, 0, "publicKey"): _b64s(b"not PEM")}, "certificate is not PEM"),
    ({("spec", "content", "payloadHash", "algorithm"): "sha512"}, "another payload"),
    ({("spec", "content", "payloadHash", "value"): "00" * 32}, "another payload"),
], ids=["api-version", "kind", "two-signatures", "signatures-not-a-list", "signature",
        "certificate", "payload-hash-algorithm", "payload-hash"])
def test_an_intoto_entrys_body_must_be_the_bundles_own(
        changes: dict[tuple[str | int, ...], object], why: str) -> None:
    sigstore = LocalSigstore()
    data = _intoto_bundle(sigstore)
    body = json.loads(base64.b64decode(
        json.loads(data)["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]))
    [logged] = body["spec"]["content"]["envelope"]["signatures"]
    changes = {path: [logged, logged] if value == "twice" else value
               for path, value in changes.items()}
    with pytest.raises(VerificationError, match=why):
        _verify_keyless(sigstore, _relogged(sigstore.log, data, changes))


# --- RFC 3161 timestamps of the conformance corpus, under changed trust roots ---------------

def _doc(c: Case) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((c.path / "bundle.sigstore.json").read_bytes())
    return loaded


def test_a_key_signed_bundle_without_the_logs_promise_is_timed_by_its_timestamp_alone() -> None:
    # v0.3 accepts a signed timestamp in place of the SET; the integrated time the SET would
    # have bound is then no verified time.
    c = case("managed-key-happy-path")
    key = load_public_key((c.path / "key.pub").read_bytes(), name="k")
    assert sorted(t.source for t in verify_case(c, key).times) == [
        "timestamp-authority", "transparency-log"]
    doc = _doc(c)
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    facts = verify_bundle(json.dumps(doc).encode(), digest=c.digest, signer=key,
                          trust_root=public_good())
    assert [t.source for t in facts.times] == ["timestamp-authority"]


def _gen_time(doc: dict[str, Any]) -> datetime.datetime:
    [stamp] = doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    return decode_timestamp_response(base64.b64decode(stamp["signedTimestamp"])).tst_info.gen_time


def _with_authorities(c: Case, change: Any) -> TrustRoot:
    doc = json.loads((c.path / "trusted_root.json").read_text())
    doc["timestampAuthorities"] = change(doc["timestampAuthorities"])
    return parse_trust_root(json.dumps(doc), name="case")


def _reversed_chain(authority: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(authority)
    out["certChain"]["certificates"].reverse()
    return out


def _single_cert(authority: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(authority)
    del out["certChain"]["certificates"][1:]
    return out


@pytest.mark.parametrize("first", [_single_cert, _reversed_chain],
                         ids=["without-a-root", "that-does-not-verify"])
def test_a_timestamp_authority_that_cannot_vouch_does_not_stop_the_search(first: Any) -> None:
    # Every trusted authority is tried in turn: one listed before the timestamp's own must
    # not end the search.
    c = case("rekor2-happy-path")
    root = _with_authorities(c, lambda authorities: [first(authorities[0]), *authorities])
    facts = verify_bundle((c.path / "bundle.sigstore.json").read_bytes(), digest=c.digest,
                          signer=beacon(), trust_root=root)
    assert [t.source for t in facts.times] == ["timestamp-authority"]


def test_a_timestamp_made_at_the_start_of_its_authoritys_validity_verifies() -> None:
    c = case("rekor2-happy-path")
    start = _gen_time(_doc(c)).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def starting_then(authorities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        authorities[0]["validFor"]["start"] = start
        return authorities

    facts = verify_bundle((c.path / "bundle.sigstore.json").read_bytes(), digest=c.digest,
                          signer=beacon(), trust_root=_with_authorities(c, starting_then))
    assert [t.source for t in facts.times] == ["timestamp-authority"]


def test_a_dsse_bundle_logged_under_an_unknown_entry_type_is_refused() -> None:
    # A Rekor v2 entry's kindVersion is outside what the checkpoint covers: it must name a
    # kind the body check knows, never select one by its version or kind alone.
    c = case("rekor2-dsse-happy-path")
    verify_case(c)
    for kind, version in [("dsse", "0.0.2"), ("intoto", "0.0.1")]:
        doc = _doc(c)
        doc["verificationMaterial"]["tlogEntries"][0]["kindVersion"] = {
            "kind": kind, "version": version}
        with pytest.raises(VerificationError, match="unsupported DSSE log entry type"):
            verify_bundle(json.dumps(doc).encode(), digest=c.digest, signer=beacon(),
                          trust_root=root_of(c))


# --- a malformed field of a log entry is refused naming the field -----------------------------

NOT_BASE64 = "*not base64*"


def test_a_cosign_2_rekor_bundle_with_a_field_not_base64_is_refused_naming_it() -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    rekor = json.loads(notes["dev.sigstore.cosign/bundle"])
    for field, doc in [
        ("SET", {**rekor, "SignedEntryTimestamp": NOT_BASE64}),
        ("body", {**rekor, "Payload": {**rekor["Payload"], "body": NOT_BASE64}}),
    ]:
        with pytest.raises(VerificationError, match=f"the log entry's {field} is not base64"):
            _verify_legacy(sigstore, payload, signature,
                           {**notes, "dev.sigstore.cosign/bundle": json.dumps(doc)})


@pytest.mark.parametrize(("path", "field"), [
    (("spec", "signature", "content"), "signature"),
    (("spec", "signature", "publicKey", "content"), "certificate"),
])
def test_a_cosign_2_sigs_logged_field_not_base64_is_refused_naming_it(
        path: tuple[str, ...], field: str) -> None:
    sigstore = LocalSigstore()
    payload, signature, notes = _legacy(sigstore)
    with pytest.raises(VerificationError, match=f"the log entry's {field} is not base64"):
        _verify_legacy(sigstore, payload, signature,
                       _relogged_legacy(sigstore, notes, {path: NOT_BASE64}))


@pytest.mark.parametrize(("changes", "why"), [
    ({(*INTOTO_SIGNATURES, 0, "sig"): NOT_BASE64}, "the log entry's signature is not base64"),
    # Rekor's inner encoding of the signature: valid base64 outside, not base64 inside.
    ({(*INTOTO_SIGNATURES, 0, "sig"): _b64s(NOT_BASE64.encode())},
     "the log entry's signature is not base64"),
    ({(*INTOTO_SIGNATURES, 0, "publicKey"): NOT_BASE64},
     "the log entry's certificate is not base64"),
    ({("spec", "content"): {"payloadHash": {}}},
     r"the log entry body has no spec\.content\.envelope\.signatures"),
], ids=["signature", "signature-inner", "certificate", "missing-signatures"])
def test_an_intoto_entrys_malformed_field_is_refused_naming_it(
        changes: dict[tuple[str | int, ...], object], why: str) -> None:
    sigstore = LocalSigstore()
    data = _intoto_bundle(sigstore)
    with pytest.raises(VerificationError, match=why):
        _verify_keyless(sigstore, _relogged(sigstore.log, data, changes))


@pytest.mark.parametrize("field", ["signature", "verifier"])
def test_a_key_signed_dsse_entrys_field_not_base64_is_refused_naming_it(
        local_log: LocalLog, release_key: ec.EllipticCurvePrivateKey, field: str) -> None:
    data = key_signed_dsse_bundle(local_log, release_key, _statement())
    with pytest.raises(VerificationError, match=f"the log entry's {field} is not base64"):
        verify_bundle(_relogged(local_log, data, {("spec", "signatures", 0, field): NOT_BASE64}),
                      digest=IMAGE_DIGEST, signer=_pub(release_key, "release"),
                      trust_root=local_log.trust_root())


def test_an_integrated_time_in_an_entry_kind_without_one_is_refused_naming_the_kind() -> None:
    sigstore = LocalSigstore()
    data = _relogged(sigstore.log, sigstore.sign_image(IMAGE_DIGEST), {}, kind="intoto",
                     version="0.0.1")
    with pytest.raises(VerificationError, match=r"not expected in a intoto/0\.0\.1 entry"):
        _verify_keyless(sigstore, data)
