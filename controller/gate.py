"""The gate guards itself: watch the controller's own ValidatingWebhookConfiguration.

Admission webhooks are never called for webhook configurations, so nothing else stops someone
with RBAC on `validatingwebhookconfigurations` from switching the gate off: deleting the
configuration, adding an `objectSelector`, setting `failurePolicy: Ignore` with a dead URL.
`GateGuard` reads the configuration every `interval` seconds and compares it with the expected
one. A deletion or a drift is

1. recorded in the ledger as a `gate-changed` entry (what changed, when, the resourceVersion);
2. restored, when the controller owns the configuration;
3. made visible: a Warning Event and the `provenance_gate_intact` gauge.

The expected configuration is given whole (the chart renders it from the same values as the
object it installs), except the caBundle, which cert-manager's CA injector or self-managed TLS
fills in after install. With self-managed TLS the expected caBundle is the one in its Secret
(`ca_source`), so rotations are not drift. Otherwise, when the expected configuration has none,
the first caBundle observed is the expected one (trust on first use) and a later change to it
is drift.

Polling, rather than a watch, keeps this module a few GETs with no stream to resume; at the
default two seconds a change is on record before most people would have noticed it.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from controller import metrics
from controller.errors import ProvenanceError
from controller.events import post_event
from controller.kube import KubeApi, KubeApiError
from controller.ledger.models import GateChangedEntry

log = logging.getLogger("provenance.gate")

VWC_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"

COMPARED = ("rules", "failurePolicy", "matchPolicy", "sideEffects", "timeoutSeconds",
            "namespaceSelector", "objectSelector", "matchConditions", "clientConfig",
            "caBundle", "admissionReviewVersions")
"""The fields of each webhook that decide what the API server sends and what it does when the
controller does not answer; any difference in one of them is drift."""

_DEFAULTS: dict[str, Any] = {
    # What the API server fills in for a v1 webhook that leaves the field out.
    "failurePolicy": "Fail", "matchPolicy": "Equivalent", "timeoutSeconds": 10,
    "namespaceSelector": {}, "objectSelector": {}, "matchConditions": [],
}

Recorder = Callable[[GateChangedEntry], Awaitable[object]]
"""Appends an entry to the ledger (`Ledger.append`)."""
CaSource = Callable[[], Awaitable[str | None]]
"""The caBundle the configuration should carry now (self-managed TLS knows it)."""


class GateError(ProvenanceError):
    """The expected webhook configuration is unusable."""


@dataclass(frozen=True)
class GateSettings:
    """What the guard protects and how."""

    expected: dict[str, Any]
    """The ValidatingWebhookConfiguration as it should be (caBundle optional, see module)."""
    restore: bool = True
    """Restore the expected configuration after a deletion or drift (the controller owns it).
    Off: record and report only, for a configuration another tool owns."""
    interval: float = 2.0
    """Seconds between reads of the configuration."""
    event_namespace: str = "default"
    """Where Events about the (cluster-scoped) configuration go: the API server accepts them
    only in `default` or `kube-system`."""

    @property
    def name(self) -> str:
        name = (self.expected.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise GateError("the expected webhook configuration has no metadata.name")
        return name


def load_expected(text: str) -> dict[str, Any]:
    """Parse the expected configuration (JSON or YAML) and check it is one."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GateError(f"the expected webhook configuration does not parse: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != "ValidatingWebhookConfiguration" \
            or not isinstance(data.get("webhooks"), list) or not data["webhooks"]:
        raise GateError("the expected webhook configuration is not a "
                        "ValidatingWebhookConfiguration with webhooks")
    return data


def _canonical(value: Any) -> Any:
    """Order-insensitive form: rules, resource lists and selector values are sets."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _facts(hook: dict[str, Any]) -> dict[str, Any]:
    """A webhook's compared fields, with the API server's defaults filled in."""
    client = copy.deepcopy(hook.get("clientConfig") or {})
    ca = client.pop("caBundle", None)
    service = client.get("service")
    if isinstance(service, dict):
        service.setdefault("port", 443)
    rules = [{**r, "scope": r.get("scope", "*")} for r in hook.get("rules") or []]
    facts = {k: hook.get(k, _DEFAULTS.get(k)) for k in COMPARED}
    facts.update(rules=rules, clientConfig=client, caBundle=ca)
    for key, default in _DEFAULTS.items():
        if facts[key] is None:
            facts[key] = default
    return {k: _canonical(v) for k, v in facts.items()}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 300 else text[:297] + "..."


def differences(expected: dict[str, Any], observed: dict[str, Any],
                ca_bundles: dict[str, str]) -> list[str]:
    """Every compared field of every webhook that differs, one line each.

    `ca_bundles` holds the expected caBundle per webhook name when the expected configuration
    has none of its own (pinned on first sight).
    """
    want = {h.get("name"): h for h in expected.get("webhooks") or []}
    have = {h.get("name"): h for h in observed.get("webhooks") or []}
    found: list[str] = []
    for name in sorted(set(want) | set(have), key=str):
        if name not in have:
            found.append(f"{name}: missing")
            continue
        if name not in want:
            found.append(f"{name}: not expected (added)")
            continue
        w, h = _facts(want[name]), _facts(have[name])
        if w["caBundle"] is None:
            w["caBundle"] = ca_bundles.get(str(name), h["caBundle"])
        for key in COMPARED:
            if w[key] != h[key]:
                shown = ("<pinned>", "<changed>") if key == "caBundle" else (
                    _short(w[key]), _short(h[key]))
                found.append(f"{name}.{key}: expected {shown[0]}, found {shown[1]}")
    return found


@dataclass
class GateStatus:
    """The result of one look at the configuration."""

    intact: bool
    change: str | None = None
    """`deleted` or `drifted` when this look found a change not seen before."""
    differences: tuple[str, ...] = ()
    restored: bool = False


class GateGuard:
    """Watches one ValidatingWebhookConfiguration; `run()` until cancelled."""

    def __init__(self, api: KubeApi, settings: GateSettings, *,
                 record: Recorder | None, ca_source: CaSource | None = None) -> None:
        self.api = api
        self._ca_source = ca_source
        self.settings = settings
        self.name = settings.name
        self._record = record
        self._ca_bundles: dict[str, str] = {}
        for hook in settings.expected["webhooks"]:
            ca = (hook.get("clientConfig") or {}).get("caBundle")
            if isinstance(ca, str) and ca:
                self._ca_bundles[str(hook.get("name"))] = ca
        self._seen = False
        """The configuration was observed at least once (caBundles pinned)."""
        self._uid = ""
        """The uid of the configuration object last observed."""
        self._reported: tuple[str, str] | None = None
        """The last change reported and left in place (not restored): reported once."""
        self._recorded: tuple[str, str] | None = None
        """The last change put on record: a restore that keeps failing is recorded once."""
        self._unrecorded: list[GateChangedEntry] = []
        """Entries the ledger could not take yet; retried on every look (bounded)."""

    async def run(self) -> None:
        """Look at the configuration every `interval` seconds until cancelled."""
        while True:
            try:
                await self.check()
            except (KubeApiError, GateError) as exc:
                # The API server is unreachable or refuses: not a change, and not intact either
                # as far as anyone can tell.
                metrics.gate_intact.set(0)
                log.warning("cannot check the webhook configuration %s: %s", self.name, exc)
            await asyncio.sleep(self.settings.interval)

    def _can_create(self) -> bool:
        return all(str(h.get("name")) in self._ca_bundles for h in self.settings.expected[
            "webhooks"])

    async def check(self) -> GateStatus:
        """One look: compare, then record, restore and report what changed."""
        await self._flush()
        if self._ca_source is not None and (bundle := await self._ca_source()):
            # Self-managed TLS rotates the CA: its Secret, not the first sight, is expected.
            for hook in self.settings.expected["webhooks"]:
                self._ca_bundles[str(hook.get("name"))] = bundle
        try:
            observed: dict[str, Any] | None = await self.api.request(
                "GET", f"{VWC_PATH}/{self.name}")
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            observed = None
        if observed is None:
            if not self._seen and not self._can_create():
                # Not installed yet (the chart or `make dev` applies it after the controller
                # starts), and its caBundle is not known: nothing to restore from.
                metrics.gate_intact.set(0)
                return GateStatus(intact=False)
            return await self._changed("deleted", (), None)
        self._uid = str(observed.get("metadata", {}).get("uid", ""))
        diffs = differences(self.settings.expected, observed, self._ca_bundles)
        if not self._seen:
            self._pin(observed)
            self._seen = True
        if not diffs:
            self._reported = self._recorded = None
            metrics.record_gate(intact=True)
            return GateStatus(intact=True)
        return await self._changed("drifted", tuple(diffs), observed)

    def _pin(self, observed: dict[str, Any]) -> None:
        for hook in observed.get("webhooks") or []:
            ca = (hook.get("clientConfig") or {}).get("caBundle")
            name = str(hook.get("name"))
            if name not in self._ca_bundles and isinstance(ca, str) and ca:
                self._ca_bundles[name] = ca

    async def _changed(self, change: str, diffs: tuple[str, ...],
                       observed: dict[str, Any] | None) -> GateStatus:
        rv = str((observed or {}).get("metadata", {}).get("resourceVersion", ""))
        restore = self.settings.restore and (observed is not None or self._can_create())
        if not restore and self._reported == (change, rv):
            metrics.gate_intact.set(0)
            return GateStatus(intact=False)
        entry = GateChangedEntry(
            configuration=self.name, change="deleted" if change == "deleted" else "drifted",
            differences=tuple(d[:4096] for d in diffs[:64]), observed_at=_now(),
            object_uid=self._uid, resource_version=rv, restored=restore)
        # On record first: if restoring fails, or the process dies now, the change is known.
        if self._recorded != (change, rv):
            self._recorded = (change, rv)
            await self._append(entry)
        restored = False
        if restore:
            try:
                await self._restore(observed)
                restored = True
            except KubeApiError as exc:
                if exc.status == 409:
                    # Changed again meanwhile, or another replica restored it first: the next
                    # look decides.
                    log.info("the webhook configuration %s changed while being restored",
                             self.name)
                    metrics.gate_intact.set(0)
                    return GateStatus(intact=False, change=change, differences=diffs)
                log.error("could not restore the webhook configuration %s: %s", self.name, exc)
        else:
            self._reported = (change, rv)
        outcome = metrics.GATE_RESTORED if restored else metrics.GATE_REPORTED
        metrics.record_gate(intact=restored, outcome=outcome)
        what = "deleted" if change == "deleted" else "changed: " + "; ".join(diffs)
        message = (f"ValidatingWebhookConfiguration {self.name} was {what}"
                   f"{'; restored' if restored else '; the gate may be off'}")
        log.warning(message, extra={"gate_change": change, "differences": list(diffs),
                                    "resource_version": rv, "restored": restored})
        await self._event(observed, reason="GateDeleted" if change == "deleted"
                          else "GateDrifted", message=message)
        return GateStatus(intact=restored, change=change, differences=diffs, restored=restored)

    async def _append(self, entry: GateChangedEntry) -> None:
        if self._record is None:
            return
        try:
            await self._record(entry)
        except ProvenanceError as exc:
            log.error("could not record the gate change in the ledger (will retry): %s", exc)
            self._unrecorded = [*self._unrecorded, entry][-64:]

    async def _flush(self) -> None:
        pending, self._unrecorded = self._unrecorded, []
        for entry in pending:
            await self._append(entry)

    def _desired(self) -> dict[str, Any]:
        desired = copy.deepcopy(self.settings.expected)
        for hook in desired["webhooks"]:
            client = hook.setdefault("clientConfig", {})
            ca = self._ca_bundles.get(str(hook.get("name")))
            if ca and not client.get("caBundle"):
                client["caBundle"] = ca
        return desired

    async def _restore(self, observed: dict[str, Any] | None) -> None:
        desired = self._desired()
        if observed is None:
            desired["metadata"] = {k: v for k, v in desired["metadata"].items()
                                   if k in ("name", "labels", "annotations")}
            await self.api.request("POST", VWC_PATH, body=desired)
            return
        meta = observed["metadata"]
        # Keep the live metadata (labels and annotations Helm and GitOps tools track); the
        # resourceVersion makes the write fail if someone changed it again meanwhile.
        desired["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations",
                                                    "resourceVersion") if k in meta}
        await self.api.request("PUT", f"{VWC_PATH}/{self.name}", body=desired)

    async def _event(self, observed: dict[str, Any] | None, *, reason: str,
                     message: str) -> None:
        # The ledger entry and the metric carry the change; the Event is for people.
        involved: dict[str, Any] = {"apiVersion": "admissionregistration.k8s.io/v1",
                                    "kind": "ValidatingWebhookConfiguration", "name": self.name}
        if observed is not None:
            involved["uid"] = observed["metadata"].get("uid", "")
        await post_event(self.api, namespace=self.settings.event_namespace, involved=involved,
                         reason=reason, message=message)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
