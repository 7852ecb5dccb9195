"""Topics: a namespace, attributes and a version. Their string form is what gets signed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Topic:
    """A routing/subscription label, e.g. ``Topic("market.fx", {"pair": "EURUSD"})``.

    ``str(topic)`` is ``"{namespace}[k=v,...]v{version}"`` with keys sorted; it is
    the form that message signatures and discovery compare.
    """

    namespace: str
    attributes: dict[str, Any] = field(default_factory=dict)
    version: str = "1.0"

    def __str__(self) -> str:
        attrs = ",".join(f"{k}={self.attributes[k]}" for k in sorted(self.attributes))
        return f"{self.namespace}[{attrs}]v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "attributes": dict(self.attributes), "version": self.version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topic:
        return cls(**data)


__all__ = ["Topic"]
