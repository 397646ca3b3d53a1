"""libtorrent's side of the namespace benchmark (benches/testbed.rs): one peer, run inside
the namespace given to it, over TCP, finding the others through the tracker only.

  lt_peer.py TORRENT SAVE_PATH LISTEN_IP TRACKER_URL

Seeds when SAVE_PATH already holds the data, fetches into it otherwise. Prints one JSON line
{"event": "started"} once the torrent is added, {"event": "complete"} once it holds everything (at once for a seeder), and when its stdin
closes {"event": "stopped", "uploaded": N, "downloaded": N} (payload bytes), then exits.
"""
import json
import sys
import threading
import time

import libtorrent as lt


def main():
    torrent, save_path, ip, tracker = sys.argv[1:5]
    session = lt.session({
        "listen_interfaces": "%s:6881" % ip,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "alert_mask": 0,
    })
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_path
    params.trackers = [tracker]
    handle = session.add_torrent(params)
    print(json.dumps({"event": "started"}), flush=True)
    closed = threading.Event()

    def wait_stdin():
        sys.stdin.read()
        closed.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    said = False
    deadline = time.time() + 600
    while not closed.is_set() and time.time() < deadline:
        if not said and handle.status().is_seeding:
            print(json.dumps({"event": "complete"}), flush=True)
            said = True
        time.sleep(0.01)
    status = handle.status()
    print(json.dumps({
        "event": "stopped",
        "uploaded": status.total_payload_upload,
        "downloaded": status.total_payload_download,
    }), flush=True)


if __name__ == "__main__":
    main()
