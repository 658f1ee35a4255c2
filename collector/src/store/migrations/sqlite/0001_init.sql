-- Glasswatch schema version 1 (SQLite): devices, streams, events, and the
-- per-second, per-minute and per-hour history of every stream, plus frames.
-- Every table is keyed by its natural key (DESIGN.md, "Several collectors"):
-- writes are idempotent, so a retry after a failed commit never duplicates.
-- Times are µs since the Unix epoch (UTC); figures are ms; NULL = no figure.

-- One row per device: its last status.
CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    online INTEGER NOT NULL,
    -- When `online` last changed (collector clock).
    since_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    host TEXT,
    arch TEXT,
    agent_version TEXT,
    gstreamer_version TEXT,
    clock_synchronized INTEGER,
    clock_est_error_us INTEGER,
    -- The whole status message as received (JSON).
    status TEXT NOT NULL
);

-- One row per stream a device advertised: its last description.
CREATE TABLE streams (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    encoder TEXT NOT NULL,
    hardware INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    fps INTEGER NOT NULL,
    rtsp_url TEXT NOT NULL,
    hls_url TEXT NOT NULL,
    updated_us INTEGER NOT NULL,
    PRIMARY KEY (device, stream)
);

-- Online/offline transitions (status and Last Will), append-only.
CREATE TABLE events (
    device TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (device, at_us, kind)
);

-- Per stream and second: the published summary plus the agent's stats.
CREATE TABLE seconds (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    matched_by_fingerprint INTEGER NOT NULL,
    unmatched INTEGER NOT NULL,
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
    clock_synced INTEGER NOT NULL,
    clock_offset_ms REAL,
    clock_uncertainty_ms REAL,
    hls_mode TEXT NOT NULL,
    hls_container TEXT NOT NULL,
    hls_errors INTEGER NOT NULL,
    playlist_requests INTEGER NOT NULL,
    media_requests INTEGER NOT NULL,
    bitrate_kbps REAL,
    cpu_percent REAL,
    rss_bytes INTEGER,
    temperature_c REAL,
    report_backlog INTEGER,
    frames_dropped_capture INTEGER,
    frames_dropped_encode INTEGER,
    records_dropped INTEGER,
    -- The window's glass-to-HLS histogram (store/histogram.rs), for roll-ups.
    hist BLOB,
    PRIMARY KEY (device, stream, start_us)
) WITHOUT ROWID;
CREATE INDEX seconds_by_time ON seconds (start_us);

-- Roll-ups: merged histograms of the seconds (never averaged percentiles).
CREATE TABLE minutes (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    seconds INTEGER NOT NULL,
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
    hist BLOB,
    PRIMARY KEY (device, stream, start_us)
) WITHOUT ROWID;
CREATE INDEX minutes_by_time ON minutes (start_us);

CREATE TABLE hours (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    seconds INTEGER NOT NULL,
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
    hist BLOB,
    PRIMARY KEY (device, stream, start_us)
) WITHOUT ROWID;
CREATE INDEX hours_by_time ON hours (start_us);

-- Per frame (optional, short retention): the data behind a percentile.
CREATE TABLE frames (
    device TEXT NOT NULL,
    stream TEXT NOT NULL,
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    capture_us INTEGER NOT NULL,
    available_us INTEGER NOT NULL,
    glass_to_hls_ms REAL NOT NULL,
    encode_ms REAL NOT NULL,
    publish_ms REAL NOT NULL,
    origin_delivery_ms REAL NOT NULL,
    uncertainty_ms REAL NOT NULL,
    by_fingerprint INTEGER NOT NULL,
    PRIMARY KEY (device, stream, session, seq)
) WITHOUT ROWID;
CREATE INDEX frames_by_capture ON frames (device, stream, capture_us);
CREATE INDEX frames_by_time ON frames (capture_us);

-- How far the roll-ups are done: windows before `done_us` are rolled up.
CREATE TABLE rollup_state (
    kind TEXT PRIMARY KEY,
    done_us INTEGER NOT NULL
);

-- Which collector reads which device (DESIGN.md, "Several collectors");
-- only meaningful on a shared PostgreSQL, kept here so both schemas match.
CREATE TABLE leases (
    device TEXT PRIMARY KEY,
    collector TEXT NOT NULL,
    expires_us INTEGER NOT NULL
);
