"""The last processor: Júlia answers the turn (``julia.agent``).

With no model configured the turn is recorded ``aguardando_resposta`` (answered by
the ``agent_pending`` job once one is) and one alert says why; a newer message that
arrived mid-turn raises :class:`julia.agent.turn.Superseded`, which the consumer
turns into a redo with it.
"""

from __future__ import annotations

from julia.agent.turn import TurnInput, answer, no_model_alert, ready
from julia.core.app import App
from julia.inbox.processors.base import Step, TurnContext, halt, proceed
from julia.inbox.processors.outbound import send_now


class AgentReply:
    name, priority = "agent", 100

    async def process(self, app: App, ctx: TurnContext) -> Step:
        if ctx.conversa_id is None or ctx.medico_id is None:
            return proceed(ctx.flag("aguardando_resposta"))
        if not ready(app):
            await no_model_alert(app)
            return proceed(ctx.flag("aguardando_resposta").note(agente="sem modelo"))
        doctor = ctx.from_doctor
        inp = TurnInput(
            conversa_id=ctx.conversa_id, medico_id=ctx.medico_id, conversa_key=ctx.conversa_key,
            mensagem_ids=tuple(m.id for m in ctx.mensagens), texto=ctx.texto,
            provider_ids=tuple(m.provider_message_id for m in doctor),
        )  # fmt: skip
        outcome = await answer(app, inp)
        if outcome.direct:
            sent = await send_now(app, ctx, outcome.direct)
            ctx = ctx.note(confirmacao_enviada=sent)
        ctx = ctx.with_(resposta=outcome.resposta).note(agente=outcome.summary())
        return halt(ctx.flag(f"agente_{outcome.status}"), outcome.status, status="respondido")
