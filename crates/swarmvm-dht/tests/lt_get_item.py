#!/usr/bin/env python3
"""libtorrent as a stock BEP 44 client: joins a private DHT through the nodes given, gets the
mutable item of a key and salt, and writes it as a vector for verify_dht_item.py.

    lt_get_item.py HOST:PORT[,HOST:PORT...] HEX_KEY SALT OUT.json

Exit 0 once an item was found (its seq, value and signature written), 1 after 30 s without.
Only the nodes given are contacted: no public router, no LSD, UPnP or NAT-PMP.
"""

import json
import sys
import time

import libtorrent as lt


def main():
    nodes = [n.rsplit(":", 1) for n in sys.argv[1].split(",")]
    key = bytes.fromhex(sys.argv[2])
    salt = sys.argv[3].encode()
    out = sys.argv[4]
    session = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_bootstrap_nodes": sys.argv[1],
        # Every node of a test DHT is on 127.0.0.1: let several of one address in.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "alert_mask": lt.alert.category_t.dht_notification | lt.alert.category_t.error_notification,
    })
    for host, port in nodes:
        session.add_dht_node((host, int(port)))
    deadline = time.time() + 30
    asked = 0
    while time.time() < deadline:
        if time.time() >= asked + 2:
            session.dht_get_mutable_item(key, salt)
            asked = time.time()
        for alert in session.pop_alerts():
            if isinstance(alert, lt.dht_mutable_item_alert) and alert.seq > 0:
                value = alert.item
                if not isinstance(value, bytes):
                    print("v is not a byte string: %r" % (value,))
                    sys.exit(1)
                json.dump({
                    "k": bytes(alert.key).hex(),
                    "salt": bytes(alert.salt).decode(),
                    "seq": alert.seq,
                    "v": value.hex(),
                    "sig": bytes(alert.signature).hex(),
                    "authoritative": alert.authoritative,
                }, open(out, "w"))
                print("found seq %d" % alert.seq)
                return
        time.sleep(0.1)
    print("no item within 30 s")
    sys.exit(1)


if __name__ == "__main__":
    main()
