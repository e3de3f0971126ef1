"""JSON records: dicts that also read as attributes.

Task results travel as JSON, so what a module method returns must be JSON as-is. A
record is a plain ``dict`` subclass (``json.dumps`` takes it unchanged, and a worker
returns it to the submitter as a dict) whose fields also read as attributes, so the
original API's ``result.sensor_type`` / ``metrics.total_tasks_processed`` keep working
locally (docs/compat.md).
"""
from __future__ import annotations

from typing import Any


class JsonRecord(dict):
    #: field names, in order; positional construction follows it
    fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any):
        if len(args) > len(self.fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self.fields)} positional fields")
        super().__init__(zip(self.fields, args))
        super().update(kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy (what a worker's JSON result decodes to)."""
        return dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JsonRecord":
        return cls(**data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class PerceptionResult(JsonRecord):
    """One sensor's percept. ``sensor_type`` is the SensorType's value ("social", …)."""

    fields = ("task_id", "sensor_type", "processed_data", "confidence", "processing_time",
              "metadata", "timestamp")


class PerceptionMetrics(JsonRecord):
    fields = ("total_tasks_processed", "average_processing_time", "tasks_by_sensor_type",
              "concurrent_processing_peak", "cache_hit_rate", "error_rate")
