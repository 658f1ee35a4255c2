-- Glasswatch schema version 1 (PostgreSQL): devices, streams, events, and the
-- per-second, per-minute and per-hour history of every stream, plus frames.
-- Every table is keyed by its natural key (DESIGN.md, "Several collectors"):
-- writes are idempotent, so a retry after a failed commit never duplicates.
-- Times are µs since the Unix epoch (UTC); figures are ms; NULL = no figure.

-- One row per device: its last status.
CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    online BOOLEAN NOT NULL,
    -- When `online` last changed (collector clock).
    since_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL,
    host TEXT,
    arch TEXT,
    agent_version TEXT,
    gstreamer_version TEXT,
    clock_synchronized BOOLEAN,
    clock_est_error_us BIGINT,
    -- The whole status message as received (JSON text).
    status TEXT NOT NULL
);

-- One row per stream a device advertised: its last description.
CREATE TABLE streams (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    encoder TEXT NOT NULL,
    hardware BOOLEAN NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    fps BIGINT NOT NULL,
    rtsp_url TEXT NOT NULL,
    hls_url TEXT NOT NULL,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (device, stream)
);

-- Online/offline transitions (status and Last Will), append-only.
CREATE TABLE events (
    device TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (device, at_us, kind)
);

-- Per stream and second: the published summary plus the agent's stats.
CREATE TABLE seconds (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us BIGINT NOT NULL,
    end_us BIGINT NOT NULL,
    frames BIGINT NOT NULL,
    matched_by_fingerprint BIGINT NOT NULL,
    unmatched BIGINT NOT NULL,
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
    clock_synced BOOLEAN NOT NULL,
    clock_offset_ms DOUBLE PRECISION,
    clock_uncertainty_ms DOUBLE PRECISION,
    hls_mode TEXT NOT NULL,
    hls_container TEXT NOT NULL,
    hls_errors BIGINT NOT NULL,
    playlist_requests BIGINT NOT NULL,
    media_requests BIGINT NOT NULL,
    bitrate_kbps DOUBLE PRECISION,
    cpu_percent DOUBLE PRECISION,
    rss_bytes BIGINT,
    temperature_c DOUBLE PRECISION,
    report_backlog BIGINT,
    frames_dropped_capture BIGINT,
    frames_dropped_encode BIGINT,
    records_dropped BIGINT,
    -- The window's glass-to-HLS histogram (store/histogram.rs), for roll-ups.
    hist BYTEA,
    PRIMARY KEY (device, stream, start_us)
);
CREATE INDEX seconds_by_time ON seconds (start_us);

-- Roll-ups: merged histograms of the seconds (never averaged percentiles).
CREATE TABLE minutes (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us BIGINT NOT NULL,
    seconds BIGINT NOT NULL,
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
    hist BYTEA,
    PRIMARY KEY (device, stream, start_us)
);
CREATE INDEX minutes_by_time ON minutes (start_us);

CREATE TABLE hours (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us BIGINT NOT NULL,
    seconds BIGINT NOT NULL,
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
    hist BYTEA,
    PRIMARY KEY (device, stream, start_us)
);
CREATE INDEX hours_by_time ON hours (start_us);

-- Per frame (optional, short retention): the data behind a percentile.
CREATE TABLE frames (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    session BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    capture_us BIGINT NOT NULL,
    available_us BIGINT NOT NULL,
    glass_to_hls_ms DOUBLE PRECISION NOT NULL,
    encode_ms DOUBLE PRECISION NOT NULL,
    publish_ms DOUBLE PRECISION NOT NULL,
    origin_delivery_ms DOUBLE PRECISION NOT NULL,
    uncertainty_ms DOUBLE PRECISION NOT NULL,
    by_fingerprint BOOLEAN NOT NULL,
    PRIMARY KEY (device, stream, session, seq)
);
CREATE INDEX frames_by_capture ON frames (device, stream, capture_us);
CREATE INDEX frames_by_time ON frames (capture_us);

-- How far the roll-ups are done: windows before `done_us` are rolled up.
CREATE TABLE rollup_state (
    kind TEXT PRIMARY KEY,
    done_us BIGINT NOT NULL
);

-- Which collector reads which device (DESIGN.md, "Several collectors"):
-- taken or renewed in one statement, expiring unless renewed. Not used by a
-- single collector yet; created now so the shape is fixed.
CREATE TABLE leases (
    device TEXT PRIMARY KEY,
    collector TEXT NOT NULL,
    expires_us BIGINT NOT NULL
);
