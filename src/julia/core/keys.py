"""Every Redis key Júlia writes is named here, under one namespace, with its TTL.

Redis holds only what is fast and disposable; Postgres is the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builder bound to a namespace (``JULIA_REDIS_NAMESPACE``)."""

    namespace: str

    def key(self, *parts: object) -> str:
        return ":".join([self.namespace, *(str(p) for p in parts)])

    def channel(self, *parts: object) -> str:
        """A pub/sub channel of this namespace: a name, not a key (nothing is stored)."""
        return self.key(*parts)

    def pattern(self) -> str:
        """Glob matching every key of this namespace (tests and resets)."""
        return f"{self.namespace}:*"
