#!/usr/bin/env python3
"""http_load.py — POST pre-built batches over keep-alive connections.

    http_load.py URL BATCH_FILE CONNECTIONS [HEADER: VALUE ...]

BATCH_FILE holds one JSON body per line. CONNECTIONS processes each keep one
HTTP/1.1 connection and send every CONNECTIONS-th batch, waiting for each
answer (so a triaged answer means the batch was committed). Prints one line:
"batches N alerts N seconds S alerts_per_s R errors E".
"""
import http.client
import json
import multiprocessing as mp
import sys
import time
import urllib.parse


def worker(args):
    url, bodies, headers, start = args
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    errors = 0
    while time.time() < start:
        time.sleep(0.001)
    for body in bodies:
        conn.request("POST", u.path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status >= 300:
            errors += 1
            if errors < 3:
                sys.stderr.write("HTTP %d\n" % r.status)
    conn.close()
    return errors


def main():
    url, path, conns = sys.argv[1], sys.argv[2], int(sys.argv[3])
    headers = {"Content-Type": "application/json"}
    for h in sys.argv[4:]:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    lines = [l.rstrip("\n").encode() for l in open(path)]
    alerts = sum(len(json.loads(l)) for l in lines)
    start = time.time() + 0.5
    jobs = [(url, lines[i::conns], headers, start) for i in range(conns)]
    with mp.Pool(conns) as pool:
        errors = sum(pool.map(worker, jobs))
    secs = time.time() - start
    print("batches %d alerts %d seconds %.3f alerts_per_s %.0f errors %d"
          % (len(lines), alerts, secs, alerts / secs, errors))


if __name__ == "__main__":
    main()
