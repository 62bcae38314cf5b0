"""provenance-controller: admit a Deployment only when it can prove where it came from."""

__version__ = "0.1.0"
