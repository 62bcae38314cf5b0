"""`kubectl-provenance verify-bundle`: the verify half of the sigstore-conformance CLI protocol.

```
kubectl-provenance verify-bundle --bundle F \\
    (--certificate-identity I --certificate-oidc-issuer U | --key K) \\
    [--trusted-root T] FILE_OR_DIGEST
```

It verifies offline, exactly as an admission does (`controller.signatures.bundle`); without
`--trusted-root` it uses the embedded public-good root. FILE_OR_DIGEST is the artifact's path or
`sha256:<hex>`. Exit codes: 0 verified, 1 not verified (the reason on stderr), 2 usage errors.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from typing import TYPE_CHECKING, Any

from controller.signatures.errors import VerificationError

if TYPE_CHECKING:
    from controller.signatures.keyless import SignerPolicy
    from controller.signatures.keys import PublicKey
    from controller.signatures.trust import TrustRoot

_DIGEST_ARG = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


def add_subcommands(subparsers: Any) -> None:
    """Register `verify-bundle` on the `kubectl-provenance` parser."""
    p = subparsers.add_parser(
        "verify-bundle", help="verify a Sigstore bundle offline (sigstore-conformance protocol)",
        description="Verify a Sigstore bundle for an artifact or digest, offline.")
    p.add_argument("--bundle", required=True, help="the Sigstore bundle (JSON)")
    p.add_argument("--certificate-identity", help="the signer's certificate identity, exactly")
    p.add_argument("--certificate-oidc-issuer", help="the signer's OIDC issuer, exactly")
    p.add_argument("--key", help="a PEM public key, for key-signed bundles")
    p.add_argument("--trusted-root", help="a trusted_root.json (default: the embedded "
                   "public-good production root)")
    p.add_argument("file_or_digest", metavar="FILE_OR_DIGEST",
                   help="the artifact, or its digest as sha256:<hex>")
    p.set_defaults(func=_cmd_verify_bundle)


def _digest_of(arg: str) -> str:
    if _DIGEST_ARG.fullmatch(arg):
        return arg.lower()
    sha = hashlib.sha256()
    with open(arg, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def _cmd_verify_bundle(args: argparse.Namespace) -> int:
    # Imported here: sigstore-python takes half a second to import, which every other
    # kubectl-provenance command would otherwise pay.
    from controller.signatures.bundle import MAX_BUNDLE_BYTES, verify_bundle
    from controller.signatures.keyless import KeylessSigner
    from controller.signatures.keys import load_public_key
    from controller.signatures.trust import load_trust_root_file, public_good

    keyless = args.certificate_identity is not None or args.certificate_oidc_issuer is not None
    if keyless == (args.key is not None) or (keyless and not (
            args.certificate_identity and args.certificate_oidc_issuer)):
        print("kubectl-provenance verify-bundle: give --key, or both --certificate-identity and "
              "--certificate-oidc-issuer", file=sys.stderr)
        return 2
    try:
        signer: SignerPolicy | PublicKey
        if args.key is not None:
            with open(args.key, "rb") as fh:
                signer = load_public_key(fh.read(64 * 1024), name="key")
        else:
            signer = KeylessSigner(name="cli", issuer=args.certificate_oidc_issuer,
                                   subject=args.certificate_identity).policy()
        root: TrustRoot = (load_trust_root_file(args.trusted_root, name="cli")
                           if args.trusted_root else public_good())
        with open(args.bundle, "rb") as fh:
            bundle = fh.read(MAX_BUNDLE_BYTES + 1)
        digest = _digest_of(args.file_or_digest)
        verified = verify_bundle(bundle, digest=digest, signer=signer, trust_root=root)
    except (VerificationError, OSError, ValueError) as exc:
        print(f"FAIL: {args.file_or_digest}: {exc}", file=sys.stderr)
        return 1
    times = ", ".join(f"{t.source} {t.at.isoformat()}" for t in verified.times)
    print(f"OK: {args.file_or_digest} ({verified.digest}), {verified.log_entry_kind} at log "
          f"index {verified.log_index}, signed at {times}")
    return 0
