"""The one rule for tenant, user and item ids, shared by the API and the event schema."""

from __future__ import annotations

import re

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$"
ID_RE = re.compile(ID_PATTERN)
ID_RULE = "1-128 characters: letters, digits and _ . : @ - (starting with a letter or digit)"


def is_valid_id(value: str) -> bool:
    # fullmatch: Python's "$" also matches before a trailing newline (pydantic's Rust regex,
    # which checks the same pattern in the schemas, does not)
    return ID_RE.fullmatch(value) is not None
