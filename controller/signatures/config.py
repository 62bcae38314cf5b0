"""Signature policy configuration: signers (keys and keyless identities), image rules,
registry settings, the cache.

`controller.config.Config` carries it as `signatures: SignatureConfig`. Example:

```yaml
signatures:
  enabled: true
  keys:
    - name: release
      path: /etc/provenance/keys/cosign.pub
  keyless:
    signers:
      - name: gha-release
        issuer: https://token.actions.githubusercontent.com
        subject: https://github.com/org/app/.github/workflows/release.yml@refs/heads/main
  rules:
    - prefix: registry.example.com/payments/      # path boundary: not .../paymentsx/
      require: attestation                        # signature AND SLSA provenance
      signers: [release, gha-release]             # a key or a keyless signer, by name
      threshold: 1
      environments: [production]
      check_build_id: true
    - prefix: registry.example.com/
      require: signature
  registry:
    insecure_registries: []
```

Keys and keyless signers share one namespace of names: a rule's `signers` may name either, and
its threshold counts distinct signers, however many signatures (or formats) each has.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.errors import ConfigError
from controller.registry.settings import PullSecretRef, RegistrySettings
from controller.signatures.errors import KeyLoadError
from controller.signatures.keyless import KeylessConfig
from controller.signatures.keys import PublicKey, load_public_key

__all__ = [
    "CacheSettings",
    "ImageRule",
    "PullSecretRef",
    "RegistrySettings",
    "Requirement",
    "SignatureConfig",
    "TrustedKey",
]

Requirement = Literal["none", "signature", "attestation"]
"""`none`: not checked. `signature`: a signature by the rule's signers (threshold of them).
`attestation`: a SLSA provenance attestation by one of the rule's signers, whose commit must
equal the git-sha annotation, and signatures up to the threshold; the attestation's own signer
counts toward the threshold (a signed in-toto statement naming the digest binds its signer to
that digest just as a signature does, and GitHub's artifact attestations come without one)."""

_PREFIX = re.compile(r"^[a-z0-9.\-]+(:[0-9]+)?(/[a-z0-9._\-]+)*/?$")
_KEY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrustedKey(_Strict):
    """One trusted public key, inline or from a file (exactly one of the two)."""

    name: str = Field(pattern=_KEY_NAME)
    """How rules, denials and the ledger refer to the key."""
    pem: str | None = Field(default=None, max_length=16384)
    """The PEM public key itself (ECDSA P-256/P-384/P-521, RSA ≥ 2048 bits, or Ed25519)."""
    path: str | None = None
    """A file holding the PEM, read once at start-up (mount it from a Secret or ConfigMap)."""

    @model_validator(mode="after")
    def _one_source(self) -> TrustedKey:
        if (self.pem is None) == (self.path is None):
            raise ValueError(f"key {self.name}: give exactly one of 'pem' and 'path'")
        return self

    def load(self) -> PublicKey:
        """Read and parse the key; `ConfigError` naming the key if that fails."""
        if self.path is not None:
            try:
                data = Path(self.path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"key {self.name}: cannot read {self.path}: {exc}") from exc
        else:
            data = (self.pem or "").encode()
        try:
            return load_public_key(data, name=self.name)
        except KeyLoadError as exc:
            raise ConfigError(str(exc)) from exc


class ImageRule(_Strict):
    """What images under one registry/repository prefix need."""

    prefix: str
    """`registry/path/` matched on path boundaries against the normalised image name
    (`docker.io/library/nginx`): `registry.example.com/team/` matches `.../team/app` but never
    `.../teamx/app`. `*` matches every image. The longest matching prefix wins."""
    require: Requirement = "signature"
    """What the images need; see `Requirement`."""
    keys: tuple[str, ...] = ()
    """Names of trusted keys accepted for these images (the older spelling of `signers`)."""
    signers: tuple[str, ...] = ()
    """Names of the signers accepted for these images: trusted keys and keyless signers
    (`keyless.signers`). With `keys`, the union; both empty means every configured signer."""
    threshold: int = Field(default=1, ge=1, le=16)
    """How many distinct accepted signers must have signed the digest. A signer that signed in
    two formats (a bundle and a legacy `.sig`) counts once."""
    check_commit: bool = True
    """With `require: attestation`, the git-sha annotation must equal the attested commit."""
    check_certificate_commit: bool = True
    """A keyless certificate that names a commit (SourceRepositoryDigest, else the older GitHub
    Workflow SHA) must name the git-sha annotation's. A certificate without one claims nothing."""
    check_certificate_ref: bool = True
    """A keyless certificate that names a ref (SourceRepositoryRef, else GitHub Workflow Ref)
    must name the branch annotation's branch or tag, when the workload has that annotation."""
    check_build_id: bool = False
    """With `require: attestation`, the build-id annotation must match the attestation's
    invocation id (exactly, or as one path segment of its URL)."""
    check_pipeline_url: bool = False
    """With `require: attestation`, the pipeline-url annotation must match the attestation's
    invocation URL (exactly, or as its prefix on a path boundary)."""
    namespaces: tuple[str, ...] = ()
    """If set, the rule applies only to Deployments in these namespaces."""
    environments: tuple[str, ...] = ()
    """If set, the rule applies only to these environments (from the environment annotation or
    the namespace's environment)."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip()
        if value != "*" and not _PREFIX.fullmatch(value.lower()):
            raise ValueError(f"{value!r} is not a registry/repository prefix (or '*')")
        return value.lower()

    def matches_name(self, name: str) -> bool:
        """True if `name` is the prefix itself or lies below it on a path boundary."""
        if self.prefix == "*":
            return True
        stem = self.prefix.rstrip("/")
        return name == stem or name.startswith(stem + "/")

    @property
    def named_signers(self) -> tuple[str, ...]:
        """`keys` and `signers` together, each name once."""
        return tuple(dict.fromkeys((*self.keys, *self.signers)))

    def applies(self, name: str, *, namespace: str, environment: str | None) -> bool:
        """True if this rule covers the image `name` in this namespace and environment."""
        if self.namespaces and namespace not in self.namespaces:
            return False
        if self.environments and environment not in self.environments:
            return False
        return self.matches_name(name)

    def fingerprint(self) -> str:
        """A stable digest of the rule, for verdict cache keys."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class CacheSettings(_Strict):
    """The verdict cache."""

    max_entries: int = Field(default=4096, ge=1, le=1_000_000)
    """Verdicts kept; the least recently used goes first."""
    ttl_seconds: float = Field(default=300.0, ge=0, le=86400)
    """How long a passing verdict is reused (signatures can be removed or keys rotated)."""
    denial_ttl_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a failing verdict (or a registry error) is reused: short, so a freshly pushed
    signature is seen quickly, but long enough to absorb a burst of retries."""


class SignatureConfig(_Strict):
    """Signature and provenance verification. Off unless `enabled`."""

    enabled: bool = False
    """Turn verification on. Off by default because it needs keys and registry access."""
    keys: tuple[TrustedKey, ...] = Field(default=(), max_length=64)
    """Every trusted key; rules pick subsets by name."""
    keyless: KeylessConfig = KeylessConfig()
    """Keyless signers (OIDC identities in Fulcio certificates) and the trust roots they
    chain to; rules pick them by name, like keys."""
    rules: tuple[ImageRule, ...] = Field(default=(), max_length=1024)
    """Per-prefix requirements; the longest applicable prefix wins."""
    default_require: Requirement = "signature"
    """What images matched by no rule need (any trusted key, threshold 1). Fail closed."""
    on_registry_error: Literal["deny", "allow"] = "deny"
    """`deny` (default): an unreachable or misbehaving registry denies, naming the registry and
    the error. `allow`: admit with a warning; use only where availability beats assurance."""
    docker_reference: Literal["ignore", "match"] = "ignore"
    """The legacy payload's `critical.identity.docker-reference`. `ignore` (default, as cosign
    verify does): the signature binds to the digest, which is what runs, so an image copied to a
    mirror keeps its signatures. `match`: it must also equal the admitted registry/repository."""
    registry: RegistrySettings = RegistrySettings()
    """Transport, deadlines and limits."""
    cache: CacheSettings = CacheSettings()
    """The verdict cache."""

    @model_validator(mode="after")
    def _consistent(self) -> SignatureConfig:
        keys = [k.name for k in self.keys]
        if len(set(keys)) != len(keys):
            raise ValueError("trusted key names must be unique")
        keyless = {s.name for s in self.keyless.signers}
        both = sorted(keyless & set(keys))
        if both:
            # One namespace: a rule's signer name must say which signer it means.
            raise ValueError(f"names used by a key and a keyless signer: {', '.join(both)}")
        names = set(keys) | keyless
        for rule in self.rules:
            unknown = set(rule.keys) - set(keys)
            if unknown:
                raise ValueError(f"rule {rule.prefix}: unknown keys {sorted(unknown)}")
            unknown = set(rule.signers) - names
            if unknown:
                raise ValueError(f"rule {rule.prefix}: unknown signers {sorted(unknown)}")
            available = len(rule.named_signers) or len(names)
            if rule.require != "none" and rule.threshold > available:
                raise ValueError(f"rule {rule.prefix}: threshold {rule.threshold} exceeds its "
                                 f"{available} signers")
        needs_signers = self.default_require != "none" or any(
            r.require != "none" for r in self.rules)
        if self.enabled and needs_signers and not names:
            raise ValueError("signatures are enabled and required, but no trusted key or keyless "
                             "signer is given")
        return self

    def signer_names(self) -> frozenset[str]:
        """Every configured signer: trusted keys and keyless signers."""
        return frozenset([k.name for k in self.keys] + [s.name for s in self.keyless.signers])

    def default_rule(self) -> ImageRule:
        """The rule for images no configured rule covers."""
        return ImageRule(prefix="*", require=self.default_require)

    def rule_for(self, name: str, *, namespace: str, environment: str | None) -> ImageRule:
        """The most specific applicable rule (longest prefix; the first one on a tie)."""
        best: ImageRule | None = None
        for rule in self.rules:
            if rule.applies(name, namespace=namespace, environment=environment) and (
                best is None or _specificity(rule) > _specificity(best)
            ):
                best = rule
        return best or self.default_rule()

    def load_keys(self) -> tuple[PublicKey, ...]:
        """Every trusted key, parsed (`ConfigError` on the first bad one)."""
        return tuple(k.load() for k in self.keys)


def _specificity(rule: ImageRule) -> int:
    return -1 if rule.prefix == "*" else len(rule.prefix.rstrip("/"))
