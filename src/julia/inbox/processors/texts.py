"""Portuguese text recognition (opt-out, auto-replies, handoff) and the few fixed replies.

Matching works on a folded form: lower case, accents removed, punctuation as spaces,
spaces collapsed (``"Não quero mais RECEBER!!"`` → ``"nao quero mais receber"``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_NON_WORD = re.compile(r"[^a-z0-9]+")


def fold(text: str | None) -> str:
    """Lower case, no accents, words separated by single spaces."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    ascii_ = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", ascii_).strip()


def _contains_phrase(folded: str, phrases: Iterable[str]) -> str | None:
    padded = f" {folded} "
    for phrase in phrases:
        if f" {phrase} " in padded:
            return phrase
    return None


# --- opt-out -------------------------------------------------------------------

#: A whole message that is only one of these is an opt-out ("PARE", "Sair.").
OPTOUT_WORDS = frozenset(
    {"pare", "parar", "para", "sair", "stop", "descadastrar", "descadastre", "remover"}
    | {"cancelar", "chega", "basta", "unsubscribe", "sai", "parem", "bloquear"}
)
#: Phrases that opt out anywhere in a message.
OPTOUT_PHRASES = (
    "nao quero mais receber",
    "nao quero receber",
    "nao quero mais mensagens",
    "nao quero mais mensagem",
    "nao quero mais contato",
    "nao quero mais ser contatado",
    "nao quero mais ser contatada",
    "nao me mande mais",
    "nao me mandem mais",
    "nao mande mais",
    "nao envie mais",
    "nao me envie mais",
    "nao me chame mais",
    "nao me procure mais",
    "pare de me mandar",
    "para de me mandar",
    "pare de mandar",
    "para de mandar",
    "pare de enviar",
    "para de enviar",
    "parem de me mandar",
    "parem de enviar",
    "me tira da lista",
    "me tire da lista",
    "me tirem da lista",
    "me retire da lista",
    "tirar meu numero",
    "tire meu numero",
    "remover meu numero",
    "remova meu numero",
    "remove meu numero",
    "me remove",
    "me remova",
    "me descadastra",
    "me descadastre",
    "quero me descadastrar",
    "quero sair da lista",
    "sair da lista",
    "quero sair",
    "descadastrar",
    "cancelar inscricao",
    "cancelar o envio",
    "nao tenho interesse pare",
)


def optout_phrase(text: str | None) -> str | None:
    """The opt-out phrase a message contains, or None."""
    folded = fold(text)
    if not folded:
        return None
    if folded in OPTOUT_WORDS:
        return folded
    return _contains_phrase(folded, OPTOUT_PHRASES)


# --- bots and auto-replies --------------------------------------------------------

BOT_PHRASES = (
    "mensagem automatica",
    "resposta automatica",
    "esta e uma mensagem automatica",
    "no momento nao posso atender",
    "no momento nao podemos atender",
    "nao estou disponivel no momento",
    "estou ausente",
    "estou de ferias",
    "fora do horario de atendimento",
    "nosso horario de atendimento",
    "obrigado por entrar em contato",
    "obrigada por entrar em contato",
    "agradecemos o seu contato",
    "agradecemos seu contato",
    "retornarei assim que possivel",
    "retornaremos assim que possivel",
    "em breve retornaremos",
    "digite o numero da opcao",
    "digite a opcao desejada",
    "escolha uma das opcoes",
    "este numero nao recebe mensagens",
    "este numero nao e monitorado",
    "sou um assistente virtual",
    "sou uma assistente virtual",
)


def bot_phrase(text: str | None) -> str | None:
    """The auto-reply marker a message contains, or None."""
    return _contains_phrase(fold(text), BOT_PHRASES)


# --- handoff -------------------------------------------------------------------

#: Situations that need a person, whatever the doctor asked (priority 50).
HANDOFF_TRIGGERS = (
    "nao recebi o pagamento",
    "nao recebi meu pagamento",
    "pagamento atrasado",
    "problema no pagamento",
    "problema com pagamento",
    "processo judicial",
    "vou processar",
    "meu advogado",
    "denuncia",
    "assedio",
    "sofri um acidente",
)


def handoff_trigger(text: str | None) -> str | None:
    return _contains_phrase(fold(text), HANDOFF_TRIGGERS)


def keyword(text: str | None, keywords: Iterable[str]) -> str | None:
    """The first configured keyword (folded) found in the text."""
    return _contains_phrase(fold(text), (fold(k) for k in keywords if fold(k)))


# --- fixed replies ----------------------------------------------------------------

OPTOUT_CONFIRMATION = (
    "Tudo bem, não vou mais te enviar mensagens. Se mudar de ideia, é só me chamar aqui."
)
OUTSIDE_HOURS_ACK = (
    "Oi! Recebi sua mensagem. Estou fora do horário agora, mas te respondo assim que voltar."
)
MEDIA_UNREADABLE = {
    "audio": "Oi! Não consigo ouvir áudios por aqui. Pode me escrever em texto?",
    "imagem": "Oi! Não consigo abrir imagens por aqui. Pode me escrever o que precisa?",
    "video": "Oi! Não consigo abrir vídeos por aqui. Pode me escrever o que precisa?",
    "documento": (
        "Recebi seu documento, obrigada! Não consigo abri-lo por aqui; alguém da equipe vai "
        "conferir. Se for algo urgente, me escreve em texto."
    ),
}
