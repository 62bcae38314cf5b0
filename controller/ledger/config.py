"""The ledger's configuration, mounted by the lead as `Config.ledger`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LedgerConfig(BaseModel):
    """Where and how admitted workloads are recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    enabled: bool = True
    """Record every admitted workload. With False nothing is recorded and nothing is denied
    for want of a record; only for clusters that keep provenance elsewhere."""
    record_derived: bool = False
    """Also record objects controllers create from an admitted template (the ReplicaSets,
    Pods and Jobs below a Deployment, StatefulSet, DaemonSet or CronJob). Off by default: the
    authored object's entry already names what runs, and one entry per Pod would flood the
    ledger (a 3-replica Deployment is 5 admissions). Authored Pods are always recorded."""
    namespace: str = Field(default="provenance-ledger",
                           pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    """The dedicated namespace holding the segment ConfigMaps; only the controller's service
    account may write there (RBAC)."""
    chain: str = Field(default="audit", pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
    """The chain's name: segments are `<chain>-00000000`, `<chain>-00000001`, ... and the
    checkpoint ConfigMap is `<chain>-checkpoints`. One chain per ledger namespace."""
    segment_max_bytes: int = Field(default=128 * 1024, ge=4 * 1024, le=900 * 1024)
    """The most one write (one group commit, one segment) holds; a larger batch continues in
    the next segment. Well under the 1 MiB object limit."""
    max_entry_bytes: int = Field(default=64 * 1024, ge=1024, le=256 * 1024)
    """An entry larger than this is refused (and its admission denied); verification rejects
    stored entries larger than this as malformed."""
    group_commit_window_ms: float = Field(default=0.0, ge=0.0, le=100.0)
    """After the first queued entry, wait this long for others before writing. Entries queued
    while a write is in flight always join the next write, whatever this value, so under load
    admissions share writes without it; a wait only delays a lone admission (0 by default)."""
    group_commit_max_entries: int = Field(default=256, ge=1, le=4096)
    """Upper bound on entries per write."""
    append_deadline_seconds: float = Field(default=5.0, gt=0.0, le=30.0)
    """Default time an append may take, when the caller gives no deadline. Must stay below the
    webhook's timeoutSeconds, so that a denial ("not recorded") reaches the API server."""
    idempotency_segments: int = Field(default=16, ge=1, le=256)
    """How many of the newest segments a starting writer reads back to index their idempotency
    keys (admission uids). A retry of an admission arrives within seconds."""
    idempotency_entries: int = Field(default=4096, ge=64, le=1_000_000)
    """How many of the newest idempotency keys a writer keeps in memory; the index is bounded
    however long the process runs."""
    signed_head_interval_seconds: float = Field(default=0.5, ge=0.0, le=60.0)
    """Least time between two writes of the signed head beside the key (each write carries
    the newest head). The running writer checks its own tail before every write; this bounds
    how far behind the copy beside the key may be when a writer dies or is cut."""
    lanes: int = Field(default=8, ge=1, le=64)
    """Writer lanes: each replica writes its own chain (`controller.ledger.lanes`), claimed
    through a Lease. Keep it above the replica count (surge included)."""
    lane_lease_seconds: float = Field(default=15.0, ge=3.0, le=300.0)
    """How long a lane's Lease lasts unrenewed: how soon a dead replica's lane can be taken
    over, and how long a partitioned replica keeps writing before it stops."""
    checkpoint_key_secret: str = Field(default="provenance-ledger-checkpoint-key",
                                       pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    """The Secret holding the Ed25519 checkpoint signing key (`private-key`, PKCS#8 PEM)."""
    checkpoint_key_namespace: str = Field(default="provenance-system",
                                          pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    """The Secret's namespace: outside the ledger namespace, so that write access to the
    ledger does not give the power to sign checkpoints."""
    checkpoint_interval_seconds: float = Field(default=60.0, ge=1.0, le=86400.0)
    """How often a signed checkpoint is written when the chain has grown (also at every seal)."""
    never_persisted_after_seconds: float = Field(default=120.0, ge=5.0, le=86400.0)
    """An admitted Deployment not seen stored with the admitted template within this window is
    marked never-persisted (another webhook or a quota rejected it after us)."""
    retention_keep_segments: int = Field(default=0, ge=0)
    """`ledger prune` keeps at least this many of the newest sealed segments; 0 keeps all
    (no pruning). Pruning only ever cuts at a segment that starts with a signed checkpoint."""

    @model_validator(mode="after")
    def _key_outside_ledger(self) -> LedgerConfig:
        if self.checkpoint_key_namespace == self.namespace:
            raise ValueError("checkpoint_key_namespace must differ from namespace: whoever can "
                             "write the ledger must not be able to read the signing key")
        return self

    @model_validator(mode="after")
    def _entry_fits_segment(self) -> LedgerConfig:
        # A segment must hold its seal entry and at least one entry of the largest size.
        if self.max_entry_bytes * 2 > self.segment_max_bytes:
            raise ValueError("max_entry_bytes must be at most half of segment_max_bytes")
        return self
