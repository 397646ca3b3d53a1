"""libtorrent (PyPI wheel) as an independent BitTorrent client for swarmvm's interop tests
and benchmarks. Loopback only: DHT, LSD, UPnP, NAT-PMP and uTP off, TCP on 127.0.0.1.

  lt_tool.py create DIR OUT.torrent [TRACKER]     v1-only torrent of DIR (libtorrent's creator)
  lt_tool.py seed TORRENT SAVE_PATH [SECONDS] [seed-mode]
                                                  seed; prints {"port": N} once seeding. With
                                                  seed-mode the data is trusted unchecked, so a
                                                  corrupted copy is served as it is (a bad peer)
  lt_tool.py fetch TORRENT|MAGNET SAVE_PATH PEER|- SECONDS [TRACKER...]
                                                  download; prints {"seconds": s, "bytes": n}
Every command is bounded by SECONDS (default 120) and exits non-zero on failure.
"""
import json
import os
import sys
import time

import libtorrent as lt


def session(listen="127.0.0.1:0"):
    settings = {
        "listen_interfaces": listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
        "tick_interval": 50,
        "connection_speed": 200,
        "unchoke_slots_limit": 64,
        "request_timeout": 5,
    }
    return lt.session(settings)


def wait_listening(ses, limit=10):
    end = time.time() + limit
    while ses.listen_port() == 0 and time.time() < end:
        time.sleep(0.01)
    return ses.listen_port()


def create(directory, out, tracker=None):
    fs = lt.file_storage()
    lt.add_files(fs, directory)
    t = lt.create_torrent(fs, 0, lt.create_torrent.v1_only)
    if tracker:
        t.add_tracker(tracker)
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(directory)))
    with open(out, "wb") as f:
        f.write(lt.bencode(t.generate()))


def seed(torrent, save_path, seconds=120, mode=""):
    ses = session()
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_path
    if mode == "seed-mode":
        params.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(params)
    end = time.time() + float(seconds)
    while time.time() < end:
        st = h.status()
        if st.is_seeding:
            break
        if st.errc.value() != 0:
            sys.exit("seed error: " + st.errc.message())
        time.sleep(0.02)
    else:
        sys.exit("never started seeding (data does not match?)")
    print(json.dumps({"port": wait_listening(ses)}), flush=True)
    while time.time() < end:
        time.sleep(0.2)


def fetch(source, save_path, peer, seconds, trackers):
    ses = session()
    start = time.time()
    if source.startswith("magnet:"):
        params = lt.parse_magnet_uri(source)
        params.save_path = save_path
    else:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(source)
        params.save_path = save_path
    h = ses.add_torrent(params)
    for t in trackers:
        h.add_tracker({"url": t})
    if peer != "-":
        host, port = peer.rsplit(":", 1)
        h.connect_peer((host, int(port)))
    end = start + float(seconds)
    while time.time() < end:
        st = h.status()
        if st.is_seeding:
            print(json.dumps({"seconds": time.time() - start, "bytes": st.total_wanted_done}), flush=True)
            return
        time.sleep(0.005)
    sys.exit("timed out at %.1f%%" % (h.status().progress * 100))


def main(argv):
    cmd = argv[1]
    if cmd == "create":
        create(argv[2], argv[3], argv[4] if len(argv) > 4 else None)
    elif cmd == "seed":
        seed(argv[2], argv[3], argv[4] if len(argv) > 4 else 120, argv[5] if len(argv) > 5 else "")
    elif cmd == "fetch":
        fetch(argv[2], argv[3], argv[4], argv[5], argv[6:])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
