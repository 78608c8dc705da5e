#!/usr/bin/env python3
"""The floor a full sync is measured against: what simply downloading the same Prism exports
takes, done the way a client that knows the API would do it. Creates every export at once,
polls them together (first poll after 0.2 s, then x1.5, as the collector does), downloads each
signed URL as soon as it is ready (all in parallel) and discards the bytes.

Usage: download_exports.py BASE_URL TOKEN_FILE [CATEGORY ...]
Prints one JSON line: wall seconds, bytes, rows (newlines, an upper bound) per category.
Talks only to BASE_URL (the simulator on loopback) and the signed URLs it hands out.
"""

import concurrent.futures as cf
import json
import sys
import time
import urllib.request

CATEGORIES = [
    "device_information",
    "filevault",
    "application_firewall",
    "gatekeeper_and_xprotect",
    "startup_settings",
    "installed_profiles",
    "apps",
]


def main():
    base = sys.argv[1].rstrip("/")
    token = open(sys.argv[2]).read().strip()
    cats = sys.argv[3:] or CATEGORIES
    api = base if base.endswith("/api/v1") else base + "/api/v1"
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(method, url, body=None):
        req = urllib.request.Request(url, method=method, headers=auth,
                                     data=json.dumps(body).encode() if body else None)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def one(cat):
        e = call("POST", f"{api}/prism/export", {
            "category": cat, "blueprint_ids": [], "device_families": [],
            "filter": {}, "columns": [], "sort_by": ""})
        delay = 0.2
        while True:
            time.sleep(delay)
            e = call("GET", f"{api}/prism/export/{e['id']}")
            if e.get("status") == "success" and e.get("signed_url"):
                break
            if e.get("status") == "failed":
                raise SystemExit(f"{cat}: export failed: {e.get('error_msg')}")
            delay = min(delay * 1.5, 30.0)
        n = rows = 0
        # The signed URL carries its own credentials: no bearer header.
        with urllib.request.urlopen(e["signed_url"], timeout=600) as r:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
                rows += chunk.count(b"\n")
        return cat, n, rows

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(len(cats)) as pool:
        results = list(pool.map(one, cats))
    wall = time.monotonic() - t0
    print(json.dumps({
        "wall_s": round(wall, 2),
        "bytes": sum(r[1] for r in results),
        "per_category": {c: {"bytes": n, "lines": rows} for c, n, rows in results},
    }))


if __name__ == "__main__":
    main()
