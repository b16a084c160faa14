import json, sys
from patchenv import checked_json
def load(p):
    try: return checked_json.read(p, trust=True)
    except Exception: return json.load(open(p))
a, b = load(sys.argv[1]), load(sys.argv[2])
TIME = ("time", "_s", "wall", "seconds", "speedup", "speed_up", "overhead")
def strip(r):
    if isinstance(r, dict): return {k: strip(v) for k, v in r.items() if not any(t in k for t in TIME)}
    if isinstance(r, list): return [strip(v) for v in r]
    return r
ra = sorted(a["runs"], key=lambda r: (r["selector"], r["seed"])); rb = sorted(b["runs"], key=lambda r: (r["selector"], r["seed"]))
assert len(ra) == len(rb), (len(ra), len(rb))
diff = 0
for x, y in zip(ra, rb):
    sx, sy = strip(x), strip(y)
    for k in sorted(set(sx) | set(sy)):
        if sx.get(k) != sy.get(k):
            diff += 1; print(x["selector"], x["seed"], k, sx.get(k), sy.get(k))
print("runs", len(ra), "fields compared", sum(len(strip(r)) for r in ra), "differences", diff)
