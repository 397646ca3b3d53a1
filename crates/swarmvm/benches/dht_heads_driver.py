"""Drives the DHT heads bench (dht_heads.rs) from inside the testbed's first namespace.

Reads a JSON config (argv[1]): {"sequencer": URL, "followers": [URL...],
"registrations": BODY, "contracts": [JWS...], "share": 0.95}. One thread per node
long-polls its GET /v1/head (?seq=&iat=&wait=10) and records when it first shows each seq.
The driver registers the wallets, waits until every follower shows seq 1, then submits the
contracts one at a time (each becomes a bundle and a head) and, after each, waits until the
share of followers have seen its seq (at most 15 s). Prints one JSON line a head:
{"seq", "seen": [seconds from the sequencer's head to each follower's, null if never]},
then {"done": true}. Only the standard library.
"""

import base64
import json
import sys
import threading
import time
import urllib.request

config = json.load(open(sys.argv[1]))
sequencer = config["sequencer"]
nodes = [sequencer] + config["followers"]
share = config.get("share", 0.95)
first_seen = {url: {} for url in nodes}  # url -> seq -> monotonic time
lock = threading.Lock()
stop = False


def claims(jws):
    payload = jws.split(".")[1] if not jws.startswith("{") else json.loads(jws)["payload"]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def watch(url):
    seq, iat = 0, 0
    while not stop:
        try:
            q = f"{url}/v1/head?seq={seq}&iat={iat}&wait=10"
            with urllib.request.urlopen(q, timeout=15) as r:
                head = json.load(r)["head"]
            c = claims(head)
            now = time.monotonic()
            seq, iat = c["seq"], c["iat"]
            with lock:
                first_seen[url].setdefault(seq, now)
        except Exception:
            time.sleep(0.1)


def post(path, body, ctype):
    req = urllib.request.Request(sequencer + path, data=body.encode(), method="POST",
                                 headers={"content-type": ctype})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def seen_by(seq):
    with lock:
        return [u for u in config["followers"] if any(s >= seq for s in first_seen[u])]


for url in nodes:
    threading.Thread(target=watch, args=(url,), daemon=True).start()

posted = time.monotonic()
post("/v1/registrations", config["registrations"], "application/json")
deadline = time.monotonic() + 180
while len(seen_by(1)) < len(config["followers"]) and time.monotonic() < deadline:
    time.sleep(0.1)
with lock:
    firsts = sorted(round(first_seen[u][1] - posted, 2) for u in config["followers"] if 1 in first_seen[u])
print(json.dumps({"ready": len(seen_by(1)), "of": len(config["followers"]), "first": firsts}), flush=True)

for n, contract in enumerate(config["contracts"]):
    seq = n + 2
    post("/v1/contracts", contract, "application/jose")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with lock:
            put = first_seen[sequencer].get(seq)
        if put is not None and len(seen_by(seq)) >= share * len(config["followers"]):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    with lock:
        put = first_seen[sequencer].get(seq)
        seen = []
        for u in config["followers"]:
            times = [t for s, t in first_seen[u].items() if s >= seq]
            seen.append(None if put is None or not times else round(min(times) - put, 3))
    print(json.dumps({"seq": seq, "seen": seen}), flush=True)

stop = True
print(json.dumps({"done": True}), flush=True)
