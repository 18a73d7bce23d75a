"""The trust score as pure functions: factors, levels, limits, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from julia.chips import states, trust
from julia.core.errors import ChipTransitionRefused
from julia.settings import Settings

S = Settings(_env_file=None)  # type: ignore[call-arg]

STATUSES = [s.value for s in states.Status]

inputs_strategy = st.builds(
    trust.TrustInputs,
    status=st.sampled_from(STATUSES),
    age_days=st.floats(min_value=0, max_value=5000, allow_nan=False),
    warming_days=st.floats(min_value=0, max_value=100, allow_nan=False),
    sent=st.integers(0, 10_000),
    delivered=st.integers(0, 20_000),
    contacted=st.integers(0, 10_000),
    replied=st.integers(0, 20_000),
    bidirectional=st.integers(0, 10_000),
    media_types=st.integers(0, 20),
    errors_24h=st.integers(0, 10_000),
    blocks=st.integers(0, 10_000),
)
weights = st.floats(min_value=0, max_value=1000, allow_nan=False)


@hsettings(max_examples=300, deadline=None)
@given(inputs_strategy, st.lists(weights, min_size=8, max_size=8))
def test_score_is_always_within_0_and_100(inputs: trust.TrustInputs, ws: list[float]) -> None:
    s = S.model_copy(update={w: v for (_, _, w), v in zip(trust.FACTORS, ws, strict=True)})
    result = trust.compute(inputs, s)
    assert 0 <= result.score <= 100
    assert result.level == trust.level_of(result.score)
    assert all(0 <= f.value <= 1 for f in result.factors)
    assert len(result.factors) == 8


@hsettings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(STATUSES),
    age_days=st.floats(min_value=0, max_value=5000, allow_nan=False),
    warming_days=st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_empty_data_never_yields_a_high_score(
    status: str, age_days: float, warming_days: float
) -> None:
    """The incident: scores computed from counters nothing fed. With no sends, replies or
    acks a chip can never reach the followup threshold (60), let alone prospecting (80)."""
    empty = trust.TrustInputs(status=status, age_days=age_days, warming_days=warming_days)
    result = trust.compute(empty, S)
    assert result.score < S.chip_threshold_followup
    assert result.score <= 45
    factors = {f.name: f for f in result.factors}
    for name in ("delivery", "response", "bidirectional", "media"):
        assert factors[name].value == 0, name


def test_a_healthy_busy_chip_is_verde_and_explains_every_factor() -> None:
    inputs = trust.TrustInputs(
        status="active", age_days=90, sent=200, delivered=196, contacted=150, replied=90,
        bidirectional=40, media_types=4, errors_24h=0, blocks=0,
    )  # fmt: skip
    result = trust.compute(inputs, S)
    assert result.level == "verde" and result.score >= 85
    factors = {f.name: f for f in result.factors}
    assert factors["delivery"].value == pytest.approx(0.98)
    assert factors["response"].value == pytest.approx(0.6)
    assert "196/200 delivered" in factors["delivery"].why
    assert sum(f.points for f in result.factors) == pytest.approx(result.score, abs=0.5)


def test_each_bad_signal_lowers_the_score() -> None:
    good = trust.TrustInputs(
        status="active", age_days=90, sent=200, delivered=196, contacted=150, replied=90,
        bidirectional=40, media_types=4,
    )  # fmt: skip
    base = trust.compute(good, S).score
    worse = [
        trust.TrustInputs(**{**good.as_dict(), "errors_24h": 8}),
        trust.TrustInputs(**{**good.as_dict(), "blocks": 8}),
        trust.TrustInputs(**{**good.as_dict(), "delivered": 100}),
        trust.TrustInputs(**{**good.as_dict(), "replied": 10}),
        trust.TrustInputs(**{**good.as_dict(), "status": "degraded"}),
    ]
    for w in worse:
        assert trust.compute(w, S).score < base, w


def test_evidence_discounts_rates_measured_on_few_messages() -> None:
    few = trust.TrustInputs(status="active", sent=2, delivered=2, contacted=2, replied=2)
    factors = {f.name: f for f in trust.compute(few, S).factors}
    assert factors["delivery"].value == pytest.approx(2 / S.chip_trust_min_sends)


def test_banned_and_retired_score_zero() -> None:
    busy = dict(age_days=90, sent=200, delivered=196, contacted=150, replied=90)
    for status in ("banned", "retired"):
        result = trust.compute(trust.TrustInputs(status=status, **busy), S)  # type: ignore[arg-type]
        assert (result.score, result.level) == (0, "critico")


@pytest.mark.parametrize(
    ("score", "level"),
    [(100, "verde"), (80, "verde"), (79, "amarelo"), (60, "amarelo"), (59, "laranja"),
     (40, "laranja"), (39, "vermelho"), (20, "vermelho"), (19, "critico"), (0, "critico")],
)  # fmt: skip
def test_levels(score: int, level: str) -> None:
    assert trust.level_of(score) == level


def test_only_verde_may_prospect_and_limits_shrink_with_the_level() -> None:
    assert [lvl for lvl, p in trust.LEVELS.items() if p.may_prospect] == ["verde"]
    fractions = [trust.LEVELS[name].limit_fraction for name, _ in trust.LEVEL_FLOORS]
    assert fractions == sorted(fractions, reverse=True) and fractions[-1] == 0


@pytest.mark.parametrize(
    ("days", "fraction"),
    [(0, 0.10), (0.99, 0.10), (1, 0.25), (2.9, 0.25), (3, 0.50), (5.9, 0.50), (6, 1.0), (30, 1.0)],
)
def test_recovery_after_a_restriction_is_gradual(days: float, fraction: float) -> None:
    """10 % for 1 day, 25 % for 2 days, 50 % for 3 days, then 100 %."""
    assert trust.recovery_fraction(days, S) == fraction


def test_warming_limits_ramp_up_by_phase() -> None:
    got = [trust.warming_fraction(d, S) for d in (0, 3, 7, 14, 21)]
    assert got == [0.10, 0.25, 0.50, 0.75, 1.0]
    lim = trust.limits(
        level="verde", status="warming", warming_days=1, days_since_restriction=None, settings=S
    )
    assert (lim.hourly, lim.daily) == (2, 10)
    lim = trust.limits(
        level="amarelo", status="active", warming_days=0, days_since_restriction=2, settings=S
    )
    assert lim.fraction == pytest.approx(0.75 * 0.25) and "recovering 25%" in lim.why


def test_lifecycle_table() -> None:
    assert states.allowed("active", "degraded") and states.allowed("degraded", "active")
    assert not states.TRANSITIONS[states.Status.BANNED]
    assert not states.TRANSITIONS[states.Status.RETIRED]
    with pytest.raises(ChipTransitionRefused):
        states.check("banned", "active")
    with pytest.raises(ChipTransitionRefused):
        states.check("provisioned", "active")
    # every status but the final ones can be retired; promote follows the table
    for s in states.Status:
        if s not in states.FINAL:
            assert states.allowed(s, "retired")
    for src, dst in states.PROMOTE.items():
        assert states.allowed(src, dst)
