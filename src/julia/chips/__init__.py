"""The chip pool: WhatsApp numbers, their lifecycle, trust, selection and health.

- :mod:`.states`: the lifecycle transition table
- :mod:`.trust`: the trust score's eight factors and levels (pure functions)
- :mod:`.pool`: the registry (add, get, list) and the one audited transition
- :mod:`.lifecycle`: promote, demote, cooldown, ban, retire, graduate
- :mod:`.scoring`: trust inputs from real events, ``recalculate``/``recalculate_all``
- :mod:`.selection`: which chip sends a message (thresholds, emergency, filters, preference)
- :mod:`.sending`: sending with fallback to other chips, cooldowns, breaker, events
- :mod:`.health`: gateway sync, health monitor, pool check
- :mod:`.migration`: moving conversations off a demoted or banned chip

See docs/chips.md.
"""
