-- Retention (the daily `retention` job, julia.ops.retention): indexes so pruning the
-- raw webhook payloads by age reads only the rows that still carry one.
CREATE INDEX mensagens_recebidas_payload_age_idx ON mensagens_recebidas (received_at)
    WHERE payload <> '{}'::jsonb;
CREATE INDEX mensagens_acks_payload_age_idx ON mensagens_acks (at)
    WHERE payload <> '{}'::jsonb;
CREATE INDEX gateway_conexao_eventos_payload_age_idx ON gateway_conexao_eventos (at)
    WHERE payload <> '{}'::jsonb;
CREATE INDEX chip_selection_log_age_idx ON chip_selection_log (at);
