"""Júlia the agent: a turn of a doctor's conversation answered with the model and tools."""
