"""Keyless signers: who may sign, as a Fulcio certificate names them.

A keyless signer is an OIDC identity, not a key. The policy is checked against a certificate
that `controller.signatures.bundle` has already verified (chain at signing time, SCT, log):

- the OIDC issuer, matched exactly;
- the subject (the certificate's SAN), matched exactly or by an anchored regular expression;
  an unanchored expression is refused at configuration load, because `repo@refs/heads/main`
  would otherwise also match `evil/repo@refs/heads/main-fork`;
- optionally GitHub's extensions: source repository, ref (a glob: `refs/tags/v*`), workflow
  path, workflow SHA, trigger and runner environment.

Policies follow sigstore-python's `verify.policy`: an object with `verify(cert)` that raises on
failure, so the same object is handed to sigstore-python's verifier. Ours raise `SignerMismatch`,
which names the field that was wrong.

```yaml
keyless:
  - name: release
    issuer: https://token.actions.githubusercontent.com
    subject: https://github.com/org/app/.github/workflows/release.yml@refs/heads/main
    repository: org/app
    ref: refs/heads/main
    runner_environment: github-hosted
    trust_root: public-good
```
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.signatures.certificate import (
    CertificateIdentity,
    Mismatch,
    MismatchField,
    certificate_identity,
)
from controller.signatures.errors import VerificationError
from controller.signatures.trust import (
    PUBLIC_GOOD,
    TrustRoot,
    TrustRoots,
    TrustRootSource,
    load_trust_roots,
)

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_HEX = r"^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$"
MAX_PATTERN_CHARS = 1024


class SignerMismatch(VerificationError):
    """A verified certificate does not name the signer the policy asks for."""

    def __init__(self, mismatch: Mismatch, *, signer: str) -> None:
        super().__init__(f"signer {signer}: {mismatch}")
        self.mismatch = mismatch
        self.signer = signer


class SignerPolicy(Protocol):
    """sigstore-python's `VerificationPolicy`, plus a name and a cache fingerprint."""

    @property
    def name(self) -> str:
        """What denials and the ledger call the signer."""
        ...

    def fingerprint(self) -> str:
        """A stable digest of what the policy accepts, for verdict cache keys."""
        ...

    def verify(self, cert: x509.Certificate) -> None:
        """Raise `SignerMismatch` unless `cert` names the signer."""
        ...


def is_anchored(pattern: str) -> bool:
    """True if `pattern` starts with `^` and ends with an unescaped `$`."""
    if not pattern.startswith("^") or not pattern.endswith("$"):
        return False
    backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    return backslashes % 2 == 0


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """A ref glob: `*` matches within one path segment, `**` across segments, `?` one char."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


class KeylessSigner(BaseModel):
    """One keyless signer: an OIDC issuer, a subject, and optional GitHub claims."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(pattern=_NAME)
    """How rules, denials and the ledger refer to the signer."""
    issuer: str = Field(min_length=1, max_length=1024)
    """The OIDC issuer, exactly (`https://token.actions.githubusercontent.com`)."""
    subject: str | None = Field(default=None, min_length=1, max_length=4096)
    """The certificate subject (SAN), exactly; for GitHub Actions the workflow identity
    `https://github.com/ORG/REPO/.github/workflows/release.yml@refs/heads/main`."""
    subject_regex: str | None = Field(default=None, min_length=2, max_length=MAX_PATTERN_CHARS)
    """Instead of `subject`: a regular expression that must start with `^` and end with `$`,
    matched against the whole subject."""
    repository: str | None = Field(default=None, min_length=1, max_length=1024)
    """The source repository: `ORG/REPO` (compared with 1.12's path and 1.5), or a full URI
    (`https://github.com/ORG/REPO`, compared with 1.12 exactly)."""
    ref: str | None = Field(default=None, min_length=1, max_length=1024)
    """The source ref (1.14, else 1.6), exact or a glob: `refs/heads/main`, `refs/tags/v*`."""
    workflow: str | None = Field(default=None, min_length=1, max_length=1024)
    """The workflow file's path in the repository (from 1.18): `.github/workflows/release.yml`."""
    workflow_sha: str | None = Field(default=None, pattern=_HEX)
    """The commit the workflow file was read at (1.19, BuildConfigDigest)."""
    trigger: str | None = Field(default=None, min_length=1, max_length=256)
    """The event that ran the workflow (1.20, else 1.2): `push`, `release`, `workflow_dispatch`."""
    runner_environment: str | None = Field(default=None, min_length=1, max_length=256)
    """`github-hosted` or `self-hosted` (1.11)."""
    trust_root: str = Field(default=PUBLIC_GOOD, pattern=_NAME)
    """The trust root the certificate must chain to (see `controller.signatures.trust`)."""

    @field_validator("subject_regex")
    @classmethod
    def _anchored(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not is_anchored(value):
            raise ValueError(f"subject_regex {value!r} must be anchored: start with '^' and end "
                             "with '$', or it matches identities it does not name")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"subject_regex {value!r} is not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_subject(self) -> KeylessSigner:
        if (self.subject is None) == (self.subject_regex is None):
            raise ValueError(f"keyless signer {self.name}: give exactly one of 'subject' and "
                             "'subject_regex'")
        return self

    def policy(self) -> IdentityPolicy:
        """The verification policy for this signer."""
        return IdentityPolicy(self)


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """A `KeylessSigner` as a verification policy: every configured field must match."""

    signer: KeylessSigner
    _subject_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _ref_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = self.signer.subject_regex
        object.__setattr__(self, "_subject_re", re.compile(regex) if regex else None)
        ref = self.signer.ref
        object.__setattr__(self, "_ref_re", glob_to_regex(ref) if ref else None)

    @property
    def name(self) -> str:
        """The signer's configured name."""
        return self.signer.name

    def fingerprint(self) -> str:
        """sha256 over the signer's canonical JSON."""
        return hashlib.sha256(self.signer.model_dump_json().encode()).hexdigest()[:32]

    def verify(self, cert: x509.Certificate) -> None:
        """Raise `SignerMismatch` for the first field of `cert` that does not match."""
        mismatches = self.mismatches(certificate_identity(cert))
        if mismatches:
            raise SignerMismatch(mismatches[0], signer=self.name)

    def mismatches(self, ident: CertificateIdentity) -> tuple[Mismatch, ...]:
        """Every configured field the identity does not match, issuer and subject first."""
        s = self.signer
        out: list[Mismatch] = []

        def fail(what: MismatchField, expected: str, found: str | None) -> None:
            out.append(Mismatch(what, expected, found))

        if ident.issuer != s.issuer:
            fail("issuer", s.issuer, ident.issuer)
        if s.subject is not None and s.subject not in ident.subjects:
            fail("identity", s.subject, ", ".join(ident.subjects) or None)
        if self._subject_re is not None and not any(
                self._subject_re.fullmatch(v) for v in ident.subjects):
            fail("identity", f"a match for {s.subject_regex}", ", ".join(ident.subjects) or None)
        if s.repository is not None:
            names = ((ident.source_repository,) if "://" in s.repository
                     else ident.repository_names())
            if s.repository not in names:
                fail("repository", s.repository,
                     ident.source_repository or ident.source_repository_legacy)
        if self._ref_re is not None and (
                ident.source_ref is None or not self._ref_re.fullmatch(ident.source_ref)):
            fail("ref", s.ref or "", ident.source_ref)
        if s.workflow is not None and ident.workflow_path != s.workflow.lstrip("/"):
            fail("workflow", s.workflow, ident.workflow_path)
        if s.workflow_sha is not None and (
                ident.build_config_digest or "").lower() != s.workflow_sha.lower():
            fail("workflow-sha", s.workflow_sha, ident.build_config_digest)
        if s.trigger is not None and ident.trigger != s.trigger:
            fail("trigger", s.trigger, ident.trigger)
        if s.runner_environment is not None and ident.runner_environment != s.runner_environment:
            fail("runner-environment", s.runner_environment, ident.runner_environment)
        return tuple(out)


class KeylessConfig(BaseModel):
    """The keyless part of the signature configuration: trust roots and signers.

    ```yaml
    trust_roots:
      - name: github
        path: /etc/provenance/trust/github.trusted_root.json
    signers:
      - name: release
        issuer: https://token.actions.githubusercontent.com
        subject: https://github.com/org/app/.github/workflows/release.yml@refs/heads/main
        trust_root: public-good
    ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # Lists from YAML become tuples; the items themselves stay strict.
    trust_roots: tuple[TrustRootSource, ...] = Field(default=(), max_length=32, strict=False)
    """Roots besides the embedded `public-good`, each from a file or inline JSON."""
    signers: tuple[KeylessSigner, ...] = Field(default=(), max_length=256, strict=False)
    """The keyless signers rules may name."""

    @model_validator(mode="after")
    def _names(self) -> KeylessConfig:
        names = [s.name for s in self.signers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"keyless signers defined twice: {', '.join(duplicates)}")
        roots = {PUBLIC_GOOD} | {r.name for r in self.trust_roots}
        for s in self.signers:
            if s.trust_root not in roots:
                raise ValueError(f"keyless signer {s.name}: unknown trust root {s.trust_root!r} "
                                 f"(known: {', '.join(sorted(roots))})")
        return self

    def load(self) -> LoadedKeyless:
        """Read every root (`ConfigError` naming a bad one) and build every policy."""
        roots = load_trust_roots(self.trust_roots)
        return LoadedKeyless(
            roots=roots,
            signers={s.name: (s.policy(), roots[s.trust_root]) for s in self.signers})


@dataclass(frozen=True, slots=True)
class LoadedKeyless:
    """The loaded keyless configuration: what `verify_bundle` needs, by signer name."""

    roots: TrustRoots
    signers: dict[str, tuple[IdentityPolicy, TrustRoot]]
    """Signer name → (its policy, the trust root its certificates must chain to)."""
