"""The CI side: `kubectl-provenance stamp` writes provenance annotations into manifests.

Public surface: `collect` and `detect_ci` (where the values come from), `read_manifests` and
`Manifest` (byte-stable multi-document IO), `stamp_document` (the edit itself), `pin_slots`
(`--pin-digests`), `add_subcommands` (the console wiring for `stamp` and `check`), and the
`StampError` tree.
"""

from controller.stamp.ci import BuildInfo, collect, detect_ci, read_git
from controller.stamp.errors import BuildInfoError, ManifestError, PinError, StampError
from controller.stamp.manifests import Document, Manifest, read_manifests, split_documents
from controller.stamp.stamping import image_slots, is_workload, stamp_document, workloads

__all__ = [
    "BuildInfo",
    "BuildInfoError",
    "Document",
    "Manifest",
    "ManifestError",
    "PinError",
    "StampError",
    "collect",
    "detect_ci",
    "image_slots",
    "is_workload",
    "read_git",
    "read_manifests",
    "split_documents",
    "stamp_document",
    "workloads",
]
