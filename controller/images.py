"""Image references, parsed strictly by the distribution reference grammar and normalised.

`nginx`, `docker.io/nginx` and `docker.io/library/nginx` are one repository; `name:tag@digest`
is judged by its digest alone (the runtime pulls by digest and ignores the tag). Only
`sha256:` followed by 64 lower-case hex counts as pinned: other algorithms and upper-case hex
are rejected rather than normalised, because the runtime and the registry would disagree on them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from controller.errors import ImageReferenceError

DEFAULT_REGISTRY = "docker.io"
"""Where a reference without a domain component points (the Docker convention)."""
OFFICIAL_PREFIX = "library/"
"""Docker Hub's namespace for official images: `nginx` is `docker.io/library/nginx`."""
MAX_NAME_LENGTH = 255
"""The grammar's limit on the full name (domain and path)."""
MAX_REFERENCE_LENGTH = 512
"""Our own bound on the whole reference, checked before any regex runs."""

# The grammar from distribution/reference, spelled out piece by piece so that each piece can be
# read against the specification.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?"
    rf"(?:@(?P<digest>{_DIGEST}))?"
)
_PINNED_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference."""

    registry: str
    """The registry host (and port), `docker.io` for Docker Hub."""
    repository: str
    """The repository path inside the registry, with `library/` added on Docker Hub."""
    tag: str | None = None
    """The tag, if any; informative only when a digest is present."""
    digest: str | None = None
    """The digest exactly as written (its form is judged by `pinned_digest`)."""

    @property
    def name(self) -> str:
        """`registry/repository`, the form used for policy prefixes and the ledger."""
        return f"{self.registry}/{self.repository}"

    @property
    def pinned_digest(self) -> str | None:
        """The digest if it is an acceptable pin (sha256, 64 lower-case hex), else None."""
        if self.digest is not None and _PINNED_DIGEST.fullmatch(self.digest):
            return self.digest
        return None

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> ImageReference:
        """This reference pinned to `digest`, the tag dropped (the form `stamp` writes)."""
        return ImageReference(self.registry, self.repository, None, digest)


def _parse_reference(text: str) -> ImageReference:
    if not text:
        raise ImageReferenceError("the image reference is empty")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise ImageReferenceError(f"the image reference is longer than {MAX_REFERENCE_LENGTH}")
    if text != text.strip():
        raise ImageReferenceError("the image reference has surrounding whitespace")
    match = _REFERENCE.fullmatch(text)
    if match is None:
        if text.endswith("@"):
            raise ImageReferenceError(f"{text!r} has an empty digest")
        if text.lower() != text and "@" not in text and ":" not in text:
            raise ImageReferenceError(f"{text!r} has upper-case letters in the repository name")
        raise ImageReferenceError(f"{text!r} is not a valid image reference")
    name = match.group("name")
    if len(name) > MAX_NAME_LENGTH:
        raise ImageReferenceError(f"the repository name is longer than {MAX_NAME_LENGTH}")
    registry, _, remainder = name.partition("/")
    # The first component is a registry only if it looks like a host: docker's own rule.
    if not remainder or (
        "." not in registry and ":" not in registry and registry != "localhost"
        and registry.lower() == registry
    ):
        registry, remainder = DEFAULT_REGISTRY, name
    if not re.fullmatch(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", remainder):
        raise ImageReferenceError(f"{text!r} has an invalid repository path {remainder!r}")
    # Host names are case-insensitive and :443 is the HTTPS default: without this,
    # `REGISTRY.example.com:443/team/app` would slip past a rule for `registry.example.com/team/`.
    # (A single-label upper-case host such as `Myhost/app` keeps its case: lower-cased it would
    # read back as a Docker Hub namespace, a different image.)
    if "." in registry or ":" in registry or registry.lower() == "localhost":
        registry = registry.lower().removesuffix(":443")
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return ImageReference(registry, remainder, match.group("tag"), match.group("digest"))


parse_reference: Callable[[str], ImageReference] = functools.lru_cache(maxsize=4096)(
    _parse_reference)
"""Parse and normalise `text`; raise `ImageReferenceError` saying what is wrong.

Memoised: the checks and the verifier parse the same few references on every admission, and
the result is immutable (errors are not cached; they are raised afresh). The parser itself is
undecorated so that the mutation benchmark can reach it.
"""
