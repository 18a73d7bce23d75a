"""``julia demo``: the whole system on one machine (the top floor: it drives every other)."""
