"""Per-tenant business rules from configuration: pinned, boosted and blocked items.

`RECO_RULES` (JSON text) or `RECO_RULES_FILE` (a JSON file), keyed by tenant, `"*"` for
tenants without their own entry:

    {"default": {"pinned": [{"itemId": "promo1", "position": 1}],
                 "boost": {"i42": 1.5}, "boostCategories": {"sale": 1.2},
                 "blocked": ["recalled-item"]}}

Pinned items still obey the user's exclusions and the request's filters: a pin never shows a
purchased, disliked, excluded or blocked item.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.ids import ID_PATTERN, TENANT_RULE, is_valid_tenant
from shared.settings import parse_json_setting

ItemId = Annotated[str, Field(pattern=ID_PATTERN)]  # an id no request or model could carry
# would never match: refused, so that a typo is found at start-up, not in the answers


class Pin(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    item_id: ItemId = Field(alias="itemId")
    position: int = Field(1, ge=1, le=100)


class TenantRules(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    pinned: list[Pin] = Field(default_factory=list)
    boost: dict[ItemId, float] = Field(default_factory=dict)  # item -> score factor (> 0)
    boost_categories: dict[str, float] = Field(default_factory=dict, alias="boostCategories")
    blocked: frozenset[ItemId] = frozenset()

    @model_validator(mode="after")
    def _one_pin_per_item(self) -> TenantRules:
        items = [p.item_id for p in self.pinned]
        if len(set(items)) != len(items):
            raise ValueError("an item is pinned twice")
        return self

    @property
    def empty(self) -> bool:
        return not (self.pinned or self.boost or self.boost_categories or self.blocked)


NO_RULES = TenantRules()


class Rules:
    """Rules by tenant; looked up on every request, so the lookup is one dict get."""

    def __init__(self, by_tenant: dict[str, TenantRules] | None = None) -> None:
        self._by_tenant = by_tenant or {}
        self._default = self._by_tenant.get("*", NO_RULES)

    def for_tenant(self, tenant: str) -> TenantRules:
        return self._by_tenant.get(tenant, self._default)

    @classmethod
    def parse(cls, text: str | None, where: str = "RECO_RULES") -> Rules:
        raw = parse_json_setting(text, where, dict, "a JSON object keyed by tenant")
        if raw is None:
            return cls()
        bad = [t for t in raw if t != "*" and not is_valid_tenant(str(t))]
        if bad:
            raise ValueError(f"{where}: {bad[0]!r} is not a tenant id ({TENANT_RULE}) nor \"*\"")
        try:
            parsed = {str(t): TenantRules.model_validate(r) for t, r in raw.items()}
        except ValidationError as exc:
            raise ValueError(f"{where} is invalid: {exc}") from None
        for tenant, rules in parsed.items():
            bad = [f for f in [*rules.boost.values(), *rules.boost_categories.values()]
                   if not (math.isfinite(f) and f > 0)]  # json.loads takes NaN and Infinity
            if bad:
                raise ValueError(f"{where}: boost factors of tenant '{tenant}' must be finite "
                                 "numbers > 0")
        return cls(parsed)

    @classmethod
    def from_settings(cls, text: str | None, file: Path | None) -> Rules:
        """ValueError naming the setting for a file that cannot be read, or both set."""
        if file is None:
            return cls.parse(text)
        if text is not None and text.strip():
            raise ValueError("RECO_RULES and RECO_RULES_FILE are both set; set one of them")
        try:
            content = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"RECO_RULES_FILE: cannot read {file}: {exc.strerror}") from None
        return cls.parse(content, str(file))
