"""The CI side's one error tree: everything `stamp` and `check` refuse raises a `StampError`.

The console handlers turn it into a message on stderr and exit code 2; policy violations found by
`check` are not errors (they are the command's output and exit code 1).
"""

from __future__ import annotations

from controller.errors import ProvenanceError


class StampError(ProvenanceError):
    """Base of every refusal of `kubectl-provenance stamp` and `check`."""


class ManifestError(StampError):
    """A manifest cannot be read or parsed; the message names the file and the document."""

    def __init__(self, source: str, message: str, *, document: int | None = None,
                 line: int | None = None) -> None:
        where = source
        if document is not None:
            where += f": document {document}"
            if line is not None:
                where += f" (line {line})"
        super().__init__(f"{where}: {message}")
        self.source = source
        """The file name, or `<stdin>`."""
        self.document = document
        """1-based index of the document in the file, when one is concerned."""
        self.line = line
        """1-based line where that document starts."""


class BuildInfoError(StampError):
    """The provenance values are missing or unacceptable (short SHA, dirty tree, no actor)."""


class PinError(StampError):
    """An image tag could not be resolved to a digest through the registry."""
