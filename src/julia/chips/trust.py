"""The trust score of a chip (0–100): eight documented factors, pure functions.

Each factor turns one measured input into a value between 0 and 1; the score is
the weighted sum (weights are settings, normalised so they always give 0–100):

=============  ===========================================================  ===========
factor         value                                                        weight
=============  ===========================================================  ===========
age            days since the chip was registered / ``age_full_days``     10
delivery       delivered (ack) / sent in the window, × evidence             20
response       doctors who replied / doctors sent to, × evidence            20
bidirectional  conversations with messages both ways / ``bidir_full``       10
media          distinct message types exchanged / ``media_full``            5
errors         1 − send errors in 24 h / ``errors_zero_at``                 15
blocks         1 − block rate in the window / ``block_zero_at``             10
phase          active 1, ready 0.8, warming 0.3–0.8, degraded 0.2, else 0   10
=============  ===========================================================  ===========

*Evidence* is ``min(1, n / min_sends)``: a rate measured on three messages is
worth little, and **no data is worth nothing** — the incident had scores
computed from counters nothing fed. With no sends, replies or acks, only age,
the absence of errors and blocks, and the phase count: at most 45, never
enough to prospect or follow up. A banned or retired chip scores 0.

Levels: verde ≥ 80, amarelo ≥ 60, laranja ≥ 40, vermelho ≥ 20, crítico below;
each level sets what the chip may do (:data:`LEVELS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from julia.settings import Settings


#: Level names from best to worst, with the lowest score of each.
LEVEL_FLOORS: tuple[tuple[str, int], ...] = (
    ("verde", 80),
    ("amarelo", 60),
    ("laranja", 40),
    ("vermelho", 20),
    ("critico", 0),
)


@dataclass(frozen=True)
class LevelPermissions:
    """What a trust level allows: prospecting (outside emergency mode) and the share of
    the per-chip hourly/daily limits (``JULIA_RATE_LIMIT_CHIP_HOURLY``/``_DAILY``)."""

    may_prospect: bool
    limit_fraction: float


#: The permissions of each level.
LEVELS: dict[str, LevelPermissions] = {
    "verde": LevelPermissions(may_prospect=True, limit_fraction=1.0),
    "amarelo": LevelPermissions(may_prospect=False, limit_fraction=0.75),
    "laranja": LevelPermissions(may_prospect=False, limit_fraction=0.5),
    "vermelho": LevelPermissions(may_prospect=False, limit_fraction=0.25),
    "critico": LevelPermissions(may_prospect=False, limit_fraction=0.0),
}

#: Phase factor of each status (warming grows with its progress).
PHASE_VALUE: dict[str, float] = {
    "active": 1.0,
    "ready": 0.8,
    "degraded": 0.2,
    "provisioned": 0.0,
    "pending": 0.0,
    "banned": 0.0,
    "retired": 0.0,
}


def level_of(score: float) -> str:
    for name, floor in LEVEL_FLOORS:
        if score >= floor:
            return name
    return "critico"


@dataclass(frozen=True)
class TrustInputs:
    """What the score is computed from (gathered by :mod:`julia.chips.scoring`)."""

    status: str
    age_days: float = 0.0
    warming_days: float = 0.0  # days since warming started (0 when not warming)
    sent: int = 0  # successful sends in the window
    delivered: int = 0  # of those, acknowledged as delivered or read
    contacted: int = 0  # distinct numbers sent to in the window
    replied: int = 0  # of those, numbers that wrote back in the window
    bidirectional: int = 0  # conversations (numbers) with messages both ways in the window
    media_types: int = 0  # distinct message types exchanged in the window
    errors_24h: int = 0  # failed sends in the last 24 hours
    blocks: int = 0  # blocks in the window (403 restrictions, error acks)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def block_rate(self) -> float:
        attempts = self.sent + self.blocks
        return self.blocks / attempts if attempts else 0.0


@dataclass(frozen=True)
class Factor:
    name: str
    value: float  # 0..1
    weight: float
    points: float  # its share of the 0..100 score
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrustScore:
    score: int
    level: str
    factors: tuple[Factor, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "level": self.level,
            "factors": {f.name: f.as_dict() for f in self.factors},
        }


def _clip(x: float) -> float:
    return 0.0 if x != x else max(0.0, min(1.0, x))  # NaN → 0


def evidence(n: int, min_n: int) -> float:
    """How much a rate measured on ``n`` samples counts: 0 with none, 1 from ``min_n``."""
    return _clip(n / min_n) if min_n > 0 else 1.0


def factor_age(i: TrustInputs, s: Settings) -> tuple[float, str]:
    return _clip(i.age_days / s.chip_trust_age_full_days), (
        f"{i.age_days:.1f} days old (full at {s.chip_trust_age_full_days:g})"
    )


def factor_delivery(i: TrustInputs, s: Settings) -> tuple[float, str]:
    if i.sent == 0:
        return 0.0, "no sends in the window: no evidence"
    rate = i.delivered / i.sent
    ev = evidence(i.sent, s.chip_trust_min_sends)
    return _clip(rate * ev), f"{i.delivered}/{i.sent} delivered ({rate:.0%}), evidence {ev:.2f}"


def factor_response(i: TrustInputs, s: Settings) -> tuple[float, str]:
    if i.contacted == 0:
        return 0.0, "no doctor contacted in the window: no evidence"
    rate = min(i.replied, i.contacted) / i.contacted
    ev = evidence(i.contacted, s.chip_trust_min_sends)
    return _clip(rate * ev), (
        f"{i.replied}/{i.contacted} doctors replied ({rate:.0%}), evidence {ev:.2f}"
    )


def factor_bidirectional(i: TrustInputs, s: Settings) -> tuple[float, str]:
    return _clip(i.bidirectional / s.chip_trust_bidirectional_full), (
        f"{i.bidirectional} two-way conversations (full at {s.chip_trust_bidirectional_full})"
    )


def factor_media(i: TrustInputs, s: Settings) -> tuple[float, str]:
    return _clip(i.media_types / s.chip_trust_media_full), (
        f"{i.media_types} message types exchanged (full at {s.chip_trust_media_full})"
    )


def factor_errors(i: TrustInputs, s: Settings) -> tuple[float, str]:
    return _clip(1 - i.errors_24h / s.chip_trust_errors_zero_at), (
        f"{i.errors_24h} send errors in 24 h (zero at {s.chip_trust_errors_zero_at})"
    )


def factor_blocks(i: TrustInputs, s: Settings) -> tuple[float, str]:
    rate = i.block_rate
    return _clip(1 - rate / s.chip_trust_block_zero_at), (
        f"{i.blocks} blocks, rate {rate:.1%} (zero at {s.chip_trust_block_zero_at:.0%})"
    )


def factor_phase(i: TrustInputs, s: Settings) -> tuple[float, str]:
    if i.status == "warming":
        progress = _clip(i.warming_days / s.chip_warming_days)
        return 0.3 + 0.5 * progress, f"warming, {progress:.0%} done"
    return PHASE_VALUE.get(i.status, 0.0), i.status


#: The eight factors, in the order they are explained, with their weight setting.
FACTORS = (
    ("age", factor_age, "chip_trust_w_age"),
    ("delivery", factor_delivery, "chip_trust_w_delivery"),
    ("response", factor_response, "chip_trust_w_response"),
    ("bidirectional", factor_bidirectional, "chip_trust_w_bidirectional"),
    ("media", factor_media, "chip_trust_w_media"),
    ("errors", factor_errors, "chip_trust_w_errors"),
    ("blocks", factor_blocks, "chip_trust_w_blocks"),
    ("phase", factor_phase, "chip_trust_w_phase"),
)


def compute(inputs: TrustInputs, settings: Settings) -> TrustScore:
    """The score of a chip from its inputs: always an integer within 0–100."""
    weights = [float(getattr(settings, w)) for _, _, w in FACTORS]
    total = sum(weights) or 1.0
    factors = []
    for (name, fn, _), weight in zip(FACTORS, weights, strict=True):
        value, why = fn(inputs, settings)
        value = _clip(value)
        factors.append(
            Factor(name, round(value, 4), weight, round(100 * weight * value / total, 2), why)
        )
    score = round(sum(f.points for f in factors))
    if inputs.status in ("banned", "retired"):
        score = 0
    score = max(0, min(100, score))
    return TrustScore(score=score, level=level_of(score), factors=tuple(factors))


def step_fraction(days: float, steps: list[tuple[float, float]], *, cumulative: bool) -> float:
    """The limit fraction ``days`` into a ramp of [fraction, days] steps; 1.0 after it.

    ``cumulative``: each step lasts its days after the previous one (recovery: 10 % for
    1 day, 25 % for 2 more, 50 % for 3 more); otherwise the days are "until day N"
    (warming phases)."""
    end = 0.0
    for fraction, length in steps:
        end = end + length if cumulative else length
        if days < end:
            return _clip(fraction)
    return 1.0


def warming_fraction(warming_days: float, settings: Settings) -> float:
    return step_fraction(warming_days, settings.chip_warming_steps, cumulative=False)


def recovery_fraction(days_since_restriction: float | None, settings: Settings) -> float:
    if days_since_restriction is None or days_since_restriction < 0:
        return 1.0
    return step_fraction(days_since_restriction, settings.chip_recovery_steps, cumulative=True)


@dataclass(frozen=True)
class ChipLimits:
    """The proactive limits of one chip now: level × warming phase × recovery."""

    hourly: int
    daily: int
    fraction: float
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def limits(
    *,
    level: str,
    status: str,
    warming_days: float,
    days_since_restriction: float | None,
    settings: Settings,
) -> ChipLimits:
    parts = [f"{level} {LEVELS[level].limit_fraction:.0%}"]
    fraction = LEVELS[level].limit_fraction
    if status == "warming":
        w = warming_fraction(warming_days, settings)
        fraction *= w
        parts.append(f"warming {w:.0%}")
    r = recovery_fraction(days_since_restriction, settings)
    if r < 1.0:
        fraction *= r
        parts.append(f"recovering {r:.0%}")
    return ChipLimits(
        hourly=int(settings.rate_limit_chip_hourly * fraction),
        daily=int(settings.rate_limit_chip_daily * fraction),
        fraction=round(fraction, 4),
        why=" × ".join(parts),
    )
