"""JSON-valued settings (rules, experiments) fail start-up with a sentence naming the setting."""

from __future__ import annotations

import pytest

from shared.serving.experiments import Experiments
from shared.serving.rules import Rules


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (Rules.parse, "{oops", "RECO_RULES is not valid JSON"),
        (Rules.parse, "[1]", "RECO_RULES must be a JSON object keyed by tenant"),
        (Experiments.parse, "{oops", "RECO_EXPERIMENTS is not valid JSON"),
        (Experiments.parse, "{}", "RECO_EXPERIMENTS must be a JSON list of experiments"),
        # json.loads takes NaN and Infinity: a NaN factor once demoted the item silently
        (Rules.parse, '{"*": {"boost": {"c": NaN}}}', "must be finite numbers > 0"),
        (Rules.parse, '{"*": {"boostCategories": {"sale": Infinity}}}', "must be finite"),
        (Rules.parse, '{"*": {"boost": {"c": 0}}}', "must be finite numbers > 0"),
    ],
)
def test_bad_json_settings_are_named(parse, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_empty_json_settings_mean_none_configured() -> None:
    assert Rules.parse("  ").for_tenant("shop").empty
    assert Rules.parse(None).for_tenant("shop").empty
    assert Experiments.parse("").assign("shop", "u1") is None
    assert Experiments.parse(None).assign("shop", "u1") is None
