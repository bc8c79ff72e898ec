#!/usr/bin/env python3
"""Sequenced alert streams for the fault suite, and their exact check.

  seq.py gen SOURCE N [--first S] [--unique-every U] [--dups D] [--resources R]
      Writes "key<TAB>json" lines (kcat -K'\\t') for sequence numbers
      S..S+N-1 of SOURCE. Every message carries its sequence number as the
      label "seq" (labels other than the configured identity labels are not
      part of the fingerprint). Message s is
        - when s % U == 0 (default U = 10): a *unique* alert of its own,
          check "u<s>", on resource host-<(s // U) % R>: it must be stored as
          exactly one alert with occurrences 1 and labels.seq = s, so every
          unique sequence number is checked one by one;
        - otherwise a *duplicate* of fingerprint k = s % D (default D = 500),
          check "d<k>", on resource host-<k % R>: these make the storm
          (90 %: Redis dedup, folding), and each fingerprint's occurrences
          must equal the number of its sequence numbers sent.
      R defaults to 50 resources, so the stream opens exactly R incidents
      (every alert fires, none resolves). occurred_at grows with s (1 ms).

  seq.py pace FILE RATE
      Copies FILE to stdout at RATE lines a second (0: at once), flushing
      every 10 ms, for kcat -P reading stdin: a steady producer.

  seq.py check SOURCE MSGFILE... [--topic TOPICDUMP]
      stdin: rows "check_name<TAB>occurrences<TAB>labels.seq" of
      triaged.alert for SOURCE (psql -AtF'\\t'). Expected: every message of
      the files. With --topic (the topic read back, one JSON a line), the
      topic must first hold every sequence number of SOURCE exactly once
      (else the producer or the broker lost or doubled one, and the test is
      void). Prints one line per problem (up to 20 of each kind) and a
      summary; exits 0 only when the stored state is exact:
        missing   a unique seq with no alert   (a message lost)
        doubled   a unique seq counted twice   (a message applied twice)
        wrong     a duplicate fingerprint whose occurrences differ
        unexpected an alert of SOURCE nobody sent
"""
import json
import sys
import time


def gen(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="seq.py gen")
    ap.add_argument("source")
    ap.add_argument("n", type=int)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--unique-every", type=int, default=10)
    ap.add_argument("--dups", type=int, default=500)
    ap.add_argument("--resources", type=int, default=50)
    a = ap.parse_args(argv)
    out = []
    for s in range(a.first, a.first + a.n):
        if s % a.unique_every == 0:
            check, res = "u%d" % s, "host-%03d" % ((s // a.unique_every) % a.resources)
        else:
            k = s % a.dups
            check, res = "d%d" % k, "host-%03d" % (k % a.resources)
        ms = s
        sec, ms = divmod(ms, 1000)
        mi, sec = divmod(sec, 60)
        h, mi = divmod(mi, 60)
        d, h = divmod(h, 24)
        out.append('%s\t{"source":"%s","resource":"%s","check":"%s","severity":"major",'
                   '"occurred_at":"2026-01-%02dT%02d:%02d:%02d.%03dZ","labels":{"seq":"%d"}}\n'
                   % (res, a.source, res, check, d + 1, h, mi, sec, ms, s))
        if len(out) >= 10000:
            sys.stdout.write("".join(out))
            out = []
    sys.stdout.write("".join(out))


def pace(argv):
    path, rate = argv[0], float(argv[1])
    with open(path, "rb") as f:
        lines = f.readlines()
    out = sys.stdout.buffer
    if rate <= 0:
        out.writelines(lines)
        out.flush()
        return
    t0 = time.monotonic()
    i, n = 0, len(lines)
    while i < n:
        due = int((time.monotonic() - t0 + 0.01) * rate)  # lines due by 10 ms from now
        if due > i:
            out.writelines(lines[i:min(due, n)])
            out.flush()
            i = min(due, n)
        time.sleep(0.01)


def _msgs(paths, source):
    """(seq, check) of every message of SOURCE in the files, file order."""
    for p in paths:
        with open(p, "rb") as f:
            for line in f:
                body = line.split(b"\t", 1)[-1]
                try:
                    m = json.loads(body)
                except ValueError:
                    continue
                if not isinstance(m, dict) or m.get("source") != source:
                    continue
                yield int(m["labels"]["seq"]), m["check"]


def check(argv):
    topic = None
    if "--topic" in argv:
        i = argv.index("--topic")
        topic = argv[i + 1]
        del argv[i:i + 2]
    source, files = argv[0], argv[1:]
    sent = {}
    for s, c in _msgs(files, source):
        if s in sent:
            print("generator: seq %d twice in the message files" % s)
            return 2
        sent[s] = c
    bad = 0
    mult = {s: 1 for s in sent}   # how often the topic holds each seq
    if topic is not None:
        seen = {}
        for s, _ in _msgs([topic], source):
            seen[s] = seen.get(s, 0) + 1
        lost = sorted(set(sent) - set(seen))
        twice = sorted(s for s, n in seen.items() if n > 1)
        extra = sorted(set(seen) - set(sent))
        if lost or extra:
            print("topic: %d sent seqs absent (e.g. %s), %d never sent: the producer or "
                  "broker failed, the check is void" % (len(lost), lost[:5], len(extra)))
            return 3
        if twice:
            # A Produce retried after an injected error that the mock broker
            # had already appended (it does not deduplicate it): the topic
            # holds those messages twice, and triaged must count each message
            # the topic holds exactly once.
            print("topic: holds %d of the %d seqs twice (e.g. %s: a retried Produce); "
                  "checked against what the topic holds" % (len(twice), len(sent), twice[:5]))
            mult = seen
        else:
            print("topic: holds each of the %d seqs exactly once" % len(sent))
    want = {}   # check -> occurrences expected
    useq = {}   # unique check -> its seq
    for s, c in sent.items():
        want[c] = want.get(c, 0) + mult[s]
        if c.startswith("u"):
            useq[c] = s
    got = {}
    for line in sys.stdin:
        p = line.rstrip("\n").split("\t")
        if len(p) != 3:
            print("psql: %s" % line.rstrip())
            return 2
        got[p[0]] = (int(p[1]), p[2])
    kinds = {"missing": [], "doubled": [], "wrong": [], "unexpected": []}
    for c, n in want.items():
        g = got.get(c)
        if c in useq:
            if g is None:
                kinds["missing"].append("seq %d (alert %s) not stored" % (useq[c], c))
            elif g[0] != want[c]:
                kinds["doubled"].append("seq %d (alert %s) counted %d times, the topic holds it "
                                        "%d times" % (useq[c], c, g[0], want[c]))
            elif g[1] != str(useq[c]):
                kinds["wrong"].append("alert %s carries seq %s, sent %d" % (c, g[1], useq[c]))
        elif g is None or g[0] != n:
            kinds["wrong"].append("fingerprint %s: %d occurrences stored, %d sent"
                                  % (c, 0 if g is None else g[0], n))
    for c in got:
        if c not in want:
            kinds["unexpected"].append("alert %s (seq %s) was never sent" % (c, got[c][1]))
    for k, items in kinds.items():
        bad += len(items)
        for it in items[:20]:
            print("%s: %s" % (k, it))
        if len(items) > 20:
            print("%s: ... %d more" % (k, len(items) - 20))
    total = sum(g[0] for g in got.values())
    print("%s: %d seqs sent (%d unique alerts, %d duplicate fingerprints); stored %d alerts, "
          "%d occurrences; %d missing, %d doubled, %d wrong, %d unexpected"
          % (source, len(sent), len(useq), len(want) - len(useq), len(got), total,
             len(kinds["missing"]), len(kinds["doubled"]), len(kinds["wrong"]),
             len(kinds["unexpected"])))
    return 1 if bad or total != sum(mult.values()) else 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "gen":
        gen(sys.argv[2:])
    elif cmd == "pace":
        pace(sys.argv[2:])
    elif cmd == "check":
        sys.exit(check(sys.argv[2:]))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
