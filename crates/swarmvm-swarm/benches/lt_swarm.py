"""libtorrent's side of swarmvm-swarm's swarm benchmark: one seeder and N fetchers in this
process on 127.0.0.1 over TCP (tuned for loopback as in FIELD-NOTES), every fetcher
connected to the seeder and to every other fetcher.

  lt_swarm.py TORRENT DATA_PARENT N OUT_DIR
prints {"fetchers": N, "seconds": s, "seeder_uploaded": bytes} once every fetcher has it all.
"""
import json
import sys
import time

import libtorrent as lt

SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
    "alert_mask": 0,
    "tick_interval": 50,
    "connection_speed": 500,
    "unchoke_slots_limit": 64,
    "max_out_request_queue": 1500,
    "send_buffer_watermark": 8 * 1024 * 1024,
    "cache_size": 8192,
}


def params(torrent, save_path):
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = save_path
    return p


def main():
    torrent, data_parent, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    seeder = lt.session(SETTINGS)
    sh = seeder.add_torrent(params(torrent, data_parent))
    deadline = time.time() + 120
    while not sh.status().is_seeding:
        if time.time() > deadline:
            sys.exit("seeder never started")
        time.sleep(0.01)
    fetchers = [lt.session(SETTINGS) for _ in range(n)]
    for s in [seeder] + fetchers:
        while s.listen_port() == 0:
            time.sleep(0.01)
    start = time.time()
    handles = [f.add_torrent(params(torrent, "%s/lt-%d" % (out, i))) for i, f in enumerate(fetchers)]
    for i, h in enumerate(handles):
        h.connect_peer(("127.0.0.1", seeder.listen_port()))
        for j, other in enumerate(fetchers):
            if j != i:
                h.connect_peer(("127.0.0.1", other.listen_port()))
    while not all(h.status().is_seeding for h in handles):
        if time.time() > deadline + 120:
            sys.exit("fetchers did not finish")
        time.sleep(0.002)
    seconds = time.time() - start
    print(json.dumps({"fetchers": n, "seconds": seconds, "seeder_uploaded": sh.status().total_payload_upload}))


if __name__ == "__main__":
    main()
