-- The feedback loop: sampled predictions, corrections, the data a model was trained on, its
-- frozen holdout, retrain decisions and one retrain job per model at a time.
-- Every stored text is already redacted by the caller (flywheel-server applies --redact).

-- A labelled dataset kept in the database (a model's base training data or its holdout).
CREATE TABLE datasets (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT    NOT NULL REFERENCES models (name),
    role       TEXT    NOT NULL CHECK (role IN ('base', 'holdout')),
    sha256     TEXT    NOT NULL,
    row_count  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Rows in file order; `labels` holds the label names joined by U+001F.
CREATE TABLE dataset_rows (
    dataset_id BIGINT NOT NULL REFERENCES datasets (id),
    position   BIGINT NOT NULL,
    text       TEXT    NOT NULL,
    labels     TEXT    NOT NULL,
    PRIMARY KEY (dataset_id, position)
);

-- The base data a version was trained on (before feedback), and the holdout frozen at the first
-- push that gave one.
ALTER TABLE model_versions ADD COLUMN base_dataset BIGINT REFERENCES datasets (id);
ALTER TABLE models ADD COLUMN holdout_dataset BIGINT REFERENCES datasets (id);

CREATE TABLE predictions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    version     BIGINT NOT NULL,
    request_id  TEXT    NOT NULL,
    idx         BIGINT NOT NULL,
    text        TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    score       DOUBLE PRECISION    NOT NULL,
    uncertainty DOUBLE PRECISION,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant, request_id, idx)
);
CREATE INDEX predictions_by_model_uncertainty ON predictions (model, uncertainty);

CREATE TABLE feedback (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    prediction_id BIGINT REFERENCES predictions (id),
    text          TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    request_sha256 TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (tenant, request_id)
);
CREATE INDEX feedback_by_model ON feedback (model, id);
CREATE INDEX feedback_by_prediction ON feedback (prediction_id);

CREATE TABLE retrain_decisions (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               TEXT    NOT NULL REFERENCES models (name),
    champion_version   BIGINT NOT NULL,
    challenger_version BIGINT,
    promoted           BOOLEAN NOT NULL,
    reason             TEXT    NOT NULL,
    report             TEXT    NOT NULL,
    feedback_rows      BIGINT NOT NULL,
    feedback_upto      BIGINT NOT NULL,
    seed               BIGINT NOT NULL,
    cause              TEXT    NOT NULL,
    at                 BIGINT NOT NULL
);
CREATE INDEX retrain_decisions_by_model ON retrain_decisions (name, id);

CREATE TABLE retrain_leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at BIGINT NOT NULL
);
