"""The two EASE blend members that learn from weights and times, and when the selector adds
them to the blend."""

from __future__ import annotations

import numpy as np

from training.generators.base import fit_generator
from training.generators.ease import EASE, memory_bytes
from training.generators.ease_variants import CentredEASE, SessionEASE, session_matrix
from training.generators.ensemble import Blend
from training.generators.selector import choose, has_implicit
from training.interactions import Interactions
from training.pipeline import _varies

HOUR = 3600


def _data(rows: list[tuple[str, str, float, int]]) -> Interactions:
    users, items, weights, times = zip(*rows, strict=True)
    return Interactions.from_columns(list(users), list(items), list(weights), list(times))


def test_centred_ease_learns_from_the_weights_and_is_plain_ease_on_a_matrix() -> None:
    """a and b are liked together, a and c are seen together but c is disliked: on weights,
    a pulls b up and c down; on the 0/1 matrix (no weights) c and b look alike."""
    rows = [(f"u{n}", "a", 5.0, 0) for n in range(6)]
    rows += [(f"u{n}", "b", 5.0, 0) for n in range(3)]
    rows += [(f"u{n}", "c", 1.0, 0) for n in range(3, 6)]
    rows += [("v", "a", 5.0, 0)]
    data = _data(rows)
    b, c = (list(data.item_ids).index(i) for i in "bc")
    v = list(data.user_ids).index("v")
    centred = CentredEASE(reg=1.0)
    fit_generator(centred, data.matrix(binary=True), data)
    scores = centred.scores(np.array([v]))[0]
    assert scores[b] > 0 > scores[c]
    plain, on_matrix = EASE(reg=1.0), CentredEASE(reg=1.0)
    plain.fit(data.matrix(binary=True))
    fit_generator(on_matrix, data.matrix(binary=True))  # no interactions: plain EASE
    np.testing.assert_array_equal(on_matrix.weights, plain.weights)
    assert on_matrix.scores(np.array([v]))[0][b] == on_matrix.scores(np.array([v]))[0][c]


def test_session_ease_links_items_of_one_sitting_and_scores_whole_histories() -> None:
    """u1 used a and b hours apart (two sessions), u2 used a and c in one minute: only a-c is
    linked; u1's score for c comes through a, from the whole history."""
    data = _data([("u1", "a", 1.0, 0), ("u1", "b", 1.0, 5 * HOUR),
                  ("u2", "a", 1.0, 0), ("u2", "c", 1.0, 30)])
    assert session_matrix(data, 60).shape == (3, 3)  # {a}, {b}, {a, c}
    session = SessionEASE(reg_scale=0.5, gap_seconds=60)
    fit_generator(session, data.matrix(binary=True), data)
    a, b, c = (list(data.item_ids).index(i) for i in "abc")
    assert session.weights is not None
    assert session.weights[a, b] == 0 and session.weights[a, c] > 0
    u1 = list(data.user_ids).index("u1")
    items, _ = session.recommend(np.array([u1]), 1)
    assert items[0].tolist() == [c]  # a and b (u1's own) are excluded, c comes through a
    assert session.params()["gap_seconds"] == 60


def test_a_blend_hands_its_members_the_interactions() -> None:
    data = _data([("u1", "a", 5.0, 0), ("u1", "b", 1.0, 10), ("u2", "a", 4.0, 0),
                  ("u2", "c", 2.0, 20), ("u3", "b", 3.0, 0)])
    centred = CentredEASE(reg=1.0)
    blend = Blend([EASE(reg=1.0), centred], [1.0, 0.5])
    blend.fit(data.matrix(binary=True), data)
    alone = CentredEASE(reg=1.0)
    alone.fit_interactions(data)
    np.testing.assert_array_equal(centred.weights, alone.weights)


def test_the_selector_adds_the_variants_only_when_the_data_and_memory_allow() -> None:
    als = ("als",) if has_implicit() else ()
    assert choose(1_682, weighted=True, timed=True).members == (
        "ease", *als, "low_pass", "ease_centred", "ease_session")
    assert choose(1_682, weighted=False, timed=True).members == (
        "ease", *als, "low_pass", "ease_session")
    assert choose(1_682).members == ("ease", *als, "low_pass")
    one_extra = 2 * (memory_bytes(1_682) + 2 * 4 * 1_682**2)  # room for EASE and one variant
    assert choose(1_682, one_extra, weighted=True, timed=True).members == (
        "ease", *als, "low_pass", "ease_centred")
    assert choose(17_000, weighted=True, timed=True).members == ("item_knn", *als)


def test_only_columns_that_vary_count_as_weights_or_times() -> None:
    assert _varies(np.array([1.0, 5.0, 3.0]))
    assert not _varies(np.ones(4, np.float32))
    assert not _varies(np.zeros(3, np.int64))  # no timestamps in the source
    assert not _varies(np.zeros(0))
