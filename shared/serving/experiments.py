"""A/B experiments from configuration, with stable per-user assignment.

`RECO_EXPERIMENTS` is a JSON list; one running experiment per tenant at most:

    [{"name": "rerank-ab", "tenants": ["default"],
      "variants": [{"name": "control", "share": 0.5},
                   {"name": "no-rerank", "share": 0.5, "rerank": false, "diversity": 0.3,
                    "modelVersion": "v2024..."}]}]

A user lands in a variant by a hash of (tenant, experiment, user), so the same user always gets
the same variant in every process; shares that sum to less than 1 leave the rest out of the
experiment. The variant's settings override the defaults only where they are given.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.ids import check_tenant
from shared.settings import parse_json_setting

TenantId = Annotated[str, AfterValidator(check_tenant)]  # refused with the tenant rule


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    share: float = Field(ge=0, le=1)
    model_version: str | None = Field(None, alias="modelVersion")
    rerank: bool | None = None
    diversity: float | None = Field(None, gt=0, le=1)


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    # None: every tenant; an empty list or an id no request can name would run for nobody
    tenants: list[TenantId] | None = Field(None, min_length=1)
    variants: list[Variant] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment '{self.name}' repeats a variant name")
        if sum(v.share for v in self.variants) > 1.0 + 1e-9:
            raise ValueError(f"experiment '{self.name}': variant shares add up to more than 1")
        return self


def bucket(tenant: str, experiment: str, user_id: str) -> float:
    """A uniform number in [0, 1), the same for the same triple everywhere."""
    digest = hashlib.blake2b(f"{tenant}\x1f{experiment}\x1f{user_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2.0**64


class Experiments:
    def __init__(self, experiments: list[Experiment] | None = None) -> None:
        self.experiments = experiments or []
        self._by_tenant: dict[str, Experiment] = {}
        self._everyone: Experiment | None = None
        for e in self.experiments:
            if e.tenants is None:
                if self._everyone is not None:
                    raise ValueError("RECO_EXPERIMENTS: two experiments apply to every tenant")
                self._everyone = e
                continue
            for t in e.tenants:
                if t in self._by_tenant:
                    raise ValueError(f"RECO_EXPERIMENTS: tenant '{t}' is in two experiments")
                self._by_tenant[t] = e

    def for_tenant(self, tenant: str) -> Experiment | None:
        return self._by_tenant.get(tenant, self._everyone)

    def assign(self, tenant: str, user_id: str) -> tuple[Experiment, Variant] | None:
        exp = self.for_tenant(tenant)
        if exp is None:
            return None
        u = bucket(tenant, exp.name, user_id)
        edge = 0.0
        for v in exp.variants:
            edge += v.share
            if u < edge:
                return exp, v
        return None

    @classmethod
    def parse(cls, text: str | None) -> Experiments:
        raw = parse_json_setting(text, "RECO_EXPERIMENTS", list, "a JSON list of experiments")
        if raw is None:
            return cls()
        try:
            return cls([Experiment.model_validate(e) for e in raw])
        except ValidationError as exc:
            raise ValueError(f"RECO_EXPERIMENTS is invalid: {exc}") from None
