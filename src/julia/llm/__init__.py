"""The model port (:class:`julia.llm.model.Model`) and its Anthropic adapter."""
