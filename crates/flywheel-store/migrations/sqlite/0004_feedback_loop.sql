-- The feedback loop: sampled predictions, corrections, the data a model was trained on, its
-- frozen holdout, retrain decisions and one retrain job per model at a time.
-- Every stored text is already redacted by the caller (flywheel-server applies --redact).

-- A labelled dataset kept in the database (a model's base training data or its holdout).
CREATE TABLE datasets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL REFERENCES models (name),
    role       TEXT    NOT NULL CHECK (role IN ('base', 'holdout')),
    sha256     TEXT    NOT NULL,
    row_count  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Rows in file order; `labels` holds the label names joined by U+001F.
CREATE TABLE dataset_rows (
    dataset_id INTEGER NOT NULL REFERENCES datasets (id),
    position   INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    labels     TEXT    NOT NULL,
    PRIMARY KEY (dataset_id, position)
);

-- The base data a version was trained on (before feedback), and the holdout frozen at the first
-- push that gave one.
ALTER TABLE model_versions ADD COLUMN base_dataset INTEGER REFERENCES datasets (id);
ALTER TABLE models ADD COLUMN holdout_dataset INTEGER REFERENCES datasets (id);

CREATE TABLE predictions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    request_id  TEXT    NOT NULL,
    idx         INTEGER NOT NULL,
    text        TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    score       REAL    NOT NULL,
    uncertainty REAL,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant, request_id, idx)
);
CREATE INDEX predictions_by_model_uncertainty ON predictions (model, uncertainty);

CREATE TABLE feedback (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    prediction_id INTEGER REFERENCES predictions (id),
    text          TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    request_sha256 TEXT   NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (tenant, request_id)
);
CREATE INDEX feedback_by_model ON feedback (model, id);
CREATE INDEX feedback_by_prediction ON feedback (prediction_id);

CREATE TABLE retrain_decisions (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT    NOT NULL REFERENCES models (name),
    champion_version   INTEGER NOT NULL,
    challenger_version INTEGER,
    promoted           BOOLEAN NOT NULL,
    reason             TEXT    NOT NULL,
    report             TEXT    NOT NULL,
    feedback_rows      INTEGER NOT NULL,
    feedback_upto      INTEGER NOT NULL,
    seed               INTEGER NOT NULL,
    cause              TEXT    NOT NULL,
    at                 INTEGER NOT NULL
);
CREATE INDEX retrain_decisions_by_model ON retrain_decisions (name, id);

CREATE TABLE retrain_leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
