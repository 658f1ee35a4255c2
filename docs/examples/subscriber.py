#!/usr/bin/env python3
"""A minimal Glasswatch MQTT subscriber (see docs/mqtt.md).

Prints one line per message under {root}/v1/devices/#. Exits 0 once --count
distinct frame records have arrived, 1 on --timeout or a connection failure,
3 when a payload breaks its JSON Schema (with --validate DIR). Works with
paho-mqtt 1.6 and 2.x.
"""
import argparse, json, pathlib, sys, time

import paho.mqtt.client as mqtt

# Last topic level -> JSON Schema file in docs/schemas/.
SCHEMA_FILES = {
    "status": "status.schema.json",
    "frames": "frames.schema.json",
    "stats": "stats.schema.json",
    "ping": "clock_ping.schema.json",
    "pong": "clock_pong.schema.json",
    "latency": "latency.schema.json",
}


def load_validators(directory):
    import jsonschema

    validators = {}
    for kind, name in SCHEMA_FILES.items():
        schema = json.loads((pathlib.Path(directory) / name).read_text())
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validators[kind] = cls(schema)
    return validators


def summary(kind, p, seen):
    if kind == "status":
        if not p["online"]:
            return "OFFLINE (%s)" % p.get("reason", "?")
        streams = ", ".join(s["id"] for s in p.get("streams", []))
        return "online %s %s %s, streams: %s" % (
            p.get("host", "?"), p.get("agent_version", "?"), p.get("arch", "?"), streams)
    if kind == "frames":
        # QoS 1 may deliver records twice: count each (device, stream, session, seq) once.
        keys = [(p["device"], p["stream"], f["session"], f["seq"]) for f in p["frames"]]
        new = [k for k in keys if k not in seen]
        seen.update(new)
        seqs = [f["seq"] for f in p["frames"]] or [None]
        return "seq %s-%s (%d frames, %d new)" % (min(seqs), max(seqs), len(keys), len(new))
    if kind == "stats":
        return "%.1f fps, %.1f kbit/s, backlog %d" % (
            p["publisher_fps"], p["bitrate_kbps"], p["report_backlog"])
    if kind in ("ping", "pong"):
        return "nonce %d" % p["nonce"]
    if kind == "latency":
        if not p["frames"]:
            return "no frames over HLS (%s)" % (p["hls"]["mode"] or "waiting for HLS")
        return "%d frames, glass-to-HLS p50 %.0f ms p95 %.0f ms, dropped %d, clock %s" % (
            p["frames"], p["p50_ms"], p["p95_ms"], p["dropped"],
            "±%.1f ms" % p["clock"]["uncertainty_ms"] if p["clock"]["synced"] else "not synced")
    return p.get("schema", "?")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--root", default="glasswatch", help="topic root (default glasswatch)")
    ap.add_argument("--count", type=int, default=0, help="exit 0 after N frame records (0: never)")
    ap.add_argument("--timeout", type=float, default=0, help="exit 1 after S seconds (0: never)")
    ap.add_argument("--validate", metavar="DIR", help="check payloads against the schemas in DIR")
    args = ap.parse_args()
    validators = load_validators(args.validate) if args.validate else {}
    prefix = args.root + "/v1/devices/"
    state = {"seen": set(), "exit": None}

    def on_connect(client, userdata, flags, rc, *rest):  # 1.6: rc is an int; 2.x: a ReasonCode
        if getattr(rc, "is_failure", rc != 0):
            print("connection refused: %s" % rc, file=sys.stderr)
            state["exit"] = 1
        else:
            client.subscribe(prefix + "#", qos=1)

    def on_message(client, userdata, msg):
        if not msg.topic.startswith(prefix):
            return
        kind = msg.topic.rsplit("/", 1)[-1]
        if not msg.payload:  # someone cleared a retained message
            print(msg.topic, "(cleared)")
            return
        try:
            payload = json.loads(msg.payload)
            if kind in validators:
                validators[kind].validate(payload)
            line = summary(kind, payload, state["seen"])
        except Exception as e:  # not JSON, a schema violation, or a missing field
            print("%s INVALID: %s" % (msg.topic, str(e).splitlines()[0]), file=sys.stderr)
            state["exit"] = 3
            return
        print(msg.topic, line, flush=True)
        if args.count and len(state["seen"]) >= args.count:
            state["exit"] = 0

    api = getattr(mqtt, "CallbackAPIVersion", None)  # paho-mqtt 2.x only
    client = mqtt.Client(api.VERSION2) if api else mqtt.Client()
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(args.host, args.port, keepalive=30)
    except OSError as e:
        print("cannot connect to %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while state["exit"] is None:
        if deadline is not None and time.monotonic() >= deadline:
            print("timeout: %d frame records seen" % len(state["seen"]), file=sys.stderr)
            state["exit"] = 1
        elif client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
            print("connection lost", file=sys.stderr)
            state["exit"] = 1
    client.disconnect()
    return state["exit"]


if __name__ == "__main__":
    sys.exit(main())
