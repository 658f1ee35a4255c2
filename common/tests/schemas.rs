//! The JSON Schemas in `docs/schemas/` are those the Rust types generate, and the example
//! payloads in `docs/mqtt.md` are what the types read and write.
//!
//! `GLASSWATCH_UPDATE_SCHEMAS=1 cargo test -p glasswatch-common --test schemas` rewrites the
//! schema files.

use std::path::{Path, PathBuf};

use glasswatch_common::messages::{
    decode, encode, json_schemas, ClockPing, ClockPong, FramesBatch, Latency, Message, Stats,
    Status, Viewer, SCHEMA_CLOCK_PING, SCHEMA_CLOCK_PONG, SCHEMA_FRAMES, SCHEMA_LATENCY,
    SCHEMA_STATS, SCHEMA_STATUS, SCHEMA_VIEWER,
};
use serde_json::Value;

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// Pretty JSON with a trailing newline, as the files are written.
fn file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a JSON value serializes");
    text.push('\n');
    text
}

#[test]
fn docs_schemas_are_current() {
    let dir = docs_dir().join("schemas");
    if std::env::var_os("GLASSWATCH_UPDATE_SCHEMAS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, schema) in json_schemas() {
            std::fs::write(dir.join(name), file_text(&schema)).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (name, schema) in json_schemas() {
        let path = dir.join(name);
        // Compared as JSON values, so that key order (which depends on serde_json's
        // `preserve_order` feature, unified across the workspace) does not matter.
        let on_disk = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if on_disk.as_ref() != Some(&schema) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "docs/schemas is stale: run GLASSWATCH_UPDATE_SCHEMAS=1 cargo test -p glasswatch-common \
         --test schemas (differing: {})",
        stale.join(", ")
    );
}

#[test]
fn every_payload_schema_pins_its_schema_field() {
    let expected = [
        ("status.schema.json", SCHEMA_STATUS),
        ("frames.schema.json", SCHEMA_FRAMES),
        ("stats.schema.json", SCHEMA_STATS),
        ("clock_ping.schema.json", SCHEMA_CLOCK_PING),
        ("clock_pong.schema.json", SCHEMA_CLOCK_PONG),
    ];
    let schemas = json_schemas();
    for (file, schema_name) in expected {
        let (_, schema) = schemas.iter().find(|(n, _)| *n == file).unwrap();
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file}"
        );
        assert_eq!(
            schema["properties"]["schema"]["const"], schema_name,
            "{file}"
        );
        let required = schema["required"].as_array().unwrap();
        assert!(required.contains(&Value::from("schema")), "{file}");
        // Unknown fields must stay allowed: readers ignore them.
        assert!(schema.get("additionalProperties").is_none(), "{file}");
    }
    let (_, status) = schemas
        .iter()
        .find(|(n, _)| *n == "status.schema.json")
        .unwrap();
    let required: Vec<&str> = status["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        {
            let mut r = required.clone();
            r.sort_unstable();
            r
        },
        ["device", "online", "schema", "ts_us"]
    );
}

/// Decodes `payload` as `T`, encodes the result again, and checks nothing was lost: a field the
/// type does not know (a typo in the docs) would be dropped and show up here.
fn round_trip<T: Message + std::fmt::Debug + PartialEq>(payload: &Value) {
    let bytes = serde_json::to_vec(payload).unwrap();
    let decoded: T = decode(&bytes).unwrap_or_else(|e| panic!("{e}\n{payload:#}"));
    let encoded = encode(&decoded).unwrap();
    let back: Value = serde_json::from_slice(&encoded).unwrap();
    assert_eq!(&back, payload, "{} example does not round-trip", T::NAME);
    assert_eq!(decode::<T>(&encoded).unwrap(), decoded);
}

/// Every ```json block of `docs/mqtt.md` that has a `"schema"` is a payload of that type.
#[test]
fn docs_mqtt_examples_round_trip() {
    let text = std::fs::read_to_string(docs_dir().join("mqtt.md")).unwrap();
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```json" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(body.join("\n"));
        }
    }
    let mut seen = Vec::new();
    for block in &blocks {
        let v: Value = serde_json::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let Some(schema) = v.get("schema").and_then(Value::as_str) else {
            continue;
        };
        match schema {
            SCHEMA_STATUS => round_trip::<Status>(&v),
            SCHEMA_FRAMES => round_trip::<FramesBatch>(&v),
            SCHEMA_STATS => round_trip::<Stats>(&v),
            SCHEMA_CLOCK_PING => round_trip::<ClockPing>(&v),
            SCHEMA_CLOCK_PONG => round_trip::<ClockPong>(&v),
            SCHEMA_LATENCY => round_trip::<Latency>(&v),
            SCHEMA_VIEWER => round_trip::<Viewer>(&v),
            other => panic!("docs/mqtt.md has an example of unknown schema {other}"),
        }
        seen.push(schema.to_owned());
    }
    for schema in [
        SCHEMA_STATUS,
        SCHEMA_FRAMES,
        SCHEMA_STATS,
        SCHEMA_CLOCK_PING,
        SCHEMA_CLOCK_PONG,
        SCHEMA_LATENCY,
        SCHEMA_VIEWER,
    ] {
        assert!(
            seen.iter().any(|s| s == schema),
            "docs/mqtt.md has no example of {schema}"
        );
    }
}
