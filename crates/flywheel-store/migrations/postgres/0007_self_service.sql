-- Tenants' own data and work: uploaded datasets (versioned per tenant and name), training and
-- batch jobs queued in the database with leases (any replica may run one; a killed worker's
-- job is taken up again once its lease expires), their progress events, training reports and
-- batch results. Plans gain the limits of that work; a model trained by a job is owned by its
-- tenant. Every stored text is already redacted by the caller.

ALTER TABLE plans ADD COLUMN max_datasets BIGINT NOT NULL DEFAULT 20 CHECK (max_datasets >= 0);
ALTER TABLE plans ADD COLUMN max_upload_bytes BIGINT NOT NULL DEFAULT 104857600 CHECK (max_upload_bytes >= 0);
ALTER TABLE plans ADD COLUMN max_active_jobs BIGINT NOT NULL DEFAULT 1 CHECK (max_active_jobs >= 0);
ALTER TABLE plans ADD COLUMN training_seconds_per_month BIGINT NOT NULL DEFAULT 36000 CHECK (training_seconds_per_month >= 0);

ALTER TABLE models ADD COLUMN owner_tenant BIGINT REFERENCES tenants (id);

-- An upload is `staging` while its rows stream in (invisible; removed if the upload fails or
-- is abandoned) and `ready` once complete, when it gets its version.
CREATE TABLE uploads (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL,
    version    BIGINT NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('staging', 'ready')),
    format     TEXT    NOT NULL,
    row_count  BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256     TEXT    NOT NULL,
    summary    TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX uploads_versions ON uploads (tenant_id, name, version) WHERE state = 'ready';
CREATE INDEX uploads_by_state ON uploads (state, created_at);

-- Rows in file order; `labels` holds the label names joined by U+001F.
CREATE TABLE upload_rows (
    upload_id BIGINT NOT NULL REFERENCES uploads (id),
    position  BIGINT NOT NULL,
    text      TEXT    NOT NULL,
    labels    TEXT    NOT NULL,
    PRIMARY KEY (upload_id, position)
);

CREATE TABLE jobs (
    id            TEXT    PRIMARY KEY,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('training', 'batch')),
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    upload_id     BIGINT NOT NULL REFERENCES uploads (id),
    model         TEXT    NOT NULL,
    settings      TEXT    NOT NULL,
    progress      TEXT    NOT NULL,
    result        TEXT,
    error         TEXT,
    lease_holder  TEXT,
    lease_expires BIGINT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT
);
CREATE INDEX jobs_by_state ON jobs (state, created_at, id);
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, created_at, id);

CREATE TABLE job_events (
    job_id TEXT    NOT NULL REFERENCES jobs (id),
    seq    BIGINT NOT NULL,
    at     BIGINT NOT NULL,
    data   TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE job_reports (
    job_id TEXT PRIMARY KEY REFERENCES jobs (id),
    html   TEXT NOT NULL
);

CREATE TABLE batch_results (
    job_id   TEXT    NOT NULL REFERENCES jobs (id),
    position BIGINT NOT NULL,
    output   TEXT    NOT NULL,
    PRIMARY KEY (job_id, position)
);

-- Seconds of training a job used, metered as usage (0 for classification requests).
ALTER TABLE usage_events ADD COLUMN training_seconds BIGINT NOT NULL DEFAULT 0;
