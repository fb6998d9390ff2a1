"""The rules for ids, shared by the API, the event schema, the settings and the CLI.

User and item ids are named by apps and follow the id rule. Tenant ids, named by the operator,
follow a stricter one without ':', the separator of the cache keys a tenant id starts
(`reco:{tenant}:{version}:u:{user}`, `shared/keys.py`): with ':' in a tenant, tenant `shop`
expiring version `v1` (the prefix `reco:shop:v1:`) would also delete tenant `shop:v1`'s keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$"
ID_RE = re.compile(ID_PATTERN)
ID_RULE = "1-128 characters: letters, digits and _ . : @ - (starting with a letter or digit)"

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}$"
TENANT_RE = re.compile(TENANT_PATTERN)
TENANT_RULE = ("1-128 characters: letters, digits and _ . @ - (starting with a letter or digit; "
               "no ':')")

_RULE_OF_PATTERN = {ID_PATTERN: ID_RULE, TENANT_PATTERN: TENANT_RULE}


def is_valid_id(value: str) -> bool:
    # fullmatch: Python's "$" also matches before a trailing newline (pydantic's Rust regex,
    # which checks the same pattern in the schemas, does not)
    return ID_RE.fullmatch(value) is not None


def broken_rule(error: Mapping[str, Any]) -> str:
    """The rule, in words, whose pattern a pydantic "string_pattern_mismatch" error names
    (pydantic's message quotes the regular expression)."""
    return _RULE_OF_PATTERN.get(str((error.get("ctx") or {}).get("pattern")), ID_RULE)


def is_valid_tenant(value: str) -> bool:
    """A tenant id: an id without ':' (fullmatch, as `is_valid_id`)."""
    return TENANT_RE.fullmatch(value) is not None


def tenant_error(value: str) -> str:
    """Why `value` is refused as a tenant, in a sentence stating the rule."""
    return f"tenant '{value[:40]}' is not valid: {TENANT_RULE}"


def check_tenant(value: str) -> str:
    """`value` when it is a tenant id, else ValueError stating the rule (settings, JSON)."""
    if not is_valid_tenant(value):
        raise ValueError(tenant_error(value))
    return value
