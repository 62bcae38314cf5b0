"""The ledger's entries: frozen, strict pydantic models, serialised as canonical JSON.

Every stored line is a `Record`: `{"seq": n, "prev": head_{n-1}, "entry": {...}}`. The entry is one
of a closed set of kinds told apart by `type`. Stored ledger contents are untrusted input: they
are parsed with these models (extra fields forbidden) before anything reads them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

HEX64 = r"^[0-9a-f]{64}$"
_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
Timestamp = Annotated[str, Field(pattern=_TIME)]
"""RFC 3339 in UTC with a `Z`: a string, so that canonical JSON never involves floats."""
Short = Annotated[str, Field(max_length=1024)]
Long = Annotated[str, Field(max_length=4096)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Actor(_Model):
    """Who deployed: the authenticated user (trusted) and the annotated actor (as claimed)."""

    username: Claim
    """`userInfo.username` as the API server authenticated it."""
    uid: Claim = ""
    """`userInfo.uid`."""
    groups: tuple[Claim, ...] = ()
    """`userInfo.groups`."""
    annotated: Claim | None = None
    """The `deployed-by` annotation, when present (for CI deploying on someone's behalf)."""


Claim = Annotated[str, Field(max_length=65536)]
"""An annotation value as admitted: bounded by the policy's own limit (at most 65536), so that
everything the checks accept can be recorded."""


class ClientRecord(_Model):
    """How the review reached the webhook: over a TLS connection whose client certificate the
    configured client CA verified (the API server), or not (anyone who can reach the port)."""

    authenticated: bool
    subject: Short | None = None
    """The client certificate's subject common name."""


class Provenance(_Model):
    """The build provenance the Deployment's annotations declared."""

    commit_sha: Claim | None = None
    branch: Claim | None = None
    build_id: Claim | None = None
    build_timestamp: Claim | None = None
    pipeline_url: Claim | None = None
    environment: Claim | None = None


class SignatureRecord(_Model):
    """The signature verdict for one image, filled in by the signature verifier."""

    verified: bool
    formats: tuple[Short, ...] = ()
    """Signature formats that verified (`cosign-simple-signing`, `sigstore-bundle`, ...)."""
    key_ids: tuple[Short, ...] = ()
    """Ids of the trusted keys whose signatures verified."""


class AttestationRecord(_Model):
    """The attestation verdict for one image, filled in by the signature verifier."""

    verified: bool
    predicate_type: Short | None = None
    commit_sha: Short | None = None
    """The commit the attestation names."""
    build_id: Short | None = None
    key_ids: tuple[Short, ...] = ()


class ContainerRecord(_Model):
    """One container of the admitted pod template."""

    kind: Literal["container", "initContainer", "ephemeralContainer", "imageVolume"]
    name: Short
    image: Long
    """The image reference exactly as written in the pod template."""
    repository: Long | None = None
    """`registry/repository`, normalised, when the reference parses."""
    digest: Short | None = None
    """The artifact digest (`sha256:...`) when the image is pinned by an acceptable digest."""
    signature: SignatureRecord | None = None
    """None until signature verification is wired in."""
    attestation: AttestationRecord | None = None
    """None until attestation verification is wired in."""


class BreakGlass(_Model):
    """An emergency admission: who broke glass, why, and which checks they waived."""

    reason: Claim
    username: Claim
    """The authenticated user who broke glass."""
    waived: tuple[Short, ...] = Field(max_length=64)
    """The reason codes of the violations let through."""


class Rollback(_Model):
    """An admission that restored an earlier admitted template (`kubectl rollout undo`)."""

    restored_from: int = Field(ge=0)
    """The sequence number of the admission entry whose template was restored."""
    restored_leaf: Annotated[str, Field(pattern=HEX64)]
    """That entry's leaf hash, so the reference cannot be re-pointed."""
    restored_chain: Short | None = Field(default=None, exclude_if=lambda v: v is None)
    """The chain (writer lane) holding that entry, when it is not the first lane."""
    original_deployer: Claim
    """Who deployed the restored template first (the authenticated user of that entry)."""
    original_commit: Claim | None = None


class AdmissionEntry(_Model):
    """An admitted workload CREATE or UPDATE, with its provenance."""

    type: Literal["admission"] = "admission"
    admission_uid: Annotated[str, Field(min_length=1, max_length=128)]
    """The AdmissionReview request uid: the idempotency key."""
    operation: Literal["CREATE", "UPDATE"]
    kind: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z]{0,62}$")] = "Deployment"
    """The workload kind (`controller.workloads.KINDS`). Entries written before other kinds were
    gated carry none: they are all Deployments."""
    subresource: Short | None = Field(default=None, exclude_if=lambda v: v is None)
    """`ephemeralcontainers` for `kubectl debug`; omitted for the object itself."""
    namespace: Short
    name: Short
    """metadata.name; empty for an object named by `generateName` on CREATE."""
    object_uid: Short = ""
    """The object's metadata.uid; empty on CREATE (the API server assigns it later)."""
    generation: int | None = None
    """metadata.generation of the object under review, when it has one."""
    template_hash: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    """sha256 of the canonical pod template: what would run."""
    annotations_hash: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    """sha256 of the provenance annotations: tells two admissions of one template apart."""
    deploy_timestamp: Timestamp
    """The controller's clock when the admission was decided."""
    actor: Actor
    client: ClientRecord | None = Field(default=None, exclude_if=lambda v: v is None)
    """How the review reached the webhook (`authenticated`: with a client certificate the
    client CA verified). Omitted by entries written before it was recorded."""
    provenance: Provenance
    containers: tuple[ContainerRecord, ...] = Field(max_length=768)
    rollback: Rollback | None = Field(default=None, exclude_if=lambda v: v is None)
    """Set when the admission restored an earlier entry's template; omitted otherwise. The
    person who rolled back is `actor.username`."""
    break_glass: BreakGlass | None = Field(default=None, exclude_if=lambda v: v is None)
    """Set when the admission broke glass (`Config.break_glass`); omitted otherwise."""
    waived: tuple[Short, ...] = Field(default=(), max_length=256, exclude_if=lambda v: not v)
    """Reason codes of violations admitted anyway because the policy was in audit mode: the
    record says what was let through, not only that something was. Omitted when empty, so an
    entry without waivers has the same canonical bytes as one written before this field."""

    @property
    def idempotency_key(self) -> str:
        return f"admission:{self.admission_uid}"


OutcomeType = Literal["persisted", "never-persisted", "rollout-available", "rollout-failed"]


class OutcomeEntry(_Model):
    """What became of an admission, appended later; the chain stays append-only."""

    type: OutcomeType
    ref_seq: int = Field(ge=0)
    """The admission entry's sequence number."""
    ref_leaf: Annotated[str, Field(pattern=HEX64)]
    """The admission entry's leaf hash, so the reference cannot be re-pointed."""
    ref_chain: Short | None = None
    """The chain (writer lane) holding the admission entry; None: this entry's own chain."""
    namespace: Short
    name: Short
    observed_at: Timestamp
    object_uid: Short = ""
    generation: int | None = None
    resource_version: Short = ""
    detail: Long = ""
    """For rollouts, the condition's reason and message."""

    @property
    def idempotency_key(self) -> str:
        if self.ref_chain:
            return f"{self.type}:{self.ref_chain}:{self.ref_seq}"
        return f"{self.type}:{self.ref_seq}"


class Checkpoint(_Model):
    """A signed statement that the chain had `size` entries ending in `head` at `time`."""

    chain: Short
    size: int = Field(ge=0)
    """Entries covered: sequence numbers 0 .. size-1."""
    head: Annotated[str, Field(pattern=HEX64)]
    """head_{size-1} (the genesis head when size is 0)."""
    time: Timestamp
    key_id: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    """sha256 of the signing key's SubjectPublicKeyInfo (DER)."""
    signature: Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z0-9+/=]+$")]
    """Base64 Ed25519 signature over the canonical JSON of {chain, size, head, time}."""


class CheckpointEntry(_Model):
    """A periodic checkpoint, written into the log itself."""

    type: Literal["checkpoint"] = "checkpoint"
    checkpoint: Checkpoint

    @property
    def idempotency_key(self) -> str:
        return f"checkpoint:{self.checkpoint.size}"


class SealEntry(_Model):
    """The first entry of every segment after the first: it closes the previous segment.

    It names the sealed ConfigMap's uid, so that a sealed segment deleted and recreated (even
    byte for byte) is detected, and carries a checkpoint signed at the seal, which is where
    verification can start after older segments were pruned.
    """

    type: Literal["seal"] = "seal"
    segment: int = Field(ge=0)
    """The sealed segment's number."""
    segment_uid: Short
    """The sealed ConfigMap's metadata.uid."""
    entries: int = Field(ge=0)
    """How many entries the sealed segment holds."""
    checkpoint: Checkpoint | None = None
    """Signed {size, head} at the seal; None when no signing key is configured."""

    @property
    def idempotency_key(self) -> str:
        return f"seal:{self.segment}"


class GateChangedEntry(_Model):
    """The controller's own ValidatingWebhookConfiguration was deleted or drifted.

    Admission webhooks are never called for webhook configurations, so the controller watches
    its own (`controller.gate`) and records each change it sees here, before restoring it.
    """

    type: Literal["gate-changed"] = "gate-changed"
    configuration: Short
    """The ValidatingWebhookConfiguration's name."""
    change: Literal["deleted", "drifted"]
    differences: tuple[Long, ...] = Field(default=(), max_length=64)
    """What differs from the expected configuration, one line per field
    (`<webhook>.<field>: expected <x>, found <y>`); empty for a deletion."""
    observed_at: Timestamp
    """The controller's clock when it saw the change."""
    object_uid: Short = ""
    """The uid of the object that changed (for a deletion: of the one last seen)."""
    resource_version: Short = ""
    """The changed object's resourceVersion as observed (empty for a deletion): says which
    write it was, for the API server's audit log."""
    restored: bool
    """Whether the controller set out to restore the expected configuration (it does when it
    owns it); the next look, and the next entry if any, say whether it held."""

    @property
    def idempotency_key(self) -> str:
        # Without the time: replicas that see the same change record it once.
        return f"gate-changed:{self.configuration}:{self.change}:{self.object_uid}:" \
               f"{self.resource_version}"


class UnadmittedEntry(_Model):
    """A workload seen stored with no admission entry for what it runs.

    It was created while the gate was off, before the controller was installed, or through a
    path the gate missed. Recorded once per object and template; derived objects and exempt
    namespaces are not looked at.
    """

    type: Literal["unadmitted"] = "unadmitted"
    kind: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z]{0,62}$")]
    namespace: Short
    name: Short
    object_uid: Short
    generation: int | None = None
    resource_version: Short = ""
    template_hash: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    annotations_hash: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    observed_at: Timestamp

    @property
    def idempotency_key(self) -> str:
        return f"unadmitted:{self.object_uid}:{self.template_hash}:{self.annotations_hash}"


class RecoveredEntry(_Model):
    """An operator's explicit, reasoned restart of a writer after a cut (`ledger recover`).

    The writer never continues after a cut on its own: this entry, signed like every other, says
    who accepted the loss, why, and what was lost (the signed head the anchor named against what
    was still stored).
    """

    type: Literal["recovered"] = "recovered"
    reason: Annotated[str, Field(min_length=1, max_length=4096)]
    operator: Short
    """The Kubernetes user who ran the command (from a SelfSubjectReview)."""
    found_size: int = Field(ge=0)
    found_head: Annotated[str, Field(pattern=HEX64)]
    expected_size: int | None = Field(default=None, ge=0)
    """The size the signed head beside the key named, when there was one."""
    expected_head: Annotated[str, Field(pattern=HEX64)] | None = None
    problems: tuple[Long, ...] = Field(default=(), max_length=64)
    """What `ledger verify` reported before the recovery."""
    recovered_at: Timestamp

    @property
    def idempotency_key(self) -> str:
        return f"recovered:{self.found_size}:{self.found_head}:{self.recovered_at}"


Entry = Annotated[
    AdmissionEntry | OutcomeEntry | CheckpointEntry | SealEntry | GateChangedEntry
    | UnadmittedEntry | RecoveredEntry,
    Field(discriminator="type")]


class AnchorHead(_Model):
    """The newest signed head of a chain, kept beside the key (`segments.anchor_map_name`)."""

    segment: int = Field(ge=0)
    segment_uid: Short
    checkpoint: Checkpoint


class Record(_Model):
    """One stored line of the chain."""

    seq: int = Field(ge=0)
    prev: Annotated[str, Field(pattern=HEX64)]
    """head_{seq-1}, hex; the genesis head for seq 0."""
    entry: Entry


def entry_key(seq: int) -> str:
    """The ConfigMap data key of entry `seq`: zero-padded so keys sort by sequence."""
    return f"e-{seq:012d}"


_KEY = re.compile(r"e-(\d{12})")


def parse_entry_key(key: str) -> int | None:
    """The sequence number a data key names, or None if it is not an entry key."""
    match = _KEY.fullmatch(key)
    return int(match.group(1)) if match else None


class AppendReceipt(_Model):
    """Where an entry landed; returned by `Ledger.append`."""

    seq: int
    leaf: str
    """The entry's leaf hash (hex): what outcome entries reference."""
    head: str
    """head_seq (hex)."""
    segment: int
    chain: Short = ""
    """The chain (writer lane) that holds it; empty in receipts made before lanes."""
    duplicate: bool = False
    """True when the idempotency key was already recorded and nothing new was written."""


class VerifiedImage(_Model):
    """What the signature verifier found for one image, handed to `build_admission_entry`."""

    digest: Short | None = None
    """The digest the verifier resolved and verified, if any."""
    signature: SignatureRecord | None = None
    attestation: AttestationRecord | None = None
