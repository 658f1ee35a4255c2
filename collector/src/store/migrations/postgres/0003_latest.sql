-- Glasswatch schema version 3 (PostgreSQL): the latest second of every stream,
-- upserted with each write, so that the fleet overview reads one row per
-- stream instead of probing each stream's history.

CREATE TABLE latest (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us BIGINT NOT NULL,
    frames BIGINT NOT NULL,
    dropped BIGINT NOT NULL,
    p50_ms DOUBLE PRECISION,
    p95_ms DOUBLE PRECISION,
    p99_ms DOUBLE PRECISION,
    max_ms DOUBLE PRECISION,
    receiver_fps DOUBLE PRECISION,
    publisher_fps DOUBLE PRECISION,
    encode_ms DOUBLE PRECISION,
    publish_ms DOUBLE PRECISION,
    origin_delivery_ms DOUBLE PRECISION,
    PRIMARY KEY (device, stream)
);

INSERT INTO latest
SELECT device, stream, start_us, frames, dropped, p50_ms, p95_ms, p99_ms, max_ms,
       receiver_fps, publisher_fps, encode_ms, publish_ms, origin_delivery_ms
FROM seconds s
WHERE start_us = (SELECT max(start_us) FROM seconds
                  WHERE device = s.device AND stream = s.stream);
