"""The `current_date` platform tool (SPEC §2.1)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tools.base import (
    FunctionDefinition,
    InvalidArguments,
    JsonObject,
    ToolContext,
    ToolOutput,
    ToolResult,
)

__all__ = ["CurrentDateTool", "iso_millis"]

DEFINITION = FunctionDefinition(
    name="current_date",
    description=(
        "Returns the current date and time in UTC (ISO 8601, millisecond precision); "
        "with an IANA `timezone`, also the local time there."
    ),
    parameters={
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "description": "IANA time zone name, for example 'Europe/Amsterdam'.",
            }
        },
    },
)


def iso_millis(moment: datetime) -> str:
    """ISO 8601 with milliseconds; UTC is written with `Z`."""
    text = moment.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if moment.tzinfo is UTC else text


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArguments(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Amsterdam'",
            param="timezone",
        ) from None


class CurrentDateTool:
    """Tells the model what time it is."""

    def __init__(self, clock: type[datetime] = datetime) -> None:
        self._clock = clock

    @property
    def definition(self) -> FunctionDefinition:
        return DEFINITION

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        now = self._clock.now(UTC)
        result: JsonObject = {"currentDate": iso_millis(now)}
        timezone = arguments.get("timezone")
        if isinstance(timezone, str) and timezone:
            zone = _zone(timezone)
            result["localDate"] = iso_millis(now.astimezone(zone))
            result["timezone"] = zone.key
        return ToolResult(result)
