-- The trace id of the webhook that brought a message in, carried through the turn it
-- made and the replies it queued, so one id finds a conversation's whole path in the
-- logs (webhook -> inbox -> turn -> queue -> send). NULL for rows written before it
-- existed, or outside any trace.
ALTER TABLE mensagens_recebidas ADD COLUMN trace_id text;
ALTER TABLE inbox_turnos ADD COLUMN trace_id text;
ALTER TABLE fila_mensagens ADD COLUMN trace_id text;
