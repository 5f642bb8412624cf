"""A rewrite request: in ``prompt`` (with ``{}`` for ``subject``), make ``target_new`` the continuation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from neuronmap.edit.prompts import check_template
from neuronmap.errors import NeuronmapError


@dataclass(frozen=True)
class Request:
    prompt: str  # e.g. "{} is located in the city of"
    subject: str  # e.g. "Eiffel Tower"
    target_new: str  # e.g. "Rome"
    target_true: str | None = None  # the fact being replaced, when known (for reports and checks)

    def validate(self) -> Request:
        """Raise a clear ``NeuronmapError`` for a request ROME cannot carry out; return self."""
        check_template(self.prompt, self.subject)
        if not isinstance(self.target_new, str) or not self.target_new.strip():
            raise NeuronmapError("the new target is empty")
        if self.target_true is not None and self.target_true.strip() == self.target_new.strip():
            raise NeuronmapError(f"the new target {self.target_new!r} is the true target: nothing to edit")
        return self

    @property
    def text(self) -> str:
        return self.prompt.replace("{}", self.subject, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Request:
        """From our own dict or a CounterFact ``requested_rewrite``."""
        if "requested_rewrite" in data:
            data = data["requested_rewrite"]
        try:
            new, true = data["target_new"], data.get("target_true")
            return cls(
                prompt=data["prompt"],
                subject=data["subject"],
                target_new=new["str"] if isinstance(new, dict) else new,
                target_true=true["str"] if isinstance(true, dict) else true,
            )
        except (KeyError, TypeError) as exc:
            raise NeuronmapError(f"not a rewrite request: missing {exc}") from None
