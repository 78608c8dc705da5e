#!/usr/bin/env python3
"""A plain one-request-per-device client, the way most peers collect: walk /devices, then
for each device GET /devices/{id}/details and /devices/{id}/apps, one request at a time over
one keep-alive connection, parsing each body. The yardstick for the collector's full sync of
the same three kinds of data on loopback.

Usage: n_plus_one.py BASE_URL TOKEN_FILE
Prints one JSON line: wall seconds, requests, devices, apps.
"""

import http.client
import json
import sys
import time
import urllib.parse


def main():
    base = urllib.parse.urlparse(sys.argv[1].rstrip("/"))
    token = open(sys.argv[2]).read().strip()
    prefix = base.path if base.path.endswith("/api/v1") else base.path + "/api/v1"
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    requests = 0

    def get(path):
        nonlocal requests
        conn.request("GET", prefix + path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        requests += 1
        if r.status != 200:
            raise SystemExit(f"GET {path}: {r.status} {body[:200]!r}")
        return json.loads(body)

    t0 = time.monotonic()
    devices, offset = [], 0
    while True:
        page = get(f"/devices?limit=300&offset={offset}")
        devices.extend(page)
        if len(page) < 300:
            break
        offset += 300
    apps = 0
    for d in devices:
        get(f"/devices/{d['device_id']}/details")
        apps += len(get(f"/devices/{d['device_id']}/apps").get("apps", []))
    print(json.dumps({"wall_s": round(time.monotonic() - t0, 2), "requests": requests,
                      "devices": len(devices), "apps": apps}))


if __name__ == "__main__":
    main()
