//! docs/api.md's examples are what the API answers: each JSON example under
//! a route's heading decodes into that route's response type (the same
//! types the collector serializes), and nothing in it is left unread.

use glasswatch_collector::dashboard::StreamLatest;
use glasswatch_common::api::{
    EventsResponse, FramesResponse, SeriesResponse, StorageStatus, ViewerSeriesResponse,
};
use glasswatch_common::messages::Viewer;
use serde::de::DeserializeOwned;

const DOC: &str = include_str!("../../docs/api.md");

/// The first ```json block after the heading that starts with `heading`.
fn example(heading: &str) -> &'static str {
    let at = DOC
        .find(&format!("## `{heading}"))
        .unwrap_or_else(|| panic!("docs/api.md has no section {heading}"));
    let rest = &DOC[at..];
    let start = rest.find("```json\n").expect("a json example") + 8;
    let len = rest[start..].find("```").expect("a closed example");
    &rest[start..start + len]
}

/// Decodes strictly: the example, re-encoded, must equal itself (no field
/// the type does not know).
fn check<T: DeserializeOwned + serde::Serialize>(heading: &str) -> T {
    let text = example(heading);
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let typed: T =
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{heading}: {e}\n{text}"));
    assert_eq!(serde_json::to_value(&typed).unwrap(), value, "{heading}");
    typed
}

#[test]
fn storage_routes_match_their_examples() {
    let s: SeriesResponse = check("GET /api/v1/streams/{device}/{stream}/series");
    assert_eq!(s.points.len(), 1);
    let v: ViewerSeriesResponse = check("GET /api/v1/streams/{device}/{stream}/viewer/series");
    assert_eq!(v.points[0].viewers, 1);
    let f: FramesResponse = check("GET /api/v1/streams/{device}/{stream}/frames");
    assert_eq!(f.frames[0].session.len(), 16);
    let e: EventsResponse = check("GET /api/v1/devices/{device}/events");
    assert_eq!(e.events.len(), 2);
    let st: StorageStatus = check("GET /api/v1/storage");
    assert!(st.writable);
}

#[test]
fn dashboard_routes_match_their_examples() {
    let s: StreamLatest = check("GET /api/v1/streams/{device}/{stream}`");
    assert_eq!(s.bands_ms, [100.0, 500.0, 2000.0]);
    let v: serde_json::Value =
        serde_json::from_str(example("POST /api/v1/streams/{device}/{stream}/viewer")).unwrap();
    assert!(v["page"].is_string() && v["method"] == "rvfc");
    let v: Viewer = check("GET /api/v1/streams/{device}/{stream}/viewer`");
    assert!(v.frames > 0);
}
