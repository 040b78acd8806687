"""Errors of the feature store: all are ``ValueError``\\ s with an actionable message."""

from __future__ import annotations


class FeatureStoreError(ValueError):
    """Raised when a feature store cannot be used as asked."""


class IncompleteStoreError(FeatureStoreError):
    """Raised when reading a store whose extraction has not finished."""


class CorruptShardError(FeatureStoreError):
    """Raised when a shard file is missing, truncated, or fails its checksum."""


class StoreMismatchError(FeatureStoreError):
    """Raised when resuming into a store built with different settings."""
