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

CREATE TRIGGER api_keys_access_epoch_insert AFTER INSERT ON api_keys
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER api_keys_access_epoch_update AFTER UPDATE ON api_keys
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER api_keys_access_epoch_delete AFTER DELETE ON api_keys
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER plans_access_epoch_insert AFTER INSERT ON plans
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER plans_access_epoch_update AFTER UPDATE ON plans
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER plans_access_epoch_delete AFTER DELETE ON plans
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER tenants_access_epoch_insert AFTER INSERT ON tenants
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER tenants_access_epoch_update AFTER UPDATE ON tenants
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER tenants_access_epoch_delete AFTER DELETE ON tenants
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER model_grants_access_epoch_insert AFTER INSERT ON model_grants
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER model_grants_access_epoch_update AFTER UPDATE ON model_grants
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER model_grants_access_epoch_delete AFTER DELETE ON model_grants
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER models_access_epoch_insert AFTER INSERT ON models
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER models_access_epoch_delete AFTER DELETE ON models
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

CREATE TRIGGER models_access_epoch_update AFTER UPDATE OF public ON models
BEGIN
    UPDATE access_epoch SET epoch = epoch + 1 WHERE id = 1;
END;

