"""The feedback event contract (the Event Hubs body), validated one event at a time.

Validation runs in pydantic-core straight from the raw bytes (`model_validate_json`): no
intermediate `json.loads`, id patterns compiled once in Rust. That is most of the cost of a
batch, so the Python-level validators below are kept to two cheap checks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.ids import ID_PATTERN, TENANT_PATTERN, is_valid_id
from shared.keys import user_partition

MAX_EVENT_BYTES = 16 * 1024
MAX_CLOCK_SKEW = timedelta(minutes=10)


def utc_time(text: str) -> datetime:
    """An ISO 8601 time as feedback carries it ("Z" accepted; no offset read as UTC).
    ValueError when it is not one."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)

# no ':' in a tenant (shared/ids.py): its cache keys could begin with another tenant's prefix
TenantId = Annotated[str, Field(pattern=TENANT_PATTERN)]


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    RATING = "rating"
    DISLIKE = "dislike"
    IMPRESSION = "impression"


MAX_VALUE = 1e6


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    event_id: Annotated[str, Field(alias="eventId", pattern=ID_PATTERN)]
    tenant: TenantId = "default"
    user_id: Annotated[str, Field(alias="userId", pattern=ID_PATTERN)]
    item_id: Annotated[str, Field(alias="itemId", pattern=ID_PATTERN)]
    type: EventType
    # a rating's value becomes a float32 training weight: finite, and far inside its range
    value: Annotated[float | None, Field(allow_inf_nan=False, ge=-MAX_VALUE, le=MAX_VALUE)] = None
    timestamp: datetime
    recommendation_id: Annotated[str | None, Field(alias="recommendationId", max_length=64)] = None
    position: Annotated[int | None, Field(ge=0, le=1000)] = None
    context: dict[str, Any] | None = None

    @field_validator("timestamp")
    @classmethod
    def _not_in_future(cls, ts: datetime, info: ValidationInfo) -> datetime:
        """Judged against when Event Hubs received the event when the caller knows it (the
        trigger and Capture files alike, so both accept the same events), else now."""
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        received = (info.context or {}).get("received") or datetime.now(UTC)
        if ts > received + MAX_CLOCK_SKEW:
            raise ValueError("timestamp is more than 10 minutes in the future")
        return ts

    @field_validator("value", "position", mode="before")
    @classmethod
    def _plain_number_text(cls, value: Any) -> Any:
        """A number sent as text is read as one, but not in Python's `1_000` grouping, which
        pydantic's parser would take as 1000 where every other reader sees no number."""
        if isinstance(value, str) and "_" in value:
            raise ValueError("must be a number (digits, no '_' grouping)")
        return value

    @field_validator("context")
    @classmethod
    def _finite_numbers(cls, context: dict[str, Any] | None) -> dict[str, Any] | None:
        """A `NaN`, `Infinity` or number beyond float range in the context (Python's and
        pydantic's parsers take them) would be stored as null: refused, so the event is
        dead-lettered as sent, as `POST /api/events` refuses it (`stores.events.encode`, the
        same standard-JSON rule)."""
        try:
            json.dumps(context, allow_nan=False)
        except ValueError:
            raise ValueError("context holds a number standard JSON cannot carry "
                             "(NaN, an infinity, or one beyond float range)") from None
        return context

    @model_validator(mode="after")
    def _type_fields(self) -> FeedbackEvent:
        if self.type is EventType.RATING and self.value is None:
            raise ValueError("a rating event needs a numeric 'value'")
        if self.type is EventType.IMPRESSION and self.recommendation_id is None:
            raise ValueError("an impression event needs 'recommendationId'")
        return self

    def _context_id(self, name: str) -> str | None:
        value = (self.context or {}).get(name)
        return value if isinstance(value, str) and is_valid_id(value) else None

    @property
    def model_version(self) -> str | None:
        """The model version that produced the recommendation (impressions carry it)."""
        return self._context_id("modelVersion")

    @property
    def variant(self) -> str | None:
        """The experiment variant the user was served (impressions carry it)."""
        return self._context_id("variant")

    @property
    def category(self) -> str | None:
        """The item's category when the app sends it; trending is also kept per category."""
        return self._context_id("category")

    @property
    def epoch_seconds(self) -> float:
        return self.timestamp.timestamp()

    def to_document(self) -> dict[str, Any]:
        """The stored form: the event id is the document id, so a replay writes nothing new."""
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {"id": self.event_id, "pk": user_partition(self.tenant, self.user_id), **body}
