"""The OCI distribution client: manifests, blobs, tags and referrers, with auth and hard limits.

Public surface: `RegistryClient`, `Deadline`, `RegistrySettings`, the credential helpers, and the
`RegistryError` tree. Nothing here knows about signatures.
"""

from controller.registry.auth import (
    Credential,
    CredentialsError,
    KubeSecretSource,
    SecretSource,
    StaticSecretSource,
    parse_dockerconfigjson,
)
from controller.registry.client import RegistryClient, sha256_digest
from controller.registry.deadline import Deadline
from controller.registry.errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryLimitExceeded,
    RegistryProtocolError,
    RegistryUnavailable,
)
from controller.registry.models import Descriptor, ImageIndex, ImageManifest, Manifest
from controller.registry.settings import PullSecretRef, RegistrySettings

__all__ = [
    "Credential",
    "CredentialsError",
    "Deadline",
    "Descriptor",
    "DigestMismatchError",
    "ImageIndex",
    "ImageManifest",
    "KubeSecretSource",
    "Manifest",
    "NotFoundError",
    "PullSecretRef",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "RegistryLimitExceeded",
    "RegistryProtocolError",
    "RegistrySettings",
    "RegistryUnavailable",
    "SecretSource",
    "StaticSecretSource",
    "parse_dockerconfigjson",
    "sha256_digest",
]
