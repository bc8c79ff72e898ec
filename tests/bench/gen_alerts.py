#!/usr/bin/env python3
"""Write N alert messages as "key<TAB>json" lines for kcat -K'\\t'.

  gen_alerts.py N --fingerprints F [--resources R] [--order burst|spread]
                  [--grouped] [--seq] [--source S]

Fingerprint f is (resource host-<f % R>, check check-<f // R>), R defaults
to F/10 (ten checks a resource), so incidents number R: consecutive
fingerprints are on different resources, so a resource's checks are far
apart in the stream (the hardest case for the engine: nearly every new alert
attaches to an incident an earlier batch opened). --grouped makes it
(host-<f // C>, check-<f % C>) with C = F/R checks a resource: a resource's
checks are next to each other, as when a host fails and all its checks fire
together. Orders:
  burst   message j is for fingerprint j*F//N: each alert's repeats arrive
          together, as when a storm re-sends alerts (the realistic storm),
          then a local shuffle in windows of 1000 messages;
  spread  message j is for fingerprint j % F: repeats are F messages apart
          (the worst case for in-batch folding).
Times increase with j (1 ms apart). --seq adds a "seq" label (not part of
the identity) carrying j, for sequence-checked loss tests."""
import argparse, json, random, sys

ap = argparse.ArgumentParser()
ap.add_argument("n", type=int)
ap.add_argument("--fingerprints", type=int, required=True)
ap.add_argument("--resources", type=int, default=0)
ap.add_argument("--order", choices=["burst", "spread"], default="burst")
ap.add_argument("--source", default="bench")
ap.add_argument("--grouped", action="store_true")
ap.add_argument("--seq", action="store_true")
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
F, N = a.fingerprints, a.n
R = a.resources or max(1, F // 10)
C = max(1, F // R)
rnd = random.Random(a.seed)

def ts(ms):  # 2026-01-01T00:00:00Z + ms, without datetime's cost
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return "2026-01-%02dT%02d:%02d:%02d.%03dZ" % (d + 1, h, m, s, ms)

order = list(range(N))
if a.order == "burst":
    for i in range(0, N, 1000):
        w = order[i:i + 1000]
        rnd.shuffle(w)
        order[i:i + 1000] = w
out = []
for j in order:
    f = (j * F // N) if a.order == "burst" else (j % F)
    r, c = (f // C, f % C) if a.grouped else (f % R, f // R)
    res = "host-%05d" % r
    m = '{"source":"%s","resource":"%s","check":"check-%d","severity":"major","occurred_at":"%s"' % (
        a.source, res, c, ts(j))
    if a.seq:
        m += ',"labels":{"seq":"%d"}' % j
    out.append(res + "\t" + m + "}\n")
    if len(out) >= 10000:
        sys.stdout.write("".join(out))
        out = []
sys.stdout.write("".join(out))
