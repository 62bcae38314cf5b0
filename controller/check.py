"""`kubectl-provenance check`: the webhook's policy engine, run offline over manifests.

Each workload document (every kind in `controller.workloads.KINDS`) becomes the same typed
request the webhook builds from an AdmissionReview (`review.request_from_manifest`, a CREATE, as
its author applies it) and goes through the same
`admission.Admission` pipeline (policy checks, then signature verification when asked) with the
same configuration file, so the verdict and the reason codes are the ones the gate will give.
What the offline side cannot know is asked for explicitly: the user the apply will run as
(`--as`, `--as-group`) and the namespace (`-n`, when the manifest has none). Other kinds are
skipped, as the webhook never sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from controller.admission import Admission, Stage
from controller.config import Config, load_config
from controller.errors import ConfigError, ReviewError
from controller.policy.violations import Decision
from controller.review import WorkloadRequest, request_from_manifest
from controller.signatures import ImageVerifier, KeyLoadError, SignatureConfig
from controller.stages import BreakGlassStage, SignatureStage
from controller.stamp.errors import StampError
from controller.stamp.manifests import (
    Manifest,
    add_manifest_arguments,
    manifest_paths,
    read_manifests,
)
from controller.stamp.stamping import workloads
from controller.workloads import kind_of

AUTHENTICATED_GROUP = "system:authenticated"
"""The API server adds this group to every authenticated user; the offline request does too."""
USER_ENV = "PROVENANCE_CHECK_USER"
"""Default for `--as`: the user the pipeline applies as."""
OUTPUT_FORMATS = ("text", "json", "github")
SIGNATURE_BUDGET_SECONDS = 30.0
"""Per workload: more generous than the webhook's budget, which an offline check is not under;
the registry settings' own per-request and total timeouts still apply."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision over one workload document."""

    source: str
    """The file, or `<stdin>`."""
    document: int
    """1-based document index in the file."""
    line: int
    """1-based line where the document starts (for editor and GitHub annotations)."""
    kind: str
    """`Deployment`, `Pod`, ..."""
    name: str
    namespace: str
    username: str
    """The user the request was judged as."""
    decision: Decision

    @property
    def failed(self) -> bool:
        """Whether the gate would deny it."""
        return not self.decision.allowed


def check_manifests(
    manifests: Sequence[Manifest],
    *,
    config: Config,
    username: str | None,
    groups: Sequence[str] = (),
    namespace: str | None = None,
    now: dt.datetime,
    signatures: bool = False,
) -> list[Verdict]:
    """Judge every workload in `manifests`; raise `ManifestError` on unreadable input.

    With `username` None each workload is judged as the user its deployed-by annotation names
    (the actor checks then test only consistency, not who really applies). With `signatures`,
    images are verified through the registry as the webhook's verification stage does.
    """
    requests = _requests(manifests, config=config, username=username, groups=groups,
                         namespace=namespace)
    return asyncio.run(_review_all(requests, config, now=now, signatures=signatures))


def _requests(
    manifests: Sequence[Manifest],
    *,
    config: Config,
    username: str | None,
    groups: Sequence[str],
    namespace: str | None,
) -> list[tuple[Verdict, WorkloadRequest]]:
    """Each workload as the webhook's typed request, with its verdict still to be decided."""
    all_groups = tuple(dict.fromkeys([*groups, AUTHENTICATED_GROUP]))
    out: list[tuple[Verdict, WorkloadRequest]] = []
    for manifest in manifests:
        for document in manifest.documents:
            for data in workloads(document.load_plain()):
                user = username if username is not None else _claimed_actor(data, config)
                own = data.get("metadata", {}).get("namespace") if isinstance(
                    data.get("metadata"), dict) else None
                if namespace and own and own != namespace:
                    # kubectl refuses this too, before the API server sees anything.
                    raise document.error(
                        f"the namespace of the {data.get('kind')} ({own!r}) does not match -n "
                        f"{namespace!r}")
                try:
                    request = request_from_manifest(
                        data, username=user, groups=all_groups,
                        namespace=namespace or "default")
                except ReviewError as exc:
                    raise document.error(f"not a valid {data.get('kind')}: {exc}") from exc
                out.append((Verdict(
                    source=document.source, document=document.index, line=document.line,
                    kind=request.kind.kind, name=request.name, namespace=request.namespace,
                    username=user,
                    decision=Decision()), request))
    return out


async def _review_all(requests: Sequence[tuple[Verdict, WorkloadRequest]], config: Config, *,
                      now: dt.datetime, signatures: bool) -> list[Verdict]:
    # The webhook's own pipeline (`Admission`, with its verification stage when asked), so the
    # same claims, environment and rules decide, and an internal failure denies as it does
    # there. No ledger stage: an offline check records nothing.
    verifier = ImageVerifier(signature_config(config)) if signatures else None
    stages: tuple[Stage, ...] = (
        (SignatureStage(verifier, config),) if verifier is not None else ()) + (
        BreakGlassStage(config),)
    admission = Admission(config, stages=stages, budget_seconds=SIGNATURE_BUDGET_SECONDS,
                          clock=lambda: now)
    try:
        return [dataclasses.replace(verdict, decision=(await admission.review(request)).decision)
                for verdict, request in requests]
    finally:
        if verifier is not None:
            await verifier.close()


def signature_config(config: Config) -> SignatureConfig:
    """The configuration's `signatures` section; `StampError` when verification is off there."""
    if not config.signatures.enabled:
        raise StampError(
            "--signatures: signature verification is not enabled in the configuration "
            "(signatures.enabled is false); enable it there, or run with --no-signatures")
    return config.signatures


def _claimed_actor(data: dict[str, object], config: Config) -> str:
    key = config.annotations.key("deployed-by")
    kind = kind_of(data)
    template = kind.template(data) if kind is not None else None
    for meta in (template.get("metadata") if template is not None else None,
                 data.get("metadata")):
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if isinstance(annotations, dict) and isinstance(annotations.get(key), str):
            return str(annotations[key])
    return ""


def exit_code(verdicts: Sequence[Verdict]) -> int:
    """1 when the gate would deny any workload (a violation in enforce mode), else 0."""
    return 1 if any(v.failed for v in verdicts) else 0


def render_text(verdicts: Sequence[Verdict]) -> str:
    """One block per workload: the verdict, then every violation with its code and fix."""
    lines: list[str] = []
    for v in verdicts:
        where = f"{v.source}:{v.line}: {v.kind} {v.namespace}/{v.name}"
        d = v.decision
        if d.exempt_reason:
            lines.append(f"{where}: not judged ({d.exempt_reason})")
            continue
        if not d.violations:
            lines.append(f"{where}: ok")
            continue
        state = "DENIED" if v.failed else "admitted in audit mode"
        count = len(d.violations)
        lines.append(f"{where}: {state}, {count} problem{'s' if count != 1 else ''}")
        lines.extend(f"  [{x.reason}] {x.message}\n      fix: {x.hint}" for x in d.violations)
    denied = sum(v.failed for v in verdicts)
    lines.append(f"{len(verdicts)} workload{'s' if len(verdicts) != 1 else ''} checked, "
                 f"{denied} would be denied")
    return "\n".join(lines) + "\n"


def render_json(verdicts: Sequence[Verdict]) -> str:
    """A JSON document: `{"allowed": bool, "workloads": [...]}`, stable key order."""
    body = {
        "allowed": not any(v.failed for v in verdicts),
        "workloads": [{
            "file": v.source, "document": v.document, "line": v.line,
            "kind": v.kind, "namespace": v.namespace, "name": v.name, "user": v.username,
            "allowed": v.decision.allowed, "enforce": v.decision.enforce,
            "exempt": v.decision.exempt_reason or None,
            "violations": [{"reason": str(x.reason), "message": x.message, "hint": x.hint,
                            "subject": x.subject} for x in v.decision.violations],
        } for v in verdicts],
    }
    return json.dumps(body, indent=2) + "\n"


def _gh_data(text: str) -> str:
    # GitHub's workflow-command escaping: the message, then property values, which also escape
    # the separators `:` and `,`.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(verdicts: Sequence[Verdict]) -> str:
    """`::error file=…,line=…,title=…::…` per violation (`::warning` in audit mode)."""
    lines = []
    for v in verdicts:
        level = "error" if v.decision.enforce else "warning"
        for x in v.decision.violations:
            title = f"{x.reason} in {v.kind} {v.namespace}/{v.name}"
            lines.append(
                f"::{level} file={_gh_property(v.source)},line={v.line},"
                f"title={_gh_property(title)}::{_gh_data(f'{x.message} (fix: {x.hint})')}")
    return "".join(line + "\n" for line in lines)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}


def add_check_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `check` on the `kubectl-provenance` parser."""
    p = subparsers.add_parser(
        "check", help="run the admission policy offline over manifests",
        description="Judge every workload in the manifests with the webhook's policy engine "
        "and configuration. Exit 1 if the gate would deny any, 2 on bad input.")
    add_manifest_arguments(p)
    p.add_argument("--config", help="the controller's configuration file (default: "
                   "$PROVENANCE_CONFIG, else the built-in defaults)")
    p.add_argument("--as", dest="as_user", default=os.environ.get(USER_ENV),
                   help=f"the user kubectl apply will authenticate as (default: ${USER_ENV}, "
                   "else each workload's deployed-by annotation)")
    p.add_argument("--as-group", dest="as_groups", action="append", default=[],
                   help="a group of that user (repeatable)")
    p.add_argument("-n", "--namespace", default=None,
                   help="namespace for manifests that name none (default: default); like "
                   "kubectl, a manifest naming another one is an error")
    p.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="text")
    sig = p.add_mutually_exclusive_group()
    sig.add_argument("--signatures", dest="signatures", action="store_true", default=None,
                     help="also verify image signatures and attestations through the registry "
                     "(the default when the configuration enables signatures)")
    sig.add_argument("--no-signatures", dest="signatures", action="store_false",
                     help="policy checks only, no registry access (the default when the "
                     "configuration does not enable signatures)")
    p.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """The `check` handler: 0 all admitted, 1 any denied, 2 bad input or configuration."""
    try:
        config = load_config(args.config)
        if args.signatures is None:
            # Follow the gate: a check that skipped what the webhook enforces would pass
            # Deployments the webhook then denies.
            args.signatures = config.signatures.enabled
        elif not args.signatures and config.signatures.enabled:
            print("kubectl-provenance check: --no-signatures: signatures and attestations are "
                  "not verified here, but the gate verifies them", file=sys.stderr)
        if args.signatures:
            # Refuse up front, before reading anything: a check that silently skipped what the
            # gate enforces would be worse than none.
            signature_config(config)
        manifests = read_manifests(manifest_paths(args), recursive=args.recursive)
        verdicts = check_manifests(
            manifests, config=config, username=args.as_user, groups=args.as_groups,
            namespace=args.namespace, now=dt.datetime.now(dt.UTC), signatures=args.signatures)
    except (StampError, ConfigError, KeyLoadError) as exc:
        print(f"kubectl-provenance check: {exc}", file=sys.stderr)
        return 2
    if args.as_user is None and verdicts:
        print("kubectl-provenance check: no --as given: each workload is judged as the user "
              "its deployed-by annotation names", file=sys.stderr)
    sys.stdout.write(RENDERERS[args.output](verdicts))
    return exit_code(verdicts)
