#!/usr/bin/env python3
"""Simulated devices for bench/collector_memory.sh: one real agent's traffic, N times.

    fanout.py PORT DEVICE STREAM N [--root glasswatch] [--mirror PORT2]

Subscribes to the real device's status, frame batches and stats and republishes
each, rewritten, as devices sim0 .. simN-1 (same stream id): their status
advertises the real stream's hls_url, so the collector runs one HLS receiver
and one record store per simulated device over real traffic. The stamps in the
stream carry the real stream's tag, so the collector matches the simulated
streams by fingerprint. Clock pings to a simulated device are answered at once
from this process (same machine, same clock). Payloads are rewritten as bytes
(only the "device" field changes), which keeps this process cheap next to the
collector it feeds. With --mirror, everything is also published to a second
broker on PORT2: the real device's messages as they are and the simulated
devices' (so a second collector there sees the same traffic), the second
collector's clock pings to the real device are passed on to the first broker
and the real device's pongs back, and pings to simulated devices there are
answered there. Prints READY once subscribed (to both brokers); runs until
SIGTERM. SIGUSR1 silences sim0 (nothing relayed for it, its pings unanswered:
a device gone quiet without a Last Will) and the next SIGUSR1 brings it back.
Works with paho-mqtt 1.6 and 2.x.
"""
import argparse
import json
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", type=int)
    ap.add_argument("device")
    ap.add_argument("stream")
    ap.add_argument("n", type=int)
    ap.add_argument("--root", default="glasswatch")
    ap.add_argument("--mirror", type=int, help="port of a second broker that gets the same traffic")
    args = ap.parse_args()
    devices = args.root + "/v1/devices/"
    real = devices + args.device
    sims = ["sim%d" % k for k in range(args.n)]
    field = b'"device":"%s"' % args.device.encode()
    counts = {"status": 0, "frames": 0, "stats": 0, "pongs": 0}
    done = threading.Event()
    silent = set()

    def rewrite(payload, sim):
        out = payload.replace(field, b'"device":"%s"' % sim.encode(), 1)
        if out == payload:
            body = json.loads(payload)
            body["device"] = sim
            out = json.dumps(body, separators=(",", ":")).encode()
        return out

    def on_connect(client, userdata, flags, rc, *rest):  # 1.6: rc is an int; 2.x: a ReasonCode
        if getattr(rc, "is_failure", rc != 0):
            print("connection refused: %s" % rc, file=sys.stderr)
            done.set()
            return
        if client is mirror:
            client.subscribe([(devices + "+/clock/ping", 0)])
            return
        subs = [(real + "/status", 1),
                (real + "/streams/%s/frames" % args.stream, 1),
                (real + "/streams/%s/stats" % args.stream, 0),
                (devices + "+/clock/ping", 0)]
        if mirror is not None:
            subs.append((real + "/clock/pong", 0))
        client.subscribe(subs)

    subscribed = set()

    def on_subscribe(client, userdata, mid, *rest):
        subscribed.add(id(client))
        if len(subscribed) == (1 if mirror is None else 2):
            print("READY", flush=True)

    def pong(client, topic, payload):
        sim = topic[len(devices):].split("/", 1)[0]
        if sim not in sims:
            return False
        if sim in silent:
            return True
        now = time.time_ns() // 1000
        ping = json.loads(payload)
        pong = {"schema": "glasswatch.clock_pong/1", "nonce": ping["nonce"],
                "t1_us": ping["t1_us"], "t2_us": now, "t3_us": time.time_ns() // 1000}
        client.publish(devices + sim + "/clock/pong", json.dumps(pong), qos=0)
        counts["pongs"] += 1
        return True

    def on_message(client, userdata, msg):
        if client is mirror:
            # The second collector's pings: simulated devices answer here, the
            # real device's go on to the first broker (its agent listens there).
            if not pong(client, msg.topic, msg.payload) and msg.topic == real + "/clock/ping":
                source.publish(msg.topic, msg.payload, qos=0)
            return
        if msg.topic.endswith("/clock/ping"):
            pong(client, msg.topic, msg.payload)
            return
        if msg.topic.endswith("/clock/pong"):
            mirror.publish(msg.topic, msg.payload, qos=0)
            return
        leaf = msg.topic[len(real) + 1:]
        kind = leaf.rsplit("/", 1)[-1]
        # The agent's status is retained and QoS 1, its batches QoS 1, its stats QoS 0.
        qos, retain = {"status": (1, True), "frames": (1, False), "stats": (0, False)}[kind]
        targets = [source]
        if mirror is not None:
            mirror.publish(msg.topic, msg.payload, qos=qos, retain=retain)
            targets.append(mirror)
        for sim in sims:
            if sim in silent:
                continue
            out = rewrite(msg.payload, sim)
            for c in targets:
                c.publish(devices + sim + "/" + leaf, out, qos=qos, retain=retain)
        counts[kind] += 1

    kw = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION1} \
        if hasattr(mqtt, "CallbackAPIVersion") else {}

    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def toggle(*_):
        if sims and sims[0] in silent:
            silent.discard(sims[0])
        elif sims:
            silent.add(sims[0])
        print("sim0 %s" % ("silent" if silent else "back"), flush=True)
    signal.signal(signal.SIGUSR1, toggle)
    # Both exist before either loop starts, so the callbacks can tell them apart.
    source = mqtt.Client(client_id="glasswatch-bench-fanout", **kw)
    mirror = None
    if args.mirror is not None:
        mirror = mqtt.Client(client_id="glasswatch-bench-fanout-mirror", **kw)
    for c, port in ((source, args.port), (mirror, args.mirror)):
        if c is None:
            continue
        c.max_inflight_messages_set(4096)
        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
    while not done.wait(0.5):
        pass
    for c in (source, mirror):
        if c is not None:
            c.loop_stop()
            c.disconnect()
    print("relayed to %d devices: %d statuses, %d frame batches, %d stats; %d pongs"
          % (args.n, counts["status"], counts["frames"], counts["stats"], counts["pongs"]),
          flush=True)


if __name__ == "__main__":
    main()
