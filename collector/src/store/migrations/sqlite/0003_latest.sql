-- Glasswatch schema version 3 (SQLite): the latest second of every stream,
-- upserted with each write, so that the fleet overview reads one row per
-- stream instead of probing each stream's history.

CREATE TABLE latest (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    p50_ms REAL,
    p95_ms REAL,
    p99_ms REAL,
    max_ms REAL,
    receiver_fps REAL,
    publisher_fps REAL,
    encode_ms REAL,
    publish_ms REAL,
    origin_delivery_ms REAL,
    PRIMARY KEY (device, stream)
) WITHOUT ROWID;

INSERT INTO latest
SELECT device, stream, start_us, frames, dropped, p50_ms, p95_ms, p99_ms, max_ms,
       receiver_fps, publisher_fps, encode_ms, publish_ms, origin_delivery_ms
FROM seconds s
WHERE start_us = (SELECT max(start_us) FROM seconds
                  WHERE device = s.device AND stream = s.stream);
