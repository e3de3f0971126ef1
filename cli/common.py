"""What several commands share: the task client, parameter types, JSON arguments."""
from __future__ import annotations

import json
from typing import Any

import click

from piano_dist.core.types import Priority, TaskStatus
from piano_dist.keys import Keys

from .connect import connection
from .errors import CliError

STATUS_CHOICE = click.Choice([s.value for s in TaskStatus])
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def client():
    from piano_dist.core.client import TaskClient

    return TaskClient(connection(), Keys())


class PriorityType(click.ParamType):
    """A priority as in the API: 1-5 or a level name, any case."""

    name = "priority"

    def get_metavar(self, param, ctx=None) -> str:
        return "[1-5|" + "|".join(p.name.lower() for p in Priority) + "]"

    def convert(self, value: Any, param, ctx) -> Priority:
        if isinstance(value, Priority):
            return value
        text = str(value).strip()
        try:
            return Priority.parse(int(text) if text.lstrip("-").isdigit() else text)
        except ValueError:
            self.fail(f"{value!r} is not a priority: use 1-5 or one of "
                      f"{', '.join(p.name.lower() for p in Priority)}", param, ctx)


PRIORITY = PriorityType()


def json_arg(text: str | None, what: str, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise CliError(f"{what} must be a JSON {'array' if kind is list else 'object'}, not {type(value).__name__}")
    return value
