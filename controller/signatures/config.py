"""Signature policy configuration: trusted keys, image rules, registry settings, the cache.

The lead's `controller.config.Config` carries it as `signatures: SignatureConfig`. Example:

```yaml
signatures:
  enabled: true
  keys:
    - name: release
      path: /etc/provenance/keys/cosign.pub
  rules:
    - prefix: registry.example.com/payments/      # path boundary: not .../paymentsx/
      require: attestation                        # signature AND SLSA provenance
      keys: [release]
      environments: [production]
      check_build_id: true
    - prefix: registry.example.com/
      require: signature
  registry:
    insecure_registries: []
```
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
"""`none`: not checked. `signature`: a signature by the rule's keys (threshold of them).
`attestation`: that signature *and* a SLSA provenance attestation by one of the rule's keys,
whose commit must equal the git-sha annotation."""

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
    """Names of the trusted keys accepted for these images; empty means all of them."""
    threshold: int = Field(default=1, ge=1, le=16)
    """How many distinct accepted keys must have signed the digest."""
    check_commit: bool = True
    """With `require: attestation`, the git-sha annotation must equal the attested commit."""
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
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("trusted key names must be unique")
        for rule in self.rules:
            unknown = set(rule.keys) - set(names)
            if unknown:
                raise ValueError(f"rule {rule.prefix}: unknown keys {sorted(unknown)}")
            available = len(rule.keys) or len(names)
            if rule.require != "none" and rule.threshold > available:
                raise ValueError(
                    f"rule {rule.prefix}: threshold {rule.threshold} exceeds its {available} keys")
        needs_keys = self.default_require != "none" or any(
            r.require != "none" for r in self.rules)
        if self.enabled and needs_keys and not self.keys:
            raise ValueError("signatures are enabled and required, but no trusted key is given")
        return self

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
