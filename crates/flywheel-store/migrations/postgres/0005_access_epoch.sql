-- A counter that every change to who may call what bumps (keys, plans, tenants, grants, a model
-- made public or private), by trigger, whoever makes the change (flywheel, the admin CLI, psql).
-- Servers keep keys, plans and grants in memory and reload them when the counter moves: one
-- cheap poll instead of a query per request, and a revoked key or a changed plan reaches every
-- replica within the poll interval.
CREATE TABLE access_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO access_epoch (id, epoch) VALUES (1, 1);

CREATE FUNCTION bump_access_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_access_epoch AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_epoch();

CREATE TRIGGER plans_access_epoch AFTER INSERT OR UPDATE OR DELETE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_epoch();

CREATE TRIGGER tenants_access_epoch AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_epoch();

CREATE TRIGGER model_grants_access_epoch AFTER INSERT OR UPDATE OR DELETE ON model_grants
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_epoch();

CREATE TRIGGER models_access_epoch AFTER INSERT OR DELETE OR UPDATE OF public ON models
    FOR EACH STATEMENT EXECUTE FUNCTION bump_access_epoch();

-- Group commit meters a batch in one statement and must keep none of it when the database does
-- not confirm every condition of the fast path (an event already recorded, a limit reached, a
-- plan changed): the statement then calls this, which raises and so rolls it all back.
CREATE FUNCTION flywheel_require(ok boolean) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'flywheel: the batch is metered one request at a time' USING ERRCODE = 'FWB01';
    END IF;
    RETURN true;
END
$$;
