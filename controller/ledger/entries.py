"""Building ledger entries from what the admission path already has."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.errors import ImageReferenceError
from controller.images import parse_reference
from controller.ledger.chain import canonical_json, utc_timestamp
from controller.ledger.errors import DryRunNotRecorded, LedgerError
from controller.ledger.models import (
    Actor,
    AdmissionEntry,
    BreakGlass,
    ClientRecord,
    ContainerRecord,
    OutcomeEntry,
    OutcomeType,
    Provenance,
    Rollback,
    VerifiedImage,
)
from controller.review import WorkloadRequest

if TYPE_CHECKING:
    # controller.config imports this package for LedgerConfig; the reverse import is types only.
    from controller.config import Config
    from controller.policy.provenance import Claims


def annotations_hash(annotations: Mapping[str, str], prefix: str) -> str:
    """sha256 over the provenance annotations only (other annotations churn freely)."""
    own = {k: v for k, v in annotations.items() if k.startswith(prefix)}
    return "sha256:" + hashlib.sha256(canonical_json(own)).hexdigest()


def build_admission_entry(
    request: WorkloadRequest,
    config: Config,
    *,
    images: Mapping[str, VerifiedImage] | None = None,
    now: datetime | None = None,
    waived: tuple[str, ...] = (),
    claims: Claims | None = None,
    break_glass: BreakGlass | None = None,
    rollback: Rollback | None = None,
) -> AdmissionEntry:
    """The entry for an admitted request. `images` maps an image reference, as written in the
    pod template, to the verifier's evidence; without it only digest pinning is recorded.

    Raises `DryRunNotRecorded` for a dryRun request: those must never reach the ledger.
    """
    if request.dry_run:
        raise DryRunNotRecorded(f"admission {request.uid} is a dryRun and must not be recorded")
    if request.operation not in ("CREATE", "UPDATE"):
        raise LedgerError(f"only CREATE and UPDATE are recorded, not {request.operation}")
    annotations = request.annotations
    keys = config.annotations
    # The same reading as the policy checks: the pod template first, then the object, so the
    # record names the provenance of what runs (after `rollout undo`, the old template's).
    if claims is None:
        # Imported here: controller.policy imports controller.config, which imports this
        # package for LedgerConfig.
        from controller.policy.provenance import read_claims

        claims = read_claims(request, keys)

    def annotation(name: str) -> str | None:
        return claims.get(name)

    containers = []
    for container in request.containers:
        evidence = (images or {}).get(container.image)
        repository: str | None = None
        digest: str | None = None
        try:
            ref = parse_reference(container.image)
            repository, digest = ref.name, ref.pinned_digest
        except ImageReferenceError:
            pass
        if evidence is not None and evidence.digest is not None:
            digest = evidence.digest
        containers.append(ContainerRecord(
            kind=container.kind, name=container.name, image=container.image,
            repository=repository, digest=digest,
            signature=evidence.signature if evidence else None,
            attestation=evidence.attestation if evidence else None))
    meta = request.object.metadata
    return AdmissionEntry(
        admission_uid=request.uid,
        operation=request.operation,
        kind=request.kind.kind,
        subresource=request.subresource,
        namespace=request.namespace,
        name=request.name,
        object_uid=meta.uid,
        generation=meta.generation,
        template_hash=request.template_hash,
        annotations_hash=annotations_hash(annotations, keys.prefix),
        deploy_timestamp=utc_timestamp(now),
        actor=Actor(username=request.user.username, uid=request.user.uid,
                    groups=request.user.groups, annotated=annotation("deployed-by")),
        client=ClientRecord(authenticated=request.client.authenticated,
                            subject=request.client.subject),
        provenance=Provenance(
            commit_sha=annotation("git-sha"), branch=annotation("branch"),
            build_id=annotation("build-id"), build_timestamp=annotation("build-timestamp"),
            pipeline_url=annotation("pipeline-url"), environment=annotation("environment")),
        containers=tuple(containers),
        rollback=rollback,
        break_glass=break_glass,
        waived=waived,
    )


def build_outcome_entry(
    kind: OutcomeType,
    *,
    ref_seq: int,
    ref_leaf: str,
    body: Mapping[str, Any] | None,
    namespace: str,
    name: str,
    now: datetime | None = None,
    detail: str = "",
) -> OutcomeEntry:
    """An outcome entry referencing admission entry `ref_seq` (whose leaf hash is `ref_leaf`)."""
    meta = (body or {}).get("metadata") or {}
    generation = meta.get("generation")
    return OutcomeEntry(
        type=kind, ref_seq=ref_seq, ref_leaf=ref_leaf, namespace=namespace, name=name,
        observed_at=utc_timestamp(now), object_uid=str(meta.get("uid", "")),
        generation=generation if isinstance(generation, int) else None,
        resource_version=str(meta.get("resourceVersion", "")), detail=detail[:4096])
