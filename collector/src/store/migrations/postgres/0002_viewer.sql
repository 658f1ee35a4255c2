-- Glasswatch schema version 2 (PostgreSQL): viewer-latency reports from the
-- dashboard's players, per viewer, stream and second; events by time for
-- retention.

CREATE TABLE viewer_seconds (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    viewer TEXT NOT NULL,
    start_us BIGINT NOT NULL,
    frames BIGINT NOT NULL,
    p50_ms DOUBLE PRECISION,
    p95_ms DOUBLE PRECISION,
    buffer_ms DOUBLE PRECISION,
    stalls BIGINT NOT NULL,
    uncertainty_ms DOUBLE PRECISION,
    PRIMARY KEY (device, stream, viewer, start_us)
);
CREATE INDEX viewer_seconds_by_time ON viewer_seconds (start_us);
CREATE INDEX events_by_time ON events (at_us);
