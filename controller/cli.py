"""The console scripts.

- `provenance-controller`: the operator (admission webhook, ledger writer, reconciler).
- `kubectl-provenance`: for people and pipelines; the name makes it a kubectl plugin
  (`kubectl provenance ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from controller import __version__
from controller.config import CONFIG_ENV, load_config
from controller.errors import ConfigError, ProvenanceError


def _operator_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="provenance-controller",
        description="Admission controller that gates Deployments on provenance.")
    p.add_argument("--config", help=f"configuration file (default: ${CONFIG_ENV}, else built-in "
                   "defaults)")
    p.add_argument("--kubeconfig", help="kubeconfig to use instead of the in-cluster account")
    p.add_argument("--webhook-host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    p.add_argument("--webhook-port", type=int, default=9443)
    p.add_argument("--tls-cert", type=Path, help="serving certificate (PEM, chain)")
    p.add_argument("--tls-key", type=Path, help="serving key (PEM)")
    p.add_argument("--client-ca", type=Path,
                   help="require TLS client certificates from this CA (the API server's "
                   "webhook client certificate); rejects reviews from anyone else")
    p.add_argument("--timeout-seconds", type=float, default=10.0,
                   help="the webhook configuration's timeoutSeconds; reviews answer inside it")
    p.add_argument("--sweep-interval", type=float, default=30.0,
                   help="seconds between ledger sweeps (never-persisted admissions, "
                   "unadmitted workloads)")
    p.add_argument("--scan-interval", type=float, default=None,
                   help="seconds between the scans behind provenance_unrecorded_workloads, "
                   "which list every workload (0: no scan; default: 300)")
    p.add_argument("--health-port", type=int, default=8080,
                   help="port for /livez, /readyz, /metrics and /version")
    tls = p.add_argument_group("self-managed TLS (instead of cert-manager)")
    tls.add_argument("--tls-self-managed", action="store_true",
                     help="issue and rotate the serving certificate in a Secret, and keep the "
                     "webhook configuration's caBundle current")
    tls.add_argument("--tls-secret", help="the Secret holding the certificate")
    tls.add_argument("--webhook-config", help="the ValidatingWebhookConfiguration to patch")
    tls.add_argument("--service", help="the webhook Service (names the certificate)")
    tls.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE"),
                     help="namespace of the Service and Secret (default: $POD_NAMESPACE)")
    gate = p.add_argument_group("the gate guards itself (controller.gate)")
    gate.add_argument("--gate-expected", type=Path,
                      help="the ValidatingWebhookConfiguration as it should be (YAML or JSON); "
                      "the controller watches the live one and records any deletion or drift")
    gate.add_argument("--gate-restore", action=argparse.BooleanOptionalAction, default=True,
                      help="restore the expected configuration after a deletion or drift "
                      "(default); --no-gate-restore only records and reports")
    gate.add_argument("--gate-interval", type=float, default=2.0,
                      help="seconds between checks of the webhook configuration")
    gate.add_argument("--gate-event-namespace", default="default",
                      help="namespace for Events about the configuration; the API server "
                      "accepts Events about cluster-scoped objects only in default (the "
                      "default) and kube-system")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def operator_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `provenance-controller`."""
    parser = _operator_parser()
    args = parser.parse_args(argv)
    from controller.observability import configure_logging

    configure_logging(args.log_level.upper())
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"provenance-controller: {exc}", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("provenance-controller: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.kubeconfig:
        # kopf's login reads the kubeconfig through the kubernetes client, which honours this.
        os.environ["KUBECONFIG"] = args.kubeconfig
    from controller.status import SCAN_INTERVAL_SECONDS
    from controller.webhook import ServerOptions, run_operator

    self_managed = None
    if args.tls_self_managed:
        missing = [f"--{n.replace('_', '-')}" for n in
                   ("tls_cert", "tls_secret", "webhook_config", "service", "namespace")
                   if not getattr(args, n)]
        if missing:
            print(f"provenance-controller: --tls-self-managed needs {', '.join(missing)}",
                  file=sys.stderr)
            return 2
        from controller.tls import SelfManagedTls

        self_managed = SelfManagedTls.from_environ(
            namespace=args.namespace, secret=args.tls_secret, service=args.service,
            webhook_config=args.webhook_config, cert_dir=Path(args.tls_cert).parent)
    gate = None
    if args.gate_expected is not None:
        from controller.gate import GateError, GateSettings, load_expected

        try:
            expected = load_expected(args.gate_expected.read_text())
            gate = GateSettings(expected=expected, restore=args.gate_restore,
                                interval=args.gate_interval,
                                event_namespace=args.gate_event_namespace)
            if args.webhook_config and gate.name != args.webhook_config:
                raise GateError(f"--gate-expected names {gate.name}, --webhook-config "
                                f"{args.webhook_config}")
        except (OSError, GateError) as exc:
            print(f"provenance-controller: {exc}", file=sys.stderr)
            return 2
    options = ServerOptions(
        host=args.webhook_host, port=args.webhook_port, cert_file=args.tls_cert,
        key_file=args.tls_key, health_port=args.health_port, self_managed_tls=self_managed,
        timeout_seconds=args.timeout_seconds, client_ca=args.client_ca, gate=gate,
        sweep_interval=args.sweep_interval,
        scan_interval=SCAN_INTERVAL_SECONDS if args.scan_interval is None else args.scan_interval)
    # Ctrl-C in a terminal is a normal way to stop; kopf handles SIGTERM itself.
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_operator(config, options, kubeconfig=args.kubeconfig))
    except ProvenanceError as exc:
        # Keys that do not load, an unreachable API server at start-up: stop with the reason.
        print(f"provenance-controller: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    from controller.certs import write_webhook_certs

    ca, cert, key = write_webhook_certs(Path(args.out), hosts=args.host)
    print(f"wrote {ca}, {cert} and {key}")
    return 0


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubectl-provenance",
        description="Provenance tooling for people and pipelines.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    certs = sub.add_parser("certs", help="generate a CA and webhook serving certificate")
    certs.add_argument("--out", default=".dev/certs", help="directory to write into")
    certs.add_argument("--host", action="append", default=None,
                       help="DNS name or IP for the certificate (repeatable)")
    certs.set_defaults(func=_cmd_certs)
    from controller.ledger.cli import add_subcommands as add_ledger
    from controller.signatures.cli import add_subcommands as add_verify_bundle
    from controller.stamp.command import add_subcommands as add_stamp_and_check
    from controller.status import add_subcommand as add_status

    add_stamp_and_check(sub)
    add_ledger(sub)
    add_status(sub)
    add_verify_bundle(sub)
    _add_examples(p)
    return p


EXAMPLES: dict[str, str] = {
    "certs": "kubectl-provenance certs --out .dev/certs --host webhook.provenance-system.svc",
    "stamp": "kubectl-provenance stamp --pin-digests -i -f k8s/deploy.yaml\n"
             "  kubectl-provenance stamp -R -i k8s/\n"
             "  helm template app chart/ | kubectl-provenance stamp -f - | kubectl apply -f -",
    "check": "kubectl-provenance check --config provenance.yaml --as ci-deployer -f deploy.yaml\n"
             "  kubectl-provenance check -R k8s/ -o github",
    "ledger": "kubectl-provenance ledger verify --checkpoint saved.json\n"
              "  kubectl-provenance ledger history sts/db -n shop",
    "ledger verify": "kubectl-provenance ledger verify --save-checkpoint saved.json\n"
                     "  kubectl-provenance ledger verify --checkpoint saved.json "
                     "--public-key ledger.pub",
    "ledger history": "kubectl-provenance ledger history deploy/checkout -n shop\n"
                      "  kubectl-provenance ledger history pod/debug-1 -n shop -o json",
    "ledger rollback-target": "kubectl-provenance ledger rollback-target deploy/checkout -n shop",
    "ledger export": "kubectl-provenance ledger export --file ledger.jsonl",
    "ledger prune": "kubectl-provenance ledger prune --keep 8 --export-file archive.jsonl",
    "ledger recover": "kubectl-provenance ledger recover --dry-run --reason \"INC-42: restored "
                      "from backup\"\n"
                      "  kubectl-provenance ledger recover --reason \"INC-42: restored from "
                      "backup\"",
    "rollback": "kubectl-provenance rollback deploy/checkout -n shop --dry-run\n"
                "  kubectl-provenance rollback sts/db -n shop --to-seq 412\n"
                "  kubectl-provenance rollback deploy/web -n shop --to-seq audit-lane1:87",
    "status": "kubectl-provenance status -A\n"
              "  kubectl-provenance status -n shop -o json\n"
              "  kubectl-provenance status -A --exclude-exempt --fail-on-unrecorded --quiet",
    "verify-bundle": "kubectl-provenance verify-bundle --bundle app.sigstore.json "
                     "--certificate-identity https://github.com/org/app/.github/workflows/"
                     "release.yml@refs/tags/v1.0.0 --certificate-oidc-issuer "
                     "https://token.actions.githubusercontent.com app.tar.gz",
}
"""One or more example lines per subcommand, shown under `examples:` in its --help."""


def _subcommands(parser: argparse.ArgumentParser,
                 prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse exposes subcommands only through its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                full = f"{prefix}{name}"
                yield full, child
                yield from _subcommands(child, f"{full} ")


def _add_examples(parser: argparse.ArgumentParser) -> None:
    for name, child in _subcommands(parser):
        example = EXAMPLES.get(name)
        if example is None:
            continue
        child.epilog = f"examples:\n  {example}"
        child.formatter_class = argparse.RawDescriptionHelpFormatter


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `kubectl-provenance`."""
    parser = _main_parser()
    if not (sys.argv[1:] if argv is None else list(argv)):
        # As kubectl does: no arguments prints what there is to run.
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if getattr(args, "host", "unset") is None:
        args.host = ["127.0.0.1", "localhost"]
    # The ledger commands name their handler `handler` (each runs its own event loop).
    func = getattr(args, "func", None) or args.handler
    try:
        return int(func(args))
    except ConfigError as exc:
        print(f"kubectl-provenance: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
