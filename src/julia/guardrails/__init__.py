"""Guardrails: the one place that decides whether a doctor may be contacted now, and why
not (:mod:`julia.guardrails.rules`); manual blocks, bypasses, consent and LGPD erasure."""
