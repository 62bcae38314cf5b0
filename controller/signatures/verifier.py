"""The admission pipeline's entry point for signatures and provenance: `ImageVerifier.verify`.

For each digest-pinned container image of a workload:
1. pick the most specific image rule (prefix, namespace, environment);
2. look the verdict up in the cache, keyed by image, digest, the signers (keys, keyless
   policies and their trust roots) and rule; on a miss, fetch every signature and attestation
   artifact (once per image and digest however many containers use it; concurrent admissions
   share one fetch);
3. verify the artifacts: each goes to the `Signer` that handles it (`controller.signatures.
   signers`: keys; `keyless_signer`: Fulcio certificates). This is the facts, cached. It runs
   in a worker thread, inside the deadline, when there are many artifacts or any keyless one;
4. judge the cached facts against this request: threshold of accepted signers, binding to the
   digest, the keyless certificate's commit and ref against the git-sha and branch
   annotations, and, for `require: attestation`, the git-sha, build-id and pipeline-url
   annotations against the attestation.

Multi-arch rule: the signature must cover exactly the digest the pod spec names. If it names an
image index, a signature on the index is enough (that is what `cosign sign` on a tag of a
multi-arch image makes); if it names one platform's manifest, that manifest must be signed
itself: a signed index does not vouch for a digest pinned below it, because the verifier cannot
tell, from the child, which index it was taken from.

Images that are not digest-pinned are skipped here: the policy checks already deny them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from controller import metrics
from controller.errors import ImageReferenceError
from controller.images import ImageReference, parse_reference
from controller.policy.violations import Reason, Violation
from controller.registry.auth import (
    Credential,
    CredentialsError,
    SecretSource,
    parse_dockerconfigjson,
)
from controller.registry.client import RegistryClient
from controller.registry.deadline import Deadline
from controller.registry.errors import NotFoundError, RegistryError
from controller.review import ContainerImage, WorkloadRequest
from controller.signatures.cache import VerdictCache
from controller.signatures.certificate import Mismatch, MismatchField, check_source
from controller.signatures.config import ImageRule, Requirement, SignatureConfig
from controller.signatures.discovery import collect
from controller.signatures.formats import Finding
from controller.signatures.keys import PublicKey
from controller.signatures.signers import KeySigners, Signer, check_artifacts

log = logging.getLogger(__name__)

THREAD_THRESHOLD = 4
"""More artifacts than this are verified in a worker thread. One ECDSA P-256 verification takes
about 0.1 ms, so a few run inline faster than a thread hop; dozens would stall the loop."""
VERIFY_THREADS = 1
"""Worker threads for verification (see `ImageVerifier._executor`)."""
THREAD_BYTES = 64 * 1024
"""...and so is any verification that hashes more than this (payload bytes times keys): a
registry chosen by the requester may serve megabyte payloads, each hashed once per key."""


@dataclass(frozen=True, slots=True)
class ImageVerdict:
    """What the registry holds for one image digest, verified: the cached unit."""

    name: str
    digest: str
    media_type: str = ""
    findings: tuple[Finding, ...] = ()
    error: RegistryError | None = None
    """Set when the registry could not be read; then `findings` is empty."""

    def signers(self, allowed: frozenset[str]) -> frozenset[str]:
        """Accepted keys with a signature bound to the digest."""
        return frozenset(k for f in self.findings if f.kind == "signature" and f.verified
                         for k in f.keys & allowed)


@dataclass(frozen=True, slots=True)
class ImageEvidence:
    """What the ledger records about one container's image."""

    container: str
    """`container app`, `initContainer migrate`."""
    image: str
    """The image reference as written in the pod spec."""
    digest: str
    requirement: Requirement
    verified: bool
    """True if every requirement of the rule was met."""
    signature_formats: tuple[str, ...] = ()
    """Formats of the verified signatures (`bundle`, `legacy-sig`)."""
    key_names: tuple[str, ...] = ()
    """Every accepted signer that signed: keys and keyless signers, by configured name."""
    key_ids: tuple[str, ...] = ()
    """The key ids of the keys among them."""
    keyless_identities: tuple[str, ...] = ()
    """The certificate subjects of the keyless signatures among them."""
    attestation_commit: str | None = None
    attestation_formats: tuple[str, ...] = ()
    index: bool = False
    """The digest names an image index (multi-arch)."""
    registry_error: str | None = None


@dataclass(frozen=True, slots=True)
class VerificationOutcome:
    """The verifier's answer for one workload."""

    violations: tuple[Violation, ...] = ()
    evidence: tuple[ImageEvidence, ...] = ()
    notes: tuple[str, ...] = field(default=())
    """Warnings that are not violations (registry errors under `on_registry_error: allow`)."""


@dataclass(frozen=True, slots=True)
class _Target:
    container: ContainerImage
    ref: ImageReference
    digest: str
    rule: ImageRule


class ImageVerifier:
    """Long-lived: owns the registry client, the trusted keys and the verdict cache."""

    def __init__(
        self,
        config: SignatureConfig,
        *,
        client: RegistryClient | None = None,
        secrets: SecretSource | None = None,
        keys: Sequence[PublicKey] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` is the verdict cache's (seconds, monotonic): tests pass their own to expire
        verdicts without waiting."""
        self.config = config
        self.client = client or RegistryClient(config.registry)
        self._secrets = secrets
        self.keys: tuple[PublicKey, ...] = tuple(keys) if keys is not None else (
            config.load_keys())
        self._keys_by_name = {k.name: k for k in self.keys}
        key_signers = KeySigners(self.keys)
        self.signers: tuple[Signer, ...] = (key_signers,)
        if config.keyless.signers:
            # Imported here: sigstore-python takes a while to import, and only keyless needs it.
            from controller.signatures.keyless_signer import KeylessSigners
            keyless = KeylessSigners(config.keyless.load().signers)
            # Keyless first: it claims only artifacts with a certificate; keys take the rest.
            self.signers = (keyless, key_signers)
        self._signer_names = frozenset(n for s in self.signers for n in s.names)
        self._executor = ThreadPoolExecutor(max_workers=VERIFY_THREADS,
                                            thread_name_prefix="verify")
        """Verification is CPU-bound and holds the GIL: more threads than this only trade the
        GIL among themselves and with the event loop, which measured slower."""
        self._keyset = "+".join(s.fingerprint() for s in self.signers)
        self._rule_fingerprints: dict[ImageRule, str] = {}
        self._outcomes: OrderedDict[
            Hashable, tuple[VerificationOutcome, float, int, int]] = OrderedDict()
        """Memoised answers per workload shape; see `verify`."""
        self.cache: VerdictCache[ImageVerdict] = VerdictCache(
            max_entries=config.cache.max_entries,
            ttl=config.cache.ttl_seconds,
            denial_ttl=config.cache.denial_ttl_seconds,
            is_denial=self._is_denial,
            clock=clock,
        )

    async def close(self) -> None:
        """Close the registry client's connections and the verification thread."""
        await self.client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def verify(
        self,
        request: WorkloadRequest,
        *,
        git_sha: str | None,
        build_id: str | None,
        pipeline_url: str | None,
        environment: str | None,
        deadline: float,
        branch: str | None = None,
    ) -> VerificationOutcome:
        """Verify every pinned image of `request`; `deadline` is a `time.monotonic()` instant.

        Never raises for registry or signature trouble: that becomes violations (or notes).
        """
        if not self.config.enabled:
            return VerificationOutcome()
        # The whole answer for a workload is memoised while every verdict it rests on is
        # fresh: a warm admission then costs a dictionary lookup instead of re-judging.
        memo_key = (tuple((c.kind, c.name, c.image) for c in request.containers),
                    request.namespace, environment, git_sha, build_id, pipeline_url, branch)
        memo = self._outcomes.get(memo_key)
        if memo is not None and memo[1] > self.cache.now() and memo[3] == self.cache.generation:
            self._outcomes.move_to_end(memo_key)
            for _ in range(memo[2]):
                metrics.record_cache(hit=True)
            return memo[0]
        limit = Deadline(deadline).earlier(
            Deadline.after(self.config.registry.total_timeout_seconds))
        targets = self._targets(request, environment)
        checked = [t for t in targets if t.rule.require != "none"]
        # One verification per (image, digest, rule), however many containers share it.
        unique: dict[tuple[str, str, str], _Target] = {}
        for target in checked:
            unique.setdefault(self._key(target), target)
        # Warm verdicts are read synchronously: no task, no timeout, no event-loop round trip,
        # so a cached admission costs what the policy checks cost.
        by_key: dict[tuple[str, str, str], ImageVerdict] = {}
        for key in unique:
            hit = self.cache.lookup(key)
            if hit is not None:
                by_key[key] = hit
        missing = [k for k in unique if k not in by_key]
        if missing:
            # Pull secrets are read only when the registry must be asked.
            credentials = await self._credentials(request, [unique[k] for k in missing], limit)
            verdicts = await asyncio.gather(*(
                self._verdict(unique[k], credentials.get(unique[k].ref.registry), limit)
                for k in missing))
            by_key.update(zip(missing, verdicts, strict=True))
        violations: list[Violation] = []
        evidence: list[ImageEvidence] = []
        notes: list[str] = []
        for target in targets:
            if target.rule.require == "none":
                evidence.append(ImageEvidence(
                    container=target.container.label, image=target.container.image,
                    digest=target.digest, requirement="none", verified=True))
                continue
            verdict = by_key[self._key(target)]
            found, ev, note = self._judge(
                target, verdict, git_sha=git_sha, build_id=build_id, pipeline_url=pipeline_url,
                branch=branch)
            violations.extend(found)
            evidence.append(ev)
            if note:
                notes.append(note)
        outcome = VerificationOutcome(tuple(violations), tuple(evidence), tuple(notes))
        if unique:
            # Fresh only as long as the shortest-lived verdict it used (denials: seconds).
            expires = min(self.cache.expires(k) for k in unique)
            if expires > self.cache.now():
                self._outcomes[memo_key] = (outcome, expires, len(unique),
                                            self.cache.generation)
                while len(self._outcomes) > self.config.cache.max_entries:
                    self._outcomes.popitem(last=False)
        return outcome

    # --- step 1: targets and credentials -------------------------------------------------------
    def _targets(self, request: WorkloadRequest, environment: str | None) -> list[_Target]:
        out = []
        for container in request.containers:
            try:
                ref = parse_reference(container.image)
            except ImageReferenceError:
                continue
            digest = ref.pinned_digest
            if digest is None:
                continue
            rule = self.config.rule_for(
                ref.name, namespace=request.namespace, environment=environment)
            out.append(_Target(container, ref, digest, rule))
        return out

    def _key(self, target: _Target) -> tuple[str, str, str]:
        rule = target.rule
        fingerprint = self._rule_fingerprints.get(rule)
        if fingerprint is None:
            # Rules are frozen; hashing the JSON of one on every admission showed in profiles.
            fingerprint = self._rule_fingerprints[rule] = rule.fingerprint()
        return (target.ref.name, target.digest, self._keyset + fingerprint)

    async def _credentials(
        self, request: WorkloadRequest, targets: Sequence[_Target], deadline: Deadline
    ) -> Mapping[str, Credential]:
        """Registry → credential, from the pod's imagePullSecrets, then the configured Secret."""
        if self._secrets is None or not targets:
            return {}
        settings = self.config.registry
        wanted: list[tuple[str, str]] = []
        if settings.use_image_pull_secrets:
            wanted.extend((request.namespace, n) for n in request.pull_secret_names)
        if settings.pull_secret is not None:
            wanted.append((settings.pull_secret.namespace, settings.pull_secret.name))
        found: dict[str, Credential] = {}
        for namespace, name in wanted:
            try:
                async with asyncio.timeout(deadline.budget(settings.request_timeout_seconds)):
                    data = await self._secrets.dockerconfigjson(namespace, name)
                if data is not None:
                    for host, cred in parse_dockerconfigjson(data).items():
                        found.setdefault(host, cred)
            except (CredentialsError, TimeoutError) as exc:
                # Anonymous access may still work; a registry that needs the secret will say 401.
                log.warning("pull secret %s/%s unusable: %s", namespace, name, exc)
        return found

    # --- steps 2 and 3: fetch and verify, through the cache -------------------------------------
    async def _verdict(
        self, target: _Target, credential: Credential | None, deadline: Deadline
    ) -> ImageVerdict:
        async def compute() -> ImageVerdict:
            # The shared work has its own budget, not the first caller's: a caller that is
            # about to give up must not cut short (and cache the failure of) what others await.
            own = Deadline.after(self.config.registry.total_timeout_seconds)
            return await self._fetch_and_verify(target, credential, own)

        try:
            async with asyncio.timeout(deadline.remaining()):
                return await self.cache.get_or_compute(self._key(target), compute)
        except TimeoutError:
            err = RegistryError(target.ref.registry, "verification did not finish in time")
            return ImageVerdict(target.ref.name, target.digest, error=err)

    async def _fetch_and_verify(
        self, target: _Target, credential: Credential | None, deadline: Deadline
    ) -> ImageVerdict:
        ref = target.ref
        started = time.monotonic()
        try:
            collected = await collect(
                self.client, ref.registry, ref.repository, target.digest, deadline=deadline,
                credential=credential, want_attestations=target.rule.require == "attestation")
        except RegistryError as exc:
            log.info("registry error for %s@%s: %s", ref.name, target.digest, exc)
            return ImageVerdict(ref.name, target.digest, error=exc)
        work = sum(len(a.data) for a in collected.artifacts) * max(1, len(self.keys))
        keyless = any(s.handles(a) for s in self.signers[:-1] for a in collected.artifacts)
        if keyless or len(collected.artifacts) > THREAD_THRESHOLD or work > THREAD_BYTES:
            # X.509 path building and SCT and log checks take milliseconds: off the loop, and
            # bounded by the deadline (the thread's late result is dropped).
            loop = asyncio.get_running_loop()
            findings = await asyncio.wait_for(loop.run_in_executor(
                self._executor, check_artifacts, collected.artifacts, self.signers,
                target.digest), timeout=deadline.remaining())
        else:
            findings = check_artifacts(collected.artifacts, self.signers, target.digest)
        log.debug("verified %s@%s: %d artifacts in %.1f ms", ref.name, target.digest,
                  len(findings), (time.monotonic() - started) * 1000)
        return ImageVerdict(ref.name, target.digest, collected.media_type, findings)

    def _is_denial(self, verdict: ImageVerdict) -> bool:
        """Cached briefly: errors, and verdicts without any verified signature."""
        return verdict.error is not None or not verdict.signers(self._signer_names)

    # --- step 4: judge ---------------------------------------------------------------------------
    def _judge(
        self,
        target: _Target,
        verdict: ImageVerdict,
        *,
        git_sha: str | None,
        build_id: str | None,
        pipeline_url: str | None,
        branch: str | None,
    ) -> tuple[list[Violation], ImageEvidence, str | None]:
        rule = target.rule
        label = target.container.label
        image = target.container.image
        subject = label
        allowed = frozenset(rule.named_signers) or self._signer_names
        if verdict.error is not None:
            err = verdict.error
            ev = ImageEvidence(label, image, target.digest, rule.require, verified=False,
                               registry_error=str(err))
            if isinstance(err, NotFoundError) and self.config.on_registry_error == "deny":
                return [Violation(
                    Reason.REGISTRY_ERROR,
                    f"{label}: image {image} could not be checked: {err}",
                    "push the image (and its signatures) to the registry the pod spec names",
                    subject)], ev, None
            if self.config.on_registry_error == "allow":
                return [], ev, f"{label}: signatures of {image} not checked: {err}"
            return [Violation(
                Reason.REGISTRY_ERROR,
                f"{label}: image {image} could not be checked, registry {err.registry} failed: "
                f"{err.detail}",
                "retry when the registry is reachable, or check its credentials and limits",
                subject)], ev, None
        findings = [f for f in verdict.findings if self._reference_ok(f, target.ref)]
        violations = self._judge_signatures(target, findings, allowed)
        violations.extend(self._judge_certificates(
            target, findings, allowed, git_sha=git_sha, branch=branch))
        signing = self._signing_findings(rule.require, findings)
        signers = {k for f in signing if f.verified for k in f.keys & allowed}
        att_findings: list[Finding] = []
        if rule.require == "attestation":
            att_violations, att_findings = self._judge_attestation(
                target, findings, allowed, git_sha=git_sha, build_id=build_id,
                pipeline_url=pipeline_url)
            violations.extend(att_violations)
        formats = tuple(sorted({f.format for f in signing if f.verified and f.keys & allowed}))
        names = tuple(sorted(signers))
        commit = next((f.provenance.commit for f in att_findings if f.provenance), None)
        identities = tuple(sorted({s for f in signing if f.verified and f.keys & allowed
                                   and f.identity for s in f.identity.subjects}))
        ev = ImageEvidence(
            label, image, target.digest, rule.require, verified=not violations,
            signature_formats=formats, key_names=names,
            key_ids=tuple(self._keys_by_name[n].key_id for n in names
                          if n in self._keys_by_name),
            keyless_identities=identities,
            attestation_commit=commit,
            attestation_formats=tuple(sorted({f.format for f in att_findings})),
            index=verdict.media_type.endswith("index.v1+json")
            or verdict.media_type.endswith("list.v2+json"))
        return violations, ev, None

    def _reference_ok(self, finding: Finding, ref: ImageReference) -> bool:
        if self.config.docker_reference == "ignore" or finding.format != "legacy-sig":
            return True
        try:
            return parse_reference(finding.docker_reference or "").name == ref.name
        except ImageReferenceError:
            return False

    @staticmethod
    def _signing_findings(requirement: str, findings: Sequence[Finding]) -> list[Finding]:
        """What counts toward the signature threshold: signatures, and under `require:
        attestation` the attestations too (see `Requirement`)."""
        kinds = ("signature", "attestation") if requirement == "attestation" else ("signature",)
        return [f for f in findings if f.kind in kinds]

    def _judge_signatures(
        self, target: _Target, findings: Sequence[Finding], allowed: frozenset[str]
    ) -> list[Violation]:
        rule = target.rule
        label, image, digest = target.container.label, target.container.image, target.digest
        signatures = [*self._signing_findings(rule.require, findings),
                      *(f for f in findings if f.kind == "other" and f.problem is not None)]
        good = {k for f in signatures if f.verified for k in f.keys & allowed}
        if len(good) >= rule.threshold:
            return []
        if good:
            return [Violation(
                Reason.SIGNATURE_THRESHOLD,
                f"{label}: image {image} is signed by {len(good)} accepted signer(s) "
                f"({', '.join(sorted(good))}), {rule.threshold} required",
                f"sign {digest} with more of: {', '.join(sorted(allowed - good))}", label)]
        if not signatures:
            how = ("cosign sign --key <key>" if allowed & frozenset(self._keys_by_name)
                   else "cosign sign (keyless, in the CI job of an accepted identity)")
            return [Violation(
                Reason.SIGNATURE_MISSING,
                f"{label}: image {image} has no signature",
                f"sign it: {how} {target.ref.name}@{digest}", label)]
        refused = [(name, m) for f in signatures if f.bound and f.problem is None
                   for name, m in f.mismatches if name in allowed]
        if refused:
            # Verified certificates, none naming an accepted signer: say which field was wrong.
            detail = "; ".join(f"{name}: {m}" for name, m in refused[:3])
            return [Violation(
                _MISMATCH_REASONS[refused[0][1].field],
                f"{label}: image {image} is signed keyless, but not by an accepted identity "
                f"({detail})",
                "sign it from the workflow, repository and ref the rule's signers name, or fix "
                "the signer in the configuration", label)]
        wrong = [f for f in signatures if f.keys & allowed and not f.bound and f.problem is None]
        if wrong:
            other = ", ".join(sorted({d for f in wrong for d in f.signed_digests})[:3])
            return [Violation(
                Reason.SIGNATURE_WRONG_DIGEST,
                f"{label}: image {image} carries a signature for another digest ({other}), "
                f"not for {digest}",
                "sign the digest the pod spec names; signatures cannot be copied between "
                "images", label)]
        if any(f.keys and not f.keys & allowed for f in signatures):
            return [Violation(
                Reason.SIGNATURE_UNTRUSTED,
                f"{label}: image {image} is signed only by keys this rule does not accept "
                f"(accepted: {', '.join(sorted(allowed))})",
                "sign it with an accepted key, or add the key to the rule", label)]
        if any((f.key_hint_trusted and not f.keys) or f.problem for f in signatures):
            problems = "; ".join(sorted({f.problem for f in signatures if f.problem})[:2])
            return [Violation(
                Reason.SIGNATURE_INVALID,
                f"{label}: image {image} has a signature that does not verify"
                f"{': ' + problems if problems else ''}",
                "re-sign the image; the stored signature or payload is corrupt or tampered",
                label)]
        return [Violation(
            Reason.SIGNATURE_UNTRUSTED,
            f"{label}: image {image} has {len(signatures)} signature(s), none by a trusted key",
            f"sign it with one of: {', '.join(sorted(allowed))}", label)]

    def _judge_certificates(
        self,
        target: _Target,
        findings: Sequence[Finding],
        allowed: frozenset[str],
        *,
        git_sha: str | None,
        branch: str | None,
    ) -> list[Violation]:
        """A verified keyless certificate of an accepted signer must not contradict the
        workload's claims: its commit must be the git-sha, its ref the branch (each per rule:
        `check_certificate_commit`, `check_certificate_ref`)."""
        rule = target.rule
        if not (rule.check_certificate_commit or rule.check_certificate_ref):
            return []
        label, image = target.container.label, target.container.image
        found: dict[tuple[str, str | None], Mismatch] = {}
        for f in findings:
            if f.identity is None or not f.verified or not f.keys & allowed:
                continue
            for m in check_source(f.identity, git_sha=git_sha, branch=branch,
                                  check_commit=rule.check_certificate_commit,
                                  check_ref=rule.check_certificate_ref):
                found.setdefault((m.field, m.found), m)
        out: list[Violation] = []
        for m in found.values():
            if m.field == "commit":
                out.append(Violation(
                    Reason.CERTIFICATE_COMMIT_MISMATCH,
                    f"{label}: image {image} was signed by a certificate for commit {m.found}, "
                    f"not git-sha {git_sha}",
                    "deploy the image built from this commit, or fix the git-sha annotation",
                    label))
            else:
                out.append(Violation(
                    Reason.CERTIFICATE_REF_MISMATCH,
                    f"{label}: image {image} was signed by a certificate for ref {m.found}, not "
                    f"branch {branch}",
                    "deploy the image built from this branch, or fix the branch annotation",
                    label))
        return out

    def _judge_attestation(
        self,
        target: _Target,
        findings: Sequence[Finding],
        allowed: frozenset[str],
        *,
        git_sha: str | None,
        build_id: str | None,
        pipeline_url: str | None,
    ) -> tuple[list[Violation], list[Finding]]:
        rule = target.rule
        label, image, digest = target.container.label, target.container.image, target.digest
        attestations = [f for f in findings if f.kind == "attestation"]
        good = [f for f in attestations if f.verified and f.keys & allowed and f.provenance]
        if not good:
            if not attestations:
                return [Violation(
                    Reason.ATTESTATION_MISSING,
                    f"{label}: image {image} has no SLSA provenance attestation",
                    f"attest it: cosign attest --type slsaprovenance1 --key <key> "
                    f"{target.ref.name}@{digest}", label)], []
            trusted_elsewhere = [f for f in attestations if f.keys & allowed and not f.bound]
            why = ("is for another digest" if trusted_elsewhere
                   else "is not signed by an accepted key")
            return [Violation(
                Reason.ATTESTATION_INVALID,
                f"{label}: image {image}: its provenance attestation {why}",
                f"attest {digest} with one of: {', '.join(sorted(allowed))}", label)], []
        violations: list[Violation] = []
        candidates = good
        if rule.check_commit:
            attested = sorted({c for f in good if f.provenance for c in f.provenance.commits})
            if git_sha is None:
                candidates = []
                violations.append(Violation(
                    Reason.ATTESTATION_COMMIT_MISMATCH,
                    f"{label}: image {image} is attested as built from "
                    f"{', '.join(attested) or 'no commit'}, but the workload names no git-sha",
                    "set the git-sha annotation to the commit the image was built from", label))
            else:
                candidates = [f for f in good if f.provenance and f.provenance.has_commit(git_sha)]
                if not candidates:
                    violations.append(Violation(
                        Reason.ATTESTATION_COMMIT_MISMATCH,
                        f"{label}: image {image} was built from "
                        f"{', '.join(attested) or 'an unnamed commit'}, not from git-sha {git_sha}",
                        "deploy the image built from this commit, or fix the git-sha annotation",
                        label))
        if candidates and rule.check_build_id and (build_id is None or not any(
                f.provenance and f.provenance.has_build_id(build_id) for f in candidates)):
            attested_ids = sorted({b for f in candidates if f.provenance
                                   for b in f.provenance.build_ids})
            violations.append(Violation(
                Reason.ATTESTATION_BUILD_MISMATCH,
                f"{label}: image {image}: build-id {build_id!r} does not match the attested "
                f"build ({', '.join(attested_ids) or 'none'})",
                "set build-id to the CI run that built this image", label))
        if candidates and rule.check_pipeline_url and (pipeline_url is None or not any(
                f.provenance and f.provenance.has_pipeline_url(pipeline_url)
                for f in candidates)):
            urls = sorted({u for f in candidates if f.provenance
                           for u in f.provenance.invocation_urls})
            violations.append(Violation(
                Reason.ATTESTATION_BUILD_MISMATCH,
                f"{label}: image {image}: pipeline-url {pipeline_url!r} does not match the "
                f"attested run ({', '.join(urls) or 'none'})",
                "set pipeline-url to the CI run that built this image", label))
        return violations, candidates or good


_MISMATCH_REASONS: dict[MismatchField, Reason] = {
    "identity": Reason.SIGNER_IDENTITY_MISMATCH,
    "issuer": Reason.SIGNER_ISSUER_MISMATCH,
    "repository": Reason.SIGNER_REPOSITORY_MISMATCH,
    "ref": Reason.SIGNER_REF_MISMATCH,
    "commit": Reason.CERTIFICATE_COMMIT_MISMATCH,
    "workflow": Reason.SIGNER_CLAIM_MISMATCH,
    "workflow-sha": Reason.SIGNER_CLAIM_MISMATCH,
    "trigger": Reason.SIGNER_CLAIM_MISMATCH,
    "runner-environment": Reason.SIGNER_CLAIM_MISMATCH,
}
"""Which stable code a keyless signer's refused field gives."""
