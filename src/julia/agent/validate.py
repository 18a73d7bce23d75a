"""The reply checked before it is queued: no shift, value, date or hospital this turn's
tools or this conversation's offers did not return; no internal data; no promise Júlia
cannot keep; never claiming to be human. A violation is logged with its kind, counted
(``julia_guardrail_violations_total``), and the reply replaced by a safe one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from julia.agent.prompt import SYSTEM
from julia.agent.state import Facts
from julia.agent.text import fold

SAFE = {
    "valor": "Deixa eu conferir os valores certinhos com a equipe e já te falo, tá?",
    "vaga": "Deixa eu conferir as vagas disponíveis certinho e já te falo, tá?",
    "interno": "Isso eu não consigo compartilhar 😊 Mas posso te ajudar a achar um plantão!",
    "humano": "Sou a Júlia, assistente virtual da equipe de escalas 🙂 Se preferir, uma pessoa"
    " da equipe assume a conversa.",
    "promessa": "Isso eu preciso confirmar com a equipe antes, tá? Já te retorno.",
}
_MONEY = re.compile(r"r\$\s*([\d.]+(?:,\d{1,2})?)")
_DATE = re.compile(r"(?<!\d)(\d{1,2})/(\d{1,2})(?!\d)")
_HOSPITAL = re.compile(
    r"\b(?:Hospital|Clínica|Clinica|Santa Casa|UPA|Pronto-Socorro|Maternidade)\s+[A-ZÀ-Ú]"
)
_PHONE = re.compile(r"\+?\d[\d\s-]{9,}\d")
_INTERNAL = ("<contexto>", "mensagem_do_medico", "vaga_id", "tool_use", "regras (nada",
             "registrar_optout", "solicitar_handoff", "reservar_vaga", "buscar_vagas")  # fmt: skip
_PROMISES = ("garanto", "prometo", "com certeza vai ser aprovad", "pagamento adiantado",
             "pagamento antecipado", "sem falta", "100% garantido")  # fmt: skip
_HUMAN = re.compile(r"\b(sou (uma )?(pessoa|humana|humano|gente) de verdade|sou humana"
                    r"|sou uma pessoa"
                    r"|nao sou (um )?(robo|bot|ia)|sou de carne)")  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    reply: str
    violations: tuple[str, ...]  # kinds, first one decides the safe reply


def _money(raw: str) -> Decimal | None:
    try:
        return Decimal(raw.replace(".", "").replace(",", ".")).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None


def check(reply: str, facts: Facts, *, known_hospitals: set[str]) -> Verdict:
    t = fold(reply)
    kinds: list[str] = []
    for raw in _MONEY.findall(t):
        value = _money(raw)
        if value is None or value not in facts.valores:
            kinds.append("valor")
            break
    for d, m in _DATE.findall(t):
        if f"{int(d):02d}/{int(m):02d}" not in facts.datas:
            kinds.append("vaga")
            break
    mentioned = {h for h in known_hospitals if h in t}
    if mentioned - facts.hospitais:
        kinds.append("vaga")
    for match in _HOSPITAL.finditer(reply):
        named = fold(reply[match.start() : match.start() + 80])
        if not any(named.startswith(h) for h in facts.hospitais):
            kinds.append("vaga")
            break
    if any(marker in t for marker in _INTERNAL) or fold(SYSTEM[:60]) in t or _PHONE.search(reply):
        kinds.append("interno")
    if any(p in t for p in _PROMISES):
        kinds.append("promessa")
    if _HUMAN.search(t):
        kinds.append("humano")
    unique = tuple(dict.fromkeys(kinds))
    if not unique:
        return Verdict(reply, ())
    return Verdict(SAFE[unique[0]], unique)


def split(reply: str, *, chars: int, most: int) -> list[str]:
    """WhatsApp-sized messages: paragraphs joined while they fit, long ones cut at sentences."""
    pieces: list[str] = []
    for para in (p.strip() for p in re.split(r"\n\s*\n", reply.strip())):
        if not para:
            continue
        if len(para) <= chars:
            pieces.append(para)
            continue
        current = ""
        for sentence in re.split(r"(?<=[.!?])\s+", para):
            while len(sentence) > chars:  # no sentence end in sight: cut at a space
                cut = sentence.rfind(" ", 0, chars)
                cut = cut if cut > 0 else chars
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if current and len(current) + 1 + len(sentence) > chars:
                pieces.append(current)
                current = sentence
            else:
                current = f"{current} {sentence}".strip()
        if current:
            pieces.append(current)
    merged: list[str] = []
    for p in pieces:
        if merged and len(merged[-1]) + 2 + len(p) <= chars:
            merged[-1] += "\n\n" + p
        else:
            merged.append(p)
    if len(merged) > most:
        merged = [*merged[: most - 1], "\n\n".join(merged[most - 1 :])]
    return merged
