"""Benchmark the kiosk sample app in Debian's headless Chromium (Playwright): first paint, tap -> updated
recommendations on screen, and the server under 50 requests/s for 60 s (open loop, a separate process);
screenshots of the main states. Writes results/kiosk.json, kiosk.png and kiosk_*.png.

    python benchmarks/kiosk.py --bundle artifacts/ml-1m/bundle --key artifacts/keys/edge-rec.pub
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# the first-contentful-paint entry may arrive after the cards are in the DOM: wait for it (buffered observer)
FIRST_PAINT = """() => new Promise((resolve, reject) => {
  new PerformanceObserver(list => {
    const e = list.getEntriesByName('first-contentful-paint')[0];
    if (e) resolve(e.startTime);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => reject(new Error('no first-contentful-paint entry within 10 s')), 10000);
})"""
TAP = """async () => {
  const grid = document.querySelector('#for-you');
  const before = grid.dataset.renders;
  const cards = grid.querySelectorAll('.card');
  const t0 = performance.now();
  cards[Math.floor(Math.random() * cards.length)].click();
  while (grid.dataset.renders === before) await new Promise(r => requestAnimationFrame(r));
  await new Promise(r => requestAnimationFrame(r));  // the frame that shows the new list
  return performance.now() - t0;
}"""


def start_kiosk(bundle: Path, key: Path, state: Path) -> "tuple[subprocess.Popen, str]":
    proc = subprocess.Popen([sys.executable, str(ROOT / "sample_apps" / "kiosk" / "server.py"), "--state", str(state),
                             "--key", str(key), "--bundle", str(bundle), "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"the kiosk did not start: {line}")
    return proc, line.split("http://", 1)[1].split("/", 1)[0]


def browser_timings(url: str, shots: Path, chromium: str, loads: int, taps: int) -> dict:
    from playwright.sync_api import sync_playwright
    first_paint, first_cards, tap_ms = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        for i in range(loads):
            page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_function("document.querySelectorAll('#for-you .card').length > 0")
            first_cards.append(1e3 * (time.perf_counter() - t0))
            first_paint.append(page.evaluate(FIRST_PAINT))
            if i == loads - 1:
                page.screenshot(path=str(shots / "kiosk_start.png"))
                for _ in range(taps):
                    tap_ms.append(page.evaluate(TAP))
                page.screenshot(path=str(shots / "kiosk_after_picks.png"))
                page.get_by_role("button", name="Comedy", exact=True).click()
                page.wait_for_timeout(300)
                page.screenshot(path=str(shots / "kiosk_genre.png"))
                if page.is_visible("#search"):
                    page.fill("#q", "a 90s comedy")
                    page.press("#q", "Enter")
                    page.wait_for_function("document.querySelectorAll('#results .card').length > 0")
                    page.screenshot(path=str(shots / "kiosk_search.png"))
            page.close()
        browser.close()

    def stats(values):
        return {"p50": float(np.median(values)), "p90": float(np.percentile(values, 90)), "n": len(values),
                "samples": [round(v, 2) for v in values]}
    return {"first_contentful_paint_ms": stats(first_paint), "first_cards_on_screen_ms": stats(first_cards),
            "tap_to_updated_list_ms": stats(tap_ms)}


LOAD = """
import json, random, sys, threading, time, urllib.request
url, rate, seconds, queries, items = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
paths = lambda r: r.choice(["api/recommend?k=12"] * 5 + [f"api/search?k=12&q={r.choice(queries)}"] * 3 + ["api/status"] * 1
                           + [f"api/similar?k=6&item={r.choice(items)}"] * 1)
latencies, errors, lock = [], [], threading.Lock()
def one(path):
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url + path, timeout=10) as resp:
            resp.read()
            ok = resp.status == 200
    except Exception as e:
        ok = False
    with lock:
        latencies.append(1e3 * (time.perf_counter() - t))
        if not ok:
            errors.append(path)
r = random.Random(0)
start = time.perf_counter()
threads = []
for i in range(int(rate * seconds)):  # open loop: request i leaves at i / rate, however slow the server is
    delay = start + i / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    t = threading.Thread(target=one, args=(paths(r),))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
print(json.dumps({"latencies": latencies, "errors": len(errors), "seconds": time.perf_counter() - start}))
"""


def load_test(url: str, rate: float, seconds: float, queries: list, items: list) -> dict:
    quoted = [urllib.parse.quote(q) for q in queries]
    out = subprocess.run([sys.executable, "-c", LOAD, url, str(rate), str(seconds), json.dumps(quoted), json.dumps(items)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    lat = np.array(r["latencies"])
    return {"rate_per_s": rate, "seconds": seconds, "requests": len(lat), "errors": r["errors"],
            "p50_ms": float(np.median(lat)), "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
            "mix": "50% recommend, 30% search, 10% status, 10% similar", "samples_ms": lat.round(2).tolist()}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    names = {"first_contentful_paint_ms": "first paint", "first_cards_on_screen_ms": "first cards\non screen",
             "tap_to_updated_list_ms": "tap -> updated\nlist on screen"}
    keys = list(names)
    a.boxplot([result["browser"][k]["samples"] for k in keys], showfliers=False)
    a.set_xticks(range(1, len(keys) + 1), [names[k] for k in keys], fontsize=9)
    for i, k in enumerate(keys, 1):
        a.annotate(f"p50 {result['browser'][k]['p50']:.0f} ms", (i, result["browser"][k]["p50"]),
                   textcoords="offset points", xytext=(18, 0), fontsize=8, va="center")
    a.axhline(1000, color="#c44e52", ls="--", lw=1, label="first paint target 1 s")
    a.axhline(100, color="#4c72b0", ls=":", lw=1, label="tap target 100 ms (p50)")
    a.set_ylabel("ms (headless Chromium)")
    a.set_yscale("log")
    a.legend(fontsize=8)
    load = result["load"]
    t = np.arange(len(load["samples_ms"])) / load["rate_per_s"]
    b.plot(t, load["samples_ms"], ".", ms=2, color="#4c72b0")
    b.axhline(50, color="#c44e52", ls="--", lw=1, label="p99 target 50 ms")
    b.axhline(load["p99_ms"], color="k", ls=":", lw=1, label=f"measured p99 {load['p99_ms']:.1f} ms")
    b.set_xlabel("seconds into the run")
    b.set_ylabel("request latency, ms")
    b.set_title(f"{load['rate_per_s']:.0f} requests/s for {load['seconds']:.0f} s: {load['errors']} errors", fontsize=10)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--key", required=True, help="the bundle's public key (.pub)")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--loads", type=int, default=10)
    p.add_argument("--taps", type=int, default=30)
    p.add_argument("--rate", type=float, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    from converter.provenance import machine_record
    from edge_rec import EdgeRecommender
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with EdgeRecommender.open(args.bundle, args.key) as rec:
        rng = random.Random(0)
        items = [rec.items.ids[r] for r in rng.sample(range(len(rec.items)), 200)]
        queries = [str(rec.items.metadata(int(rec.items.rows([i])[0])).get("title", i)).lower() for i in items[:50]]
        queries += ["a 90s comedy", "scary movies from the 80s", "space adventure", "romantic drama"]
    with tempfile.TemporaryDirectory() as tmp:
        server, host = start_kiosk(Path(args.bundle), Path(args.key), Path(tmp) / "state")
        url = f"http://{host}/"
        try:
            result = {"machine": machine_record(args.bundle), "url": "kiosk on 127.0.0.1, the bundle above",
                      "browser": browser_timings(url, out, args.chromium, args.loads, args.taps)}
            result["load"] = load_test(url, args.rate, args.seconds, queries, items)
        finally:
            server.terminate()
            server.wait(timeout=10)
    (out / "kiosk.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "kiosk.png")
    b, load = result["browser"], result["load"]
    print(f"first paint p50 {b['first_contentful_paint_ms']['p50']:.0f} ms; tap -> updated list p50 "
          f"{b['tap_to_updated_list_ms']['p50']:.1f} ms; {load['requests']} requests at {load['rate_per_s']:.0f}/s: "
          f"p99 {load['p99_ms']:.1f} ms, {load['errors']} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
