-- Every opt-out is announced on NOTIFY julia_optout (julia.guardrails.rules.OPTOUT_CHANNEL):
-- a worker that hears them all may skip the last-moment opt-out query before a gateway
-- call when nothing was announced since its batch was screened (julia.outbound.guards).
-- What is announced matches what that query reads: a doctor who is opted out, newly so,
-- or under a new phone.
CREATE FUNCTION julia_optout_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('julia_optout', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER medicos_optout_inserted AFTER INSERT ON medicos
    FOR EACH ROW WHEN (NEW.opted_out) EXECUTE FUNCTION julia_optout_notify();

CREATE TRIGGER medicos_optout_updated AFTER UPDATE OF opted_out, telefone ON medicos
    FOR EACH ROW WHEN (NEW.opted_out AND (NOT OLD.opted_out OR NEW.telefone IS DISTINCT FROM OLD.telefone))
    EXECUTE FUNCTION julia_optout_notify();
