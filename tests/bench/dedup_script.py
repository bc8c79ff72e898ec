#!/usr/bin/env python3
"""dedup_script.py — Redis's CPU a fingerprint for two versions of triaged's
dedup script (daemon/dedup.c), called alternately on the same redis-server.

    dedup_script.py PORT PID OLD_DEDUP_C NEW_DEDUP_C [KEYS [CALLS [ROUNDS]]]

Reads the script out of each dedup.c (the C string literal `script`) and the
arguments it takes (four a key, s t v single, before 2026-11-27; one packed
value a key since). Each round, for each version in turn: CALLS calls of
KEYS fingerprints never seen (new keys), then the same fingerprints three
times again, firing, same severity, newer (duplicates), all pipelined on one
connection as triaged sends them; Redis's CPU (utime + stime of PID, clock
ticks) around each. Prints µs of Redis CPU a fingerprint; asserts nothing
but that every hint is the expected one (new, then duplicate)."""
import os
import re
import socket
import sys


def script_of(path):
    src = open(path).read()
    m = re.search(r'static const char script\[\] =\n(.*?);\n', src, re.S)
    return "".join(bytes(x, "ascii").decode("unicode_escape")
                   for x in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))


def enc(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def send(self, *args):
        self.s.sendall(enc(args))

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t in (b"+", b":"):
            return rest
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)


def main():
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    paths = {"previous": sys.argv[3], "shipped": sys.argv[4]}
    K = int(sys.argv[5]) if len(sys.argv) > 5 else 256
    CALLS = int(sys.argv[6]) if len(sys.argv) > 6 else 400
    ROUNDS = int(sys.argv[7]) if len(sys.argv) > 7 else 3
    hz = os.sysconf("SC_CLK_TCK")
    c = Conn(port)
    sha, packed = {}, {}
    for name, path in paths.items():
        src = script_of(path)
        packed[name] = "ARGV[a + 3]" not in src
        c.send("SCRIPT", "LOAD", src)
        sha[name] = c.read().decode()

    def cpu():
        st = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(st[11]) + int(st[12])) / hz

    def calls(name, prefix, t, want):
        for k in range(CALLS):
            keys = ["triaged:{%s%011x}" % (prefix, k * K + i) for i in range(K)]
            args = ["604800"]
            for _ in range(K):
                if packed[name]:
                    args.append("f11%d" % t)
                else:
                    args += ["f", str(t), "1", "1"]
            c.send("EVALSHA", sha[name], K, *keys, *args)
        for _ in range(CALLS):
            hints = c.read()
            if any(int(h) != want for h in hints):
                sys.exit("dedup_script: %s: a hint other than %d" % (name, want))

    res = {n: ([], []) for n in paths}
    for r in range(ROUNDS):
        for name in paths:
            prefix = "%x%x" % (r, list(paths).index(name))
            c0 = cpu()
            calls(name, prefix, 1000000, 2)
            c1 = cpu()
            for rep in range(3):
                calls(name, prefix, 1000001 + rep, 0)
            c2 = cpu()
            n = K * CALLS
            res[name][0].append((c1 - c0) / n * 1e6)
            res[name][1].append((c2 - c1) / (3 * n) * 1e6)
    for name in paths:
        new, dup = res[name]
        print("%-8s (%s a key): new keys %s µs, duplicates %s µs of Redis CPU a fingerprint"
              % (name, "one argument" if packed[name] else "four arguments",
                 ", ".join("%.2f" % x for x in new), ", ".join("%.2f" % x for x in dup)))
    c.send("FLUSHDB")
    c.read()


if __name__ == "__main__":
    main()
