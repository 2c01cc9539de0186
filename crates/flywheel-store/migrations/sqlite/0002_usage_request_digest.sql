-- The SHA-256 of the metered request's body: a request id reused with another body is refused
-- instead of being silently treated as a retry (which would go unbilled).
ALTER TABLE usage_events ADD COLUMN request_sha256 TEXT NOT NULL DEFAULT '';
