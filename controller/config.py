"""The controller's configuration: one YAML file, validated by a frozen, strict pydantic model.

Its path comes from `--config` or `PROVENANCE_CONFIG`; without either, the defaults below apply.
A bad file stops start-up with a message naming the bad field (`ConfigError`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.errors import ConfigError
from controller.ledger.config import LedgerConfig
from controller.signatures.config import SignatureConfig

CONFIG_ENV = "PROVENANCE_CONFIG"
"""The environment variable naming the configuration file when `--config` is not given."""

ANNOTATION_NAMES = (
    "git-sha", "branch", "build-id", "build-timestamp", "pipeline-url", "deployed-by",
    "environment", "break-glass", "break-glass-waive",
)
"""Every provenance annotation the controller knows, without the prefix. `break-glass` is the
reason for an emergency admission and `break-glass-waive` the reason codes it waives, comma
separated (`BreakGlassConfig`)."""


EnvironmentName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class AnnotationConfig(_Strict):
    """Which annotations carry the provenance, and their limits."""

    prefix: str = Field(default="provenance.dev/", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?/$")
    """Prefix of every provenance annotation key; a DNS subdomain followed by `/`."""
    required: tuple[Literal[
        "git-sha", "branch", "build-id", "build-timestamp", "pipeline-url", "deployed-by",
        "environment",
    ], ...] = ("git-sha", "build-id", "deployed-by")
    """Annotations a Deployment must carry; the others are checked only when present."""
    max_value_length: int = Field(default=2048, ge=64, le=65536)
    """Upper bound on any provenance annotation value, in characters."""
    max_build_id_length: int = Field(default=256, ge=1, le=2048)
    """Upper bound on the build-id, which is an identifier, not a document."""
    max_clock_skew_seconds: int = Field(default=300, ge=0, le=86400)
    """How far in the future a build-timestamp may lie before it is rejected."""

    def key(self, name: str) -> str:
        """The full annotation key for a short name such as `git-sha`."""
        return f"{self.prefix}{name}"


class ActorConfig(_Strict):
    """How the `deployed-by` annotation is checked against the authenticated user.

    The authenticated user (`request.userInfo.username`) is always what is recorded; the annotation
    is never trusted on its own.
    """

    rule: Literal["match-username", "ci-allowlist"] = "match-username"
    """`match-username`: deployed-by must equal the authenticated username.
    `ci-allowlist`: as `match-username`, except that a user in `ci_accounts` may deploy on behalf
    of the person it names in deployed-by."""
    ci_accounts: tuple[str, ...] = ()
    """Authenticated usernames (for example `system:serviceaccount:ci:deployer`) allowed to deploy
    on behalf of someone else under `ci-allowlist`."""


class EnvironmentRule(_Strict):
    """Who may deploy to one environment. Empty lists mean nobody may (fail closed)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces that belong to this environment; the environment annotation must agree."""
    users: tuple[str, ...] = ()
    """Authenticated usernames allowed to deploy here."""
    groups: tuple[str, ...] = ()
    """Authenticated groups whose members may deploy here."""
    branches: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = ()
    """Branches whose builds may be deployed here, as shell-style patterns matched against the
    whole branch annotation (`main`, `release/*`; `*` matches `/` too). Empty: any branch."""
    max_build_age_seconds: int | None = Field(default=None, ge=60)
    """The oldest build (by its build-timestamp annotation) that may be deployed here; None for
    no limit. A rollback to an older build is a fresh deploy of it and is judged the same."""


CONTROLLER_IDENTITIES = (
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
    "system:serviceaccount:kube-system:replication-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:kube-controller-manager",
)
"""kube-controller-manager's identities: its per-controller service accounts
(`--use-service-account-credentials`, the default of kubeadm and managed clusters) and its own
user for clusters that run it without them."""


class DerivedConfig(_Strict):
    """How objects that controllers create from an admitted template are judged.

    A ReplicaSet made by the Deployment controller, a Pod made by a ReplicaSet, a Job made by a
    CronJob: the person was judged on the object they wrote, so the actor and environment checks
    are not repeated. Images must still be pinned (and signed where rules say), and the
    provenance they carry must be well formed. What makes an object derived is only who
    created it, as the API server authenticated them: `ownerReferences` and annotations are
    written by whoever creates the object and grant nothing.
    """

    controllers: tuple[str, ...] = CONTROLLER_IDENTITIES
    """Authenticated usernames whose CREATEs and UPDATEs are judged as derived objects. Add an
    identity only if it creates workloads solely from templates that were themselves admitted;
    GitOps tools and other operators that apply what people wrote belong in `actor.ci_accounts`
    instead."""


NEVER_WAIVED = frozenset({
    "ImageNotPinned", "InvalidDigest", "InvalidImageReference", "LedgerUnavailable",
    "InternalError", "BreakGlassRefused",
})
"""Reason codes no break-glass may waive: what runs must be named by digest (it is what the
record and any rollback rest on), and an admission that cannot be recorded or evaluated is never
let through."""


class BreakGlassRule(_Strict):
    """Who may break glass in one environment, and what they may waive there."""

    users: tuple[str, ...] = ()
    """Authenticated usernames allowed to break glass."""
    groups: tuple[str, ...] = ()
    """Authenticated groups whose members may break glass."""
    waivable: tuple[str, ...] = ()
    """Reason codes (as in denials: `ActorMismatch`, `SignatureMissing`, ...) a break-glass
    admission may waive. The codes in `NEVER_WAIVED` are refused here."""

    @field_validator("waivable")
    @classmethod
    def _waivable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from controller.policy.violations import Reason

        known = {str(r) for r in Reason}
        for code in value:
            if code not in known:
                raise ValueError(f"{code!r} is not a reason code")
            if code in NEVER_WAIVED:
                raise ValueError(f"{code} can never be waived")
        return value


class BreakGlassConfig(_Strict):
    """Emergency admissions that leave a louder trace than a normal deploy.

    A workload annotated with `break-glass: <reason>` and `break-glass-waive: <codes>` is
    admitted despite those violations when its author is listed for its environment and every
    code is waivable there. The ledger entry records the reason, the user and the codes; an
    Event and `provenance_break_glass_total` tell someone to look.
    """

    environments: dict[EnvironmentName, BreakGlassRule] = {}
    """Per environment (the `environments` names); an environment not listed has no break
    glass."""
    default: BreakGlassRule | None = None
    """For workloads in no named environment; None: no break glass there."""
    max_reason_length: int = Field(default=512, ge=16, le=2048)
    """Upper bound on the reason; it must also be at least 10 characters."""

    def rule_for(self, environment: str | None) -> BreakGlassRule | None:
        """The rule for a workload in `environment` (None: no named environment)."""
        return self.environments.get(environment) if environment else self.default


class RollbackConfig(_Strict):
    """Rolling a workload back to a template the ledger holds, through the gate.

    An UPDATE that restores the pod template of an earlier admitted, persisted entry of the same
    object (`kubectl rollout undo`, or re-applying an older manifest) is admitted as a rollback
    although `deployed-by` names the original deployer, and recorded as one. Its images are
    verified again under today's trust.
    """

    enabled: bool = True
    """Off: a restored template is judged as any other deploy (deployed-by must match)."""
    users: tuple[str, ...] = ()
    """Authenticated usernames who may roll back in any environment, besides those the
    environment rule lets deploy there."""
    groups: tuple[str, ...] = ()
    """Authenticated groups whose members may roll back in any environment."""
    allow_failed_rollouts: bool = False
    """Whether a template whose rollout the ledger marks failed may be restored."""
    ledger_cache_seconds: float = Field(default=5.0, ge=0.0, le=300.0)
    """How long one verified read of the ledger serves rollback look-ups; rollbacks come in
    bursts during an incident, and each read is the whole chain."""


class Config(_Strict):
    """The whole configuration file."""

    mode: Literal["enforce", "audit"] = "enforce"
    """`enforce` denies on any violation; `audit` admits and returns the violations as warnings."""
    annotations: AnnotationConfig = AnnotationConfig()
    """The provenance annotations."""
    actor: ActorConfig = ActorConfig()
    """The deploying-actor rule."""
    environments: dict[EnvironmentName, EnvironmentRule] = {}
    """Environments whose deployers are restricted (for example `production`). A Deployment whose
    namespace or environment annotation names one of these must come from an authorised user."""
    rollback: RollbackConfig = RollbackConfig()
    """Rollbacks through the gate (on by default; needs the ledger)."""
    break_glass: BreakGlassConfig = BreakGlassConfig()
    """Emergency admissions on the record (off until configured)."""
    derived: DerivedConfig = DerivedConfig()
    """Objects created by controllers from an admitted template."""
    signatures: SignatureConfig = SignatureConfig()
    """Signature and SLSA provenance verification (off by default; see the README)."""
    ledger: LedgerConfig = LedgerConfig()
    """The audit ledger (on by default; see the README)."""
    exempt_namespaces: tuple[str, ...] = ("kube-system",)
    """Namespaces never judged. The webhook configuration excludes them by the immutable
    `kubernetes.io/metadata.name` label; the controller re-checks, so a stale configuration
    cannot exempt anything else."""

    @field_validator("exempt_namespaces")
    @classmethod
    def _namespaces_are_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ns in value:
            if not ns or len(ns) > 63 or not ns.replace("-", "a").isalnum() or ns.lower() != ns:
                raise ValueError(f"{ns!r} is not a namespace name")
        return value

    def is_controller(self, username: str) -> bool:
        """Whether `username` is one of the controller identities of `derived`."""
        return username in self.derived.controllers

    def environment_for_namespace(self, namespace: str) -> str | None:
        """The environment a namespace belongs to, from the `environments` table."""
        for name, rule in self.environments.items():
            if namespace in rule.namespaces:
                return name
        return None


def _format_validation_error(source: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"  {where}: {item['msg']}")
    return f"invalid configuration in {source}:\n" + "\n".join(problems)


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Parse YAML text into a `Config`; raise `ConfigError` naming every bad field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping at the top level")
    try:
        # The YAML is parsed in python mode so that lists become tuples where tuples are declared.
        return Config.model_validate(data, strict=False)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from exc


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration from `path`, else `$PROVENANCE_CONFIG`, else the defaults."""
    chosen = path if path is not None else os.environ.get(CONFIG_ENV) or None
    if chosen is None:
        return Config()
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc.strerror}") from exc
    return parse_config(text, source=str(file))
