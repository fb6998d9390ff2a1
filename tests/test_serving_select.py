"""`select` (filters, exclusions, blocked items, the diversity cap, top k) picks exactly what the
plain greedy rule picks, whether it takes its numpy shortcut or walks the candidates one by one
(a published version's data on real Redis, the Cosmos-protocol server and Azurite)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
import redis

from shared.serving import ranking
from shared.serving.model_data import CodedItems, VersionData
from shared.serving.ranking import Scored, Source, boosted, select
from shared.serving.rules import TenantRules
from tests.test_serving_support import azure_runtime, publish_catalogue


@pytest.fixture
def data(redis_client: redis.Redis, cosmos_endpoint: str, azurite_connection: str
         ) -> VersionData:
    runtime = azure_runtime(redis_client, cosmos_endpoint, azurite_connection)
    publish_catalogue(runtime)
    runtime.recommender.warm("default")
    loaded = runtime.recommender.models.current("default")
    assert loaded is not None
    return loaded


def greedy(data: VersionData, sources: Sequence[Source], k: int, excluded: frozenset[str],
           categories: Sequence[str], rules: TenantRules, share: float) -> list[Scored]:
    """The rule `select` implements, written for clarity: best first, skip what is excluded,
    blocked, already taken or outside the categories; skip (to top up later) an item whose
    categories other than the requested ones already fill `share` of k; an item scored above
    the one before it (a later source's scale, a skipped item) takes that one's score."""
    cap = max(1, math.floor(share * k)) if share < 1 else k
    wanted = {data.category_index[c] for c in categories if c in data.category_index}
    counts: Counter[int] = Counter()
    chosen: list[Scored] = []
    skipped: list[Scored] = []
    taken: set[str] = set()
    for source in sources:
        items = list(source[0])
        codes = source[2] if len(source) > 2 else data.codes(items)
        final = boosted(data, codes, items, source[1], rules)
        for n in sorted(range(len(items)), key=lambda n: -float(final[n])):
            if len(chosen) >= k:
                break
            item, own_all = items[n], data.category_codes[int(codes[n])]
            if item in excluded or item in rules.blocked or item in taken:
                continue
            if categories and not any(data.category_names[j] in categories for j in own_all):
                continue
            taken.add(item)
            own = [j for j in own_all if j not in wanted]
            if cap < k and data.category_names and any(counts[j] >= cap for j in own):
                skipped.append(Scored(item, float(final[n])))
                continue
            counts.update(own)
            chosen.append(Scored(item, float(final[n])))
    out: list[Scored] = []
    for item, score in (chosen + skipped)[:k]:
        out.append(Scored(item, min(score, out[-1].score) if out else score))
    return out


def test_select_picks_what_the_plain_greedy_rule_picks(
    data: VersionData, monkeypatch: pytest.MonkeyPatch
) -> None:
    shortcut = Counter[bool]()
    original = ranking._head_if_unconstrained

    def counted(*args: object) -> list[Scored] | None:
        out = original(*args)  # type: ignore[arg-type]
        shortcut[out is not None] += 1
        return out

    monkeypatch.setattr(ranking, "_head_if_unconstrained", counted)
    rng = np.random.default_rng(3)
    names = list(data.category_names)
    popular = (data.popular_ids, data.popular_scores)
    for trial in range(400):
        size = int(rng.integers(1, data.n_items + 1))
        codes = rng.permutation(data.n_items)[:size].astype(np.int64)
        if trial % 7 == 0:  # a repeated code: the first one counts
            codes[-1] = codes[0]
        scores = np.round(rng.random(size), 1).astype(np.float32)  # ties included
        sources: list[Source] = [(CodedItems(data.item_ids, codes), scores, codes)]
        if trial % 2:
            sources.append(popular)
        candidates = [data.item_ids[c] for c in codes.tolist()]
        excluded = frozenset(rng.choice(candidates, int(rng.integers(0, 3))).tolist()
                             if trial % 3 else ())
        blocked = frozenset(rng.choice(data.item_ids, int(rng.integers(0, 3))).tolist()
                            if trial % 5 == 0 else ())
        categories = tuple(rng.choice(names, int(rng.integers(1, 3))).tolist()
                           if trial % 4 == 0 else ())
        k = int(rng.choice([1, 3, 5, 10]))
        share = float(rng.choice([0.2, 0.5, 1.0]))
        rules = TenantRules(blocked=blocked)
        got = select(data, sources, k, excluded, categories, rules, share)
        assert got == greedy(data, sources, k, excluded, categories, rules, share), trial
    assert shortcut[True] > 50 and shortcut[False] > 50, shortcut


def test_every_pin_lands_at_its_position_and_scores_still_fall_with_rank(
    data: VersionData,
) -> None:
    """Pins went in one by one, each removing its item first: a later pin whose item ranked
    above an earlier pin's slot moved that earlier pin up by one."""
    from shared.serving.rules import Pin

    items = [f"i{n:02d}" for n in range(10)]
    scores = np.linspace(1.0, 0.1, 10).astype(np.float32)
    rules = TenantRules(pinned=[Pin(item_id="i05", position=2), Pin(item_id="i00", position=3),
                                Pin(item_id="i29", position=5)])  # i29: not a candidate
    got = select(data, [(items, scores)], 6, frozenset(), (), rules, 1.0)
    ids = [s.item_id for s in got]
    assert (ids.index("i05"), ids.index("i00"), ids.index("i29")) == (1, 2, 4)
    assert len(ids) == 6 and len(set(ids)) == 6
    got_scores = [s.score for s in got]
    assert got_scores == sorted(got_scores, reverse=True)


def test_scores_fall_with_rank_when_a_later_source_tops_up(
    data: VersionData,
) -> None:
    """Neighbour similarities (< 1) topped up by popularity counts (up to 30), and diversity
    putting its skipped items last: the answer's scores never rise with rank."""
    neighbours = (["i02", "i04", "i01"], np.array([0.5, 0.5, 0.33], np.float32))
    popular = (data.popular_ids, data.popular_scores)
    got = select(data, [neighbours, popular], 5, frozenset(), (), TenantRules(), 1.0)
    assert [s.item_id for s in got] == ["i02", "i04", "i01", "i29", "i28"]
    scores = [s.score for s in got]
    assert scores == sorted(scores, reverse=True)
    books = ([f"i0{n}" for n in range(6)], np.linspace(1.0, 0.5, 6).astype(np.float32))
    music = (["i10"], np.array([0.1], np.float32))
    got = select(data, [books, music], 4, frozenset(), (), TenantRules(), 0.5)
    assert [s.item_id for s in got] == ["i00", "i01", "i10", "i02"]  # i02: skipped, topped up
    scores = [s.score for s in got]
    assert scores == sorted(scores, reverse=True)


def test_the_diversity_cap_is_not_one_short_from_rounding() -> None:
    """0.7 * 90 is 62.99999999999999 in binary: the cap came out 62."""
    import math

    assert math.floor(0.7 * 90) == 62  # the trap
    assert ranking.category_cap(0.7, 90) == 63
