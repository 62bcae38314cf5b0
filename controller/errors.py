"""The project's error trees, one base per concern.

Two kinds of failure are kept apart, as kopf does:
- the *webhook request* is bad (a malformed AdmissionReview): the API server gets an HTTP 400;
- the *API operation* is bad (a Deployment without provenance): the user gets a denial.
Policy violations are not exceptions at all: they are data (`policy.Violation`), because a decision
must list every one of them at once.
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ProvenanceError):
    """The configuration file is missing, unreadable or invalid; start-up must stop."""


class ReviewError(ProvenanceError):
    """The AdmissionReview itself is malformed: answered with HTTP 400, never with a verdict."""


class ImageReferenceError(ProvenanceError, ValueError):
    """An image reference does not follow the distribution reference grammar."""
