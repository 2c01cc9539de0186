-- flywheel-store schema, PostgreSQL. Timestamps are Unix seconds (UTC) in BIGINT columns.

CREATE TABLE models (
    name           TEXT PRIMARY KEY,
    public         BOOLEAN NOT NULL DEFAULT FALSE,
    latest_version BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL
);

CREATE TABLE model_versions (
    name       TEXT   NOT NULL REFERENCES models (name),
    version    BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    size_bytes BIGINT NOT NULL,
    artifact   BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE model_aliases (
    name       TEXT   NOT NULL,
    alias      TEXT   NOT NULL CHECK (alias IN ('champion', 'challenger')),
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
);

CREATE TABLE alias_history (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name     TEXT    NOT NULL,
    alias    TEXT    NOT NULL CHECK (alias IN ('champion', 'challenger')),
    version  BIGINT  NOT NULL,
    action   TEXT    NOT NULL CHECK (action IN ('set', 'rollback')),
    reverted BOOLEAN NOT NULL DEFAULT FALSE,
    at       BIGINT  NOT NULL,
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
);
CREATE INDEX alias_history_by_model ON alias_history (name, alias, id);

CREATE TABLE tenants (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE plans (
    name                TEXT   PRIMARY KEY,
    requests_per_minute BIGINT NOT NULL CHECK (requests_per_minute >= 0),
    texts_per_month     BIGINT NOT NULL CHECK (texts_per_month >= 0),
    created_at          BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id),
    plan       TEXT   NOT NULL REFERENCES plans (name),
    prefix     TEXT   NOT NULL,
    key_sha256 BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_prefix ON api_keys (prefix);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

CREATE TABLE model_grants (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id),
    model      TEXT   NOT NULL REFERENCES models (name),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, model)
);

CREATE TABLE rate_windows (
    key_id       BIGINT NOT NULL REFERENCES api_keys (id),
    window_start BIGINT NOT NULL,
    requests     BIGINT NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

CREATE TABLE text_quota (
    key_id      BIGINT NOT NULL REFERENCES api_keys (id),
    month_start BIGINT NOT NULL,
    texts       BIGINT NOT NULL,
    PRIMARY KEY (key_id, month_start)
);

CREATE TABLE usage_events (
    id         TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL,
    key_prefix TEXT   NOT NULL,
    model      TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    texts      BIGINT NOT NULL,
    characters BIGINT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX usage_events_by_tenant_at ON usage_events (tenant, at);
CREATE INDEX usage_events_by_at ON usage_events (at);
