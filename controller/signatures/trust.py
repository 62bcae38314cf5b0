"""Sigstore trust roots: which Fulcio CAs, Rekor logs, CT logs and timestamp authorities we trust.

A trust root is a Sigstore `trusted_root.json` (media type
`application/vnd.dev.sigstore.trustedroot+json;version=0.1`). Roots are named:

- `public-good`: Sigstore's production instance, embedded in the package
  (`controller/signatures/data/`), always present and the default;
- any number of others from configuration, each from a file (a mounted ConfigMap or Secret) or
  inline JSON: GitHub's own instance for private repositories, a company's own Sigstore.

Everything is read once at start-up. Verification never fetches a root: an admission needs no
network access to a Sigstore service.

```yaml
trust_roots:
  - name: github
    path: /etc/provenance/trust/github.trusted_root.json   # a mounted ConfigMap key
  - name: internal
    inline: '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", ...}'
```
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore_models.trustroot import v1 as trustroot_v1

from controller.errors import ConfigError
from controller.signatures.errors import VerificationError

PUBLIC_GOOD = "public-good"
"""The embedded production root's name; configuration cannot redefine it."""
MAX_TRUST_ROOT_BYTES = 1024 * 1024
"""The production root is about 7 KiB; a root this large is refused unparsed."""
_ROOT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class TrustRootError(VerificationError):
    """A trusted_root.json is unreadable, malformed or of an unknown media type."""


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """One parsed trust root, ready to verify against."""

    name: str
    """The configured name (`public-good` for the embedded one); denials and the ledger use it."""
    fingerprint: str
    """sha256 of the JSON as read: part of verdict cache keys, so a changed root re-verifies."""
    root: TrustedRoot = field(repr=False, compare=False)
    """sigstore-python's model of the root."""


def parse_trust_root(data: bytes | str, *, name: str) -> TrustRoot:
    """Parse a `trusted_root.json`; `TrustRootError` naming the root if it is not one."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_TRUST_ROOT_BYTES:
        raise TrustRootError(f"trust root {name}: {len(raw)} bytes is larger than "
                             f"{MAX_TRUST_ROOT_BYTES}")
    try:
        inner = trustroot_v1.TrustedRoot.from_json(raw)
        root = TrustedRoot(inner)
    except (SigstoreError, ValueError) as exc:
        # pydantic's ValidationError is a ValueError: a missing validity start, bad base64, ...
        first = str(exc).splitlines()
        raise TrustRootError(f"trust root {name}: not a valid trusted_root.json: "
                             f"{' '.join(first[:3])}") from exc
    return TrustRoot(name=name, fingerprint=hashlib.sha256(raw).hexdigest(), root=root)


def load_trust_root_file(path: str | Path, *, name: str) -> TrustRoot:
    """Read and parse a `trusted_root.json` file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TRUST_ROOT_BYTES + 1)
    except OSError as exc:
        raise TrustRootError(f"trust root {name}: cannot read {path}: {exc}") from exc
    return parse_trust_root(data, name=name)


@functools.cache
def public_good() -> TrustRoot:
    """The embedded root of Sigstore's production instance (parsed once per process)."""
    data = resources.files("controller.signatures").joinpath(
        "data/public-good.trusted_root.json").read_bytes()
    return parse_trust_root(data, name=PUBLIC_GOOD)


class TrustRootSource(BaseModel):
    """One configured trust root: a file or inline JSON (exactly one of the two)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(pattern=_ROOT_NAME)
    """How keyless signers name the root (`trust_root: github`)."""
    path: str | None = None
    """A `trusted_root.json` file, read once at start-up; mount a ConfigMap key here."""
    inline: str | None = Field(default=None, max_length=MAX_TRUST_ROOT_BYTES)
    """The `trusted_root.json` itself, as a string (for example from a ConfigMap value)."""

    @model_validator(mode="after")
    def _one_source(self) -> TrustRootSource:
        if (self.path is None) == (self.inline is None):
            raise ValueError(f"trust root {self.name}: give exactly one of 'path' and 'inline'")
        if self.name == PUBLIC_GOOD:
            raise ValueError(f"trust root name {PUBLIC_GOOD!r} is the embedded production root "
                             "and cannot be redefined")
        return self

    def load(self) -> TrustRoot:
        """Read and parse the root; `ConfigError` naming it if that fails."""
        try:
            if self.path is not None:
                return load_trust_root_file(self.path, name=self.name)
            return parse_trust_root(self.inline or "", name=self.name)
        except TrustRootError as exc:
            raise ConfigError(str(exc)) from exc


class TrustRoots(Mapping[str, TrustRoot]):
    """The named trust roots of one configuration, `public-good` always among them."""

    def __init__(self, roots: Mapping[str, TrustRoot]) -> None:
        self._roots = dict(roots)

    def __getitem__(self, name: str) -> TrustRoot:
        return self._roots[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._roots)

    def __len__(self) -> int:
        return len(self._roots)

    def get_root(self, name: str) -> TrustRoot:
        """The root called `name`; `ConfigError` listing the known names otherwise."""
        try:
            return self._roots[name]
        except KeyError:
            raise ConfigError(f"unknown trust root {name!r} (known: "
                              f"{', '.join(sorted(self._roots))})") from None


def load_trust_roots(sources: tuple[TrustRootSource, ...] = ()) -> TrustRoots:
    """The embedded production root plus every configured one; names must be unique."""
    roots: dict[str, TrustRoot] = {PUBLIC_GOOD: public_good()}
    for source in sources:
        if source.name in roots:
            raise ConfigError(f"trust root {source.name!r} is defined twice")
        roots[source.name] = source.load()
    return TrustRoots(roots)
