-- Glasswatch schema version 2 (SQLite): viewer-latency reports from the
-- dashboard's players, per viewer, stream and second; events by time for
-- retention.

CREATE TABLE viewer_seconds (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    viewer TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    p50_ms REAL,
    p95_ms REAL,
    buffer_ms REAL,
    stalls INTEGER NOT NULL,
    uncertainty_ms REAL,
    PRIMARY KEY (device, stream, viewer, start_us)
) WITHOUT ROWID;
CREATE INDEX viewer_seconds_by_time ON viewer_seconds (start_us);
CREATE INDEX events_by_time ON events (at_us);
