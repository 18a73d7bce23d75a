"""Every knob Júlia has, as one pydantic-settings object (env prefix ``JULIA_``).

Each capability keeps its knobs beside its code (``julia/<capability>/settings.py``);
this module, above every floor, composes them into the one :class:`Settings` the
``App`` carries, so code reads ``app.settings.fila_lease_s`` wherever it lives. Every
field has a default from the requirements and a ``description`` (a test enforces
it); ``julia config show`` prints the effective values, secrets masked.
"""

from __future__ import annotations

from julia.agent.settings import AgentSettings
from julia.campanhas.settings import CampanhasSettings
from julia.chips.settings import ChipsSettings
from julia.core.settings import CoreSettings
from julia.fila.settings import FilaSettings
from julia.gateways.settings import GatewaySettings
from julia.guardrails.settings import GuardrailsSettings
from julia.handoff.settings import HandoffSettings
from julia.inbox.settings import InboxSettings
from julia.llm.settings import LLMSettings
from julia.notify.settings import NotifySettings
from julia.ops.settings import OpsSettings
from julia.resilience.settings import ResilienceSettings


class Settings(
    OpsSettings,
    CampanhasSettings,
    GuardrailsSettings,
    InboxSettings,
    AgentSettings,
    LLMSettings,
    HandoffSettings,
    ChipsSettings,
    FilaSettings,
    NotifySettings,
    GatewaySettings,
    ResilienceSettings,
    CoreSettings,
):
    """The effective configuration: environment, then ``.env``, then defaults."""

    model_config = CoreSettings.model_config
