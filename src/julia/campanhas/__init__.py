"""Campaigns: a template, a segment of doctors, a window and a pace; enqueued once per
doctor, paced by the chip pool, paused on rising opt-outs or a restricted chip."""
