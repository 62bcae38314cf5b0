"""What a Fulcio certificate says about its signer, and whether it matches a Deployment's claims.

Fulcio writes the OIDC token's claims into X.509 extensions under 1.3.6.1.4.1.57264.1
(Fulcio's `docs/oid-info.md`). Two generations exist:
- 1.1 to 1.6 (deprecated): the raw claim bytes as the extension value;
- 1.8 onwards: a DER UTF8String.
Where a newer extension replaces an older one, the newer wins and the older is the fallback,
so certificates from before the change still give their commit and ref.

Nothing here verifies anything: the certificate must already be verified (chain, SCT, log) by
`controller.signatures.bundle`. These are pure functions of the certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

_FULCIO = "1.3.6.1.4.1.57264.1"
OID_ISSUER = ObjectIdentifier(f"{_FULCIO}.1")
OID_GITHUB_WORKFLOW_TRIGGER = ObjectIdentifier(f"{_FULCIO}.2")
OID_GITHUB_WORKFLOW_SHA = ObjectIdentifier(f"{_FULCIO}.3")
OID_GITHUB_WORKFLOW_REPOSITORY = ObjectIdentifier(f"{_FULCIO}.5")
OID_GITHUB_WORKFLOW_REF = ObjectIdentifier(f"{_FULCIO}.6")
OID_OTHERNAME = ObjectIdentifier(f"{_FULCIO}.7")
OID_ISSUER_V2 = ObjectIdentifier(f"{_FULCIO}.8")
OID_RUNNER_ENVIRONMENT = ObjectIdentifier(f"{_FULCIO}.11")
OID_SOURCE_REPOSITORY_URI = ObjectIdentifier(f"{_FULCIO}.12")
OID_SOURCE_REPOSITORY_DIGEST = ObjectIdentifier(f"{_FULCIO}.13")
OID_SOURCE_REPOSITORY_REF = ObjectIdentifier(f"{_FULCIO}.14")
OID_BUILD_CONFIG_URI = ObjectIdentifier(f"{_FULCIO}.18")
OID_BUILD_CONFIG_DIGEST = ObjectIdentifier(f"{_FULCIO}.19")
OID_BUILD_TRIGGER = ObjectIdentifier(f"{_FULCIO}.20")
_RAW_ARCS = frozenset({"1", "2", "3", "4", "5", "6"})
"""The deprecated extensions, whose value is the claim's bytes rather than a UTF8String."""

MismatchField = Literal[
    "identity", "issuer", "repository", "ref", "commit", "workflow", "workflow-sha", "trigger",
    "runner-environment",
]
"""What a denial names as wrong. Stable: reason codes and the ledger use these words."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One field of the certificate that is not what the policy or the Deployment says."""

    field: MismatchField
    expected: str
    found: str | None
    """None: the certificate does not carry the field at all."""

    def __str__(self) -> str:
        found = "nothing" if self.found is None else repr(self.found)
        return f"certificate {self.field} is {found}, expected {self.expected}"


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """The signer, as a Fulcio certificate names it. Fields are None when absent."""

    subjects: tuple[str, ...]
    """The Subject Alternative Name values: URIs, emails, Fulcio's otherName username."""
    issuer: str | None
    """The OIDC issuer (1.8, else the deprecated 1.1)."""
    source_repository: str | None
    """SourceRepositoryURI (1.12), e.g. `https://github.com/org/repo`."""
    source_repository_legacy: str | None
    """The deprecated GitHub Workflow Repository (1.5), e.g. `org/repo`."""
    source_ref: str | None
    """SourceRepositoryRef (1.14), else the deprecated GitHub Workflow Ref (1.6)."""
    source_digest: str | None
    """SourceRepositoryDigest (1.13), else the deprecated GitHub Workflow SHA (1.3): the commit."""
    build_config_uri: str | None
    """BuildConfigURI (1.18): the top-level workflow, `https://host/org/repo/PATH@REF`."""
    build_config_digest: str | None
    """BuildConfigDigest (1.19): the commit the workflow file was read at."""
    trigger: str | None
    """BuildTrigger (1.20), else the deprecated GitHub Workflow Trigger (1.2)."""
    runner_environment: str | None
    """RunnerEnvironment (1.11): `github-hosted` or `self-hosted`."""

    @property
    def workflow_path(self) -> str | None:
        """The workflow file's path in its repository (`.github/workflows/release.yml`)."""
        if self.build_config_uri is None:
            return None
        path = urlsplit(self.build_config_uri).path.partition("@")[0]
        parts = path.strip("/").split("/", 2)
        return parts[2] if len(parts) == 3 else None

    def repository_names(self) -> tuple[str, ...]:
        """Every spelling of the source repository the certificate gives (URI and `org/repo`)."""
        names: list[str] = []
        if self.source_repository is not None:
            names.append(self.source_repository)
            names.append(urlsplit(self.source_repository).path.strip("/"))
        if self.source_repository_legacy is not None:
            names.append(self.source_repository_legacy)
        return tuple(names)


def _der_utf8(value: bytes) -> str | None:
    """Decode a DER UTF8String (tag 12); None if `value` is not exactly one."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        # Length bytes cut short leave the offset past the end: the check below refuses them.
        if count == 0 or count > 4:
            return None
        length = int.from_bytes(value[2:2 + count], "big")
        offset = 2 + count
    if len(value) != offset + length:
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _extension_text(ext: x509.Extension[x509.ExtensionType], oid: ObjectIdentifier) -> str | None:
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        return None
    raw = ext.value.value
    prefix, _, arc = oid.dotted_string.rpartition(".")
    if prefix == _FULCIO and arc in _RAW_ARCS:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return _der_utf8(raw)


def _subjects(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    values: list[str] = [*san.get_values_for_type(x509.UniformResourceIdentifier),
                         *san.get_values_for_type(x509.RFC822Name)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_OTHERNAME:
            decoded = _der_utf8(other.value)
            if decoded is not None:
                values.append(decoded)
    return tuple(values)


def certificate_identity(cert: x509.Certificate) -> CertificateIdentity:
    """Read the signer's identity and source claims from a Fulcio certificate."""
    # One pass over the extensions: a lookup by OID walks them all, and there are ten lookups.
    present = {e.oid: e for e in cert.extensions}

    def ext(oid: ObjectIdentifier) -> str | None:
        found = present.get(oid)
        return None if found is None else _extension_text(found, oid)

    return CertificateIdentity(
        subjects=_subjects(cert),
        issuer=ext(OID_ISSUER_V2) or ext(OID_ISSUER),
        source_repository=ext(OID_SOURCE_REPOSITORY_URI),
        source_repository_legacy=ext(OID_GITHUB_WORKFLOW_REPOSITORY),
        source_ref=ext(OID_SOURCE_REPOSITORY_REF) or ext(OID_GITHUB_WORKFLOW_REF),
        source_digest=ext(OID_SOURCE_REPOSITORY_DIGEST) or ext(OID_GITHUB_WORKFLOW_SHA),
        build_config_uri=ext(OID_BUILD_CONFIG_URI),
        build_config_digest=ext(OID_BUILD_CONFIG_DIGEST),
        trigger=ext(OID_BUILD_TRIGGER) or ext(OID_GITHUB_WORKFLOW_TRIGGER),
        runner_environment=ext(OID_RUNNER_ENVIRONMENT),
    )


def ref_names(branch: str) -> frozenset[str]:
    """The full refs a branch annotation may stand for: itself, a branch, or a tag.

    `stamp` writes the short name (`main`, `v1.2.0`, from GITHUB_REF_NAME); Fulcio writes the
    full ref (`refs/heads/main`). A full ref in the annotation matches only itself.
    """
    if branch.startswith("refs/"):
        return frozenset({branch})
    return frozenset({branch, f"refs/heads/{branch}", f"refs/tags/{branch}"})


def check_source(
    identity: CertificateIdentity,
    *,
    git_sha: str | None,
    branch: str | None,
    check_commit: bool = True,
    check_ref: bool = True,
) -> tuple[Mismatch, ...]:
    """Compare the certificate's commit and ref with the Deployment's annotations.

    - commit: when the certificate carries one (1.13, else 1.3) and `git_sha` is given, they
      must be equal (hex, case-insensitive);
    - ref: when `branch` is given and the certificate carries a ref (1.14, else 1.6), the ref must
      be that branch or tag (see `ref_names`).
    A certificate that carries neither claims nothing, so nothing is compared: rules that need a
    commit ask for a SLSA attestation instead. Returns every mismatch, empty if none.
    """
    found: list[Mismatch] = []
    if check_commit and git_sha is not None and identity.source_digest is not None and (
            identity.source_digest.lower() != git_sha.lower()):
        found.append(Mismatch("commit", git_sha, identity.source_digest))
    if check_ref and branch is not None and identity.source_ref is not None and (
            identity.source_ref not in ref_names(branch)):
        found.append(Mismatch("ref", branch, identity.source_ref))
    return tuple(found)
