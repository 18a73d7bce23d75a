"""What can go wrong in Júlia, as one tree. Each class's docstring is its default message.

    JuliaError
    ├── ConfigError                 bad or missing settings
    ├── LocalServerError            an embedded server would not start or stop
    ├── StorageError                Postgres or Redis unreachable or failing
    ├── MigrationError
    │   ├── ChecksumMismatch        an applied migration file changed (names the file)
    │   └── MigrationFileError      a badly named or duplicate migration file
    ├── InvalidInput                bad input from an operator or a sender; nothing changed
    │   ├── InvalidPhone            not a possible Brazilian phone number
    │   └── ImportRejected          a file with bad rows (carries every bad row)
    ├── NotFound                    no such row (a doctor, a vaga, a message...)
    ├── Conflict                    the action is not allowed in the current state
    │   └── LockNotAcquired         a distributed lock is held by someone else
    └── CircuitOpen                 a circuit breaker refused the call (name, retry_at)

That is the foundation's part of the tree; each capability's section below draws its
own branches (``tests/test_errors.py`` fails on a class drawn nowhere). The CLI maps
each class to one line on stderr and ``exit_code``; the shim to an HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from julia.core.redact import mask_phone, mask_text


class JuliaError(Exception):
    """Something went wrong in Júlia."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.details = details
        # masked by pattern: a message may quote a gateway's body or an operator's input
        super().__init__(mask_text(message or (self.__doc__ or "").strip()))

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(JuliaError):
    """The configuration is invalid."""

    exit_code = 78  # EX_CONFIG


class LocalServerError(JuliaError):
    """An embedded server could not be started or stopped."""

    exit_code = 69  # EX_UNAVAILABLE


class StorageError(JuliaError):
    """Postgres or Redis is unreachable or failed."""

    exit_code = 69
    http_status = 503


class MigrationError(JuliaError):
    """The migrations could not be applied."""

    exit_code = 3


class ChecksumMismatch(MigrationError):
    """An applied migration file has changed since it was applied."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"migration {name} was changed after it was applied; restore it and add a new "
            "migration instead",
            name=name,
        )
        self.name = name


class MigrationFileError(MigrationError):
    """A migration file is badly named or duplicated."""


class InvalidInput(JuliaError):
    """The input is invalid; nothing was changed."""

    exit_code = 2
    http_status = 400


class InvalidPhone(InvalidInput):
    """Not a possible Brazilian phone number."""

    def __init__(self, raw: str, reason: str = "not a possible Brazilian phone number") -> None:

        super().__init__(f"invalid phone {mask_phone(raw) or '(empty)'}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class RowError:
    """One rejected row of an imported file (line 1 is the header)."""

    line: int
    reason: str


class ImportRejected(InvalidInput):
    """The file has invalid rows; nothing was imported."""

    def __init__(self, path: str, errors: list[RowError], *, skippable: bool = True) -> None:
        shown = "; ".join(f"line {e.line}: {e.reason}" for e in errors[:20])
        more = f"; and {len(errors) - 20} more" if len(errors) > 20 else ""
        hint = " (use --skip-invalid to import the rest)" if skippable else " (fix them and retry)"
        super().__init__(
            f"{path}: {len(errors)} invalid row(s), nothing imported{hint}: {shown}{more}"
        )
        self.errors = errors


class NotFound(JuliaError):
    """No such record."""

    exit_code = 4
    http_status = 404


class Conflict(JuliaError):
    """The action is not allowed in the current state."""

    exit_code = 5
    http_status = 409


# --- fila, worker, gateways (outbound queue) --------------------------------
#
#   Conflict
#   └── InvalidTransition       a message cannot go from its status to the one asked
#   GatewayError                a WhatsApp gateway call failed (``retryable``: worth retrying?)
#   ├── GatewayTimeout          no answer in time
#   ├── GatewayNetworkError     could not connect / connection dropped
#   ├── GatewayServerError      5xx
#   └── GatewayClientError      4xx not listed below (not retryable)
#       ├── GatewayBadRequest   400
#       │   └── InvalidNumber   the number is not on WhatsApp
#       ├── GatewayAuthError    401
#       ├── GatewayForbidden    403
#       ├── GatewayNotFound     404 (e.g. the instance does not exist)
#       └── GatewayRateLimited  429 (retryable, after ``retry_after_s``)


class InvalidTransition(Conflict):
    """The message cannot move from its current status to the one asked."""


class GatewayError(JuliaError):
    """The WhatsApp gateway call failed."""

    exit_code = 69
    http_status = 502
    #: Whether sending again later may succeed (the queue retries with backoff).
    retryable: ClassVar[bool] = True
    #: Short code stored on the message (``fila_mensagens.motivo``).
    code: ClassVar[str] = "GATEWAY_ERROR"
    #: How the breakers classify it (``timeout``, ``network``, ``http``).
    kind: ClassVar[str] = "http"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        maybe_sent: bool = False,
        **details: Any,
    ) -> None:
        super().__init__(message, status=status, **details)
        self.status = status
        #: True when the request may have reached WhatsApp (a read timeout, a dropped
        #: connection): the queue then reconciles instead of resending.
        self.maybe_sent = maybe_sent


class GatewayTimeout(GatewayError):
    """The gateway did not answer in time."""

    code = "GATEWAY_TIMEOUT"
    kind = "timeout"


class GatewayNetworkError(GatewayError):
    """Could not reach the gateway (connection refused or dropped)."""

    code = "GATEWAY_NETWORK"
    kind = "network"


class GatewayServerError(GatewayError):
    """The gateway answered with a server error (5xx)."""

    code = "GATEWAY_5XX"


class GatewayClientError(GatewayError):
    """The gateway refused the request (4xx)."""

    retryable = False
    code = "GATEWAY_4XX"


class GatewayBadRequest(GatewayClientError):
    """The gateway rejected the request as malformed (400)."""

    code = "GATEWAY_400"


class InvalidNumber(GatewayBadRequest):
    """The number is not on WhatsApp."""

    code = "INVALID_NUMBER"


class GatewayAuthError(GatewayClientError):
    """The gateway refused the API key (401)."""

    code = "GATEWAY_401"


class GatewayForbidden(GatewayClientError):
    """The gateway forbade the request (403): the chip may be restricted."""

    retryable = True  # the message is not at fault; another chip or later may work
    code = "GATEWAY_403"


class GatewayNotFound(GatewayClientError):
    """The gateway does not know the instance (404)."""

    retryable = True  # a configuration problem an operator can fix; keep the message
    code = "GATEWAY_404"


class GatewayRateLimited(GatewayClientError):
    """The gateway is rate limiting us (429)."""

    retryable = True
    code = "GATEWAY_429"


# --- resilience: breakers, rate limits, locks, retry ------------------------


class CircuitOpen(JuliaError):
    """The circuit breaker is open: the call was refused without being made."""

    exit_code = 69
    http_status = 503

    def __init__(self, name: str, state: str, retry_at: Any = None) -> None:
        when = f"; retry at {retry_at.isoformat()}" if retry_at is not None else ""
        super().__init__(f"circuit {name} is {state}{when}", name=name, state=state)
        self.name = name
        self.state = state
        #: When a call may be let through again (a ``datetime``), or None (forced open).
        self.retry_at = retry_at


class LockNotAcquired(Conflict):
    """The lock is held by someone else."""

    def __init__(self, name: str) -> None:
        super().__init__(f"lock {name} is held by someone else", name=name)
        self.name = name


# --- inbound: shim, inbox, processors ---------------------------------------
#
#   WebhookUnauthorized         a webhook without the right token, JWT or signature (401)
#   InvalidInput
#   ├── InvalidPayload          a webhook body that is not what its provider sends (400)
#   └── PayloadTooLarge         a body over JULIA_WEBHOOK_MAX_BODY_BYTES (413)


class WebhookUnauthorized(JuliaError):
    """The webhook carries no valid secret; nothing was stored."""

    exit_code = 77  # EX_NOPERM
    http_status = 401


class InvalidPayload(InvalidInput):
    """The webhook body is not valid JSON or not a payload Júlia understands."""


class PayloadTooLarge(InvalidInput):
    """The webhook body is larger than the configured limit."""

    http_status = 413


# --- chips: pool, trust, selection ------------------------------------------
#
#   NotFound
#   └── ChipNotFound            no chip with that id or instance
#   Conflict
#   ├── ChipTransitionRefused   a chip cannot go from its status to the one asked
#   └── ChipExists              a chip with that instance or number is registered
#   GatewayError
#   ├── NoChipAvailable         no chip may send this message now (queue retries later)
#   └── AllChipsFailed          every chip tried failed (outcome FAILED_ALL_CHIPS)


class ChipNotFound(NotFound):
    """No such chip."""


class ChipTransitionRefused(Conflict):
    """The chip cannot move from its current status to the one asked."""


class ChipExists(Conflict):
    """A chip with that instance or number is already registered."""


class NoChipAvailable(GatewayError):
    """No chip may send this message now."""

    code = "NO_CHIP_AVAILABLE"


class AllChipsFailed(GatewayError):
    """Every chip tried for this message failed."""

    code = "FAILED_ALL_CHIPS"


# --- operations: scheduler, jobs, alerts, health ----------------------------
#
#   NotFound
#   └── UnknownJob              no job by that name in the registry
#   NotifyError                 Slack refused or failed an alert (``status_code`` when it answered)


class UnknownJob(NotFound):
    """No such job."""


class NotifyError(JuliaError):
    """Slack did not accept the alert."""

    exit_code = 69
    http_status = 502

    def __init__(
        self, message: str | None = None, *, status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message, status_code=status_code)
        self.status_code = status_code
        #: Seconds Slack asked us to wait (``Retry-After`` on a 429); the retry helper honours it.
        self.retry_after = retry_after
