-- One request-window row per key, reset in place when a new minute starts. The per-minute rows
-- of 0001 had to be deleted as minutes passed, and that delete could deadlock at a minute
-- boundary with a transaction still counting the previous minute.
DROP TABLE rate_windows;

CREATE TABLE request_windows (
    key_id       BIGINT PRIMARY KEY REFERENCES api_keys (id),
    window_start BIGINT NOT NULL,
    requests     BIGINT NOT NULL
);
