"""The kiosk sample app in a real headless Chromium (Debian's, driven by Playwright), on a bundle converted
from a real ML-1M slice, with a channel on loopback and the kiosk's background sync."""
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge_rec import EdgeRecommender
from edge_rec.serve import serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("EDGE_REC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NEW_TITLE = "Robots of the Red Planet"


def load_kiosk_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("kiosk_server", ROOT / "sample_apps" / "kiosk" / "server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def kiosk(converted, tmp_path):
    """A kiosk on version 1 of a channel served on loopback, syncing every second; ``publish_v2()`` adds a
    titled item and deletes one."""
    from conftest import TEXT_CACHE

    from converter.data import Item
    from converter.publish import changes_from_vectors, publish_bundle, publish_changes
    from converter.search.model import SearchModel
    from converter.text import TextEncoder
    server_module = load_kiosk_module()
    channel = tmp_path / "channel"
    publish_bundle(channel, converted["bundle"], converted["key"], name="kiosk")
    channel_server, channel_url = serve_in_thread(channel)
    state = tmp_path / "state"
    server_module.DeviceState(state).provision(converted["bundle"])
    app = server_module.Kiosk(state, converted["pub"], tmp_path / "history.db", channel_url)
    threading.Thread(target=app.sync_forever, args=(1.0,), daemon=True).start()
    http = server_module.make_server(app, "127.0.0.1", 0)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    def publish_v2(delete: str):
        with EdgeRecommender.open(converted["bundle"], converted["pub"]) as rec:
            vector = rec.items.dequantized(np.arange(1))[0]
        new = Item("robots-red-planet", NEW_TITLE, 2026, ("Sci-Fi", "Adventure"))
        search = SearchModel.load(converted["search_model"]).item_vectors(
            [new], TextEncoder(cache_dir=TEXT_CACHE).encode([new.text()]))
        changes = changes_from_vectors({new.id: vector}, {new.id: {"title": new.title, "year": 2026,
                                                                  "genres": list(new.genres)}}, [delete], {new.id: search[0]})
        publish_changes(channel, changes, converted["key"])
    yield {"url": f"http://127.0.0.1:{http.server_address[1]}/", "app": app, "publish_v2": publish_v2,
           "data": converted["data"]}
    http.shutdown()
    channel_server.shutdown()


def cards(page, grid):
    return page.eval_on_selector_all(f"#{grid} .card", "els => els.map(e => e.dataset.id)")


def open_page(chromium, url):
    page = chromium.new_page(bypass_csp=True)  # the page's CSP forbids eval, which wait_for_function uses
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(url + "?status_every=500")
    page.wait_for_function("document.querySelectorAll('#for-you .card').length > 0")
    return page, requested


def test_page_shows_recommendations_and_a_tap_updates_them(chromium, kiosk, tmp_path):
    page, requested = open_page(chromium, kiosk["url"])
    assert len(cards(page, "for-you")) == 12
    assert "signature verified" in page.inner_text("#badge")
    before = cards(page, "for-you")
    first = page.locator("#for-you .card").first
    picked = first.get_attribute("data-id")
    renders = page.get_attribute("#for-you", "data-renders")
    first.click()
    page.wait_for_function(f"document.querySelector('#for-you').dataset.renders !== '{renders}'")
    after = cards(page, "for-you")
    assert kiosk["app"].history.last(1) == [picked]  # the tap was recorded on the device
    assert after != before and picked not in after  # the list moved with the new history
    # "because you picked" is a second request the page sends alongside the list: wait for its render too
    page.wait_for_function("document.querySelectorAll('#because .card').length > 0")
    assert page.is_visible("#because-section") and cards(page, "because")
    page.screenshot(path=str(tmp_path / "kiosk.png"))
    assert all(u.startswith(kiosk["url"]) for u in requested), [u for u in requested if not u.startswith(kiosk["url"])]


def test_genre_chip_filters(chromium, kiosk):
    page, _ = open_page(chromium, kiosk["url"])
    renders = page.get_attribute("#for-you", "data-renders")
    page.get_by_role("button", name="Comedy", exact=True).click()
    page.wait_for_function(f"document.querySelector('#for-you').dataset.renders !== '{renders}'")
    metas = page.eval_on_selector_all("#for-you .card .meta", "els => els.map(e => e.textContent)")
    assert metas and all("Comedy" in m for m in metas)
    assert page.get_attribute("text=Comedy", "aria-pressed") == "true"


def test_search_finds_a_known_item(chromium, kiosk):
    from converter.search.queries import spoken_title, typed
    page, _ = open_page(chromium, kiosk["url"])
    page.wait_for_selector("#search:not([hidden])")
    item = next(it for it in kiosk["data"].items if len(typed(spoken_title(it.title)).split()) >= 3)
    page.fill("#q", typed(spoken_title(item.title)))
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelectorAll('#results .card').length > 0")
    assert item.id in cards(page, "results")[:5]


def test_a_published_update_reaches_the_open_page_without_a_reload(chromium, kiosk):
    page, _ = open_page(chromium, kiosk["url"])
    page.evaluate("window.__loadedOnce = true")
    page.wait_for_function("document.querySelector('#badge').dataset.version === '1'")
    gone = cards(page, "for-you")[0]
    kiosk["publish_v2"](gone)
    page.wait_for_function("document.querySelector('#badge').dataset.version === '2'", timeout=30_000)
    assert page.evaluate("window.__loadedOnce") is True  # the same page, not reloaded
    page.wait_for_function(f"!Array.from(document.querySelectorAll('#for-you .card')).some(c => c.dataset.id === '{gone}')")
    assert "updated" in page.inner_text("#badge") or "current" in page.inner_text("#badge")
    page.fill("#q", NEW_TITLE.lower())
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelectorAll('#results .card').length > 0")
    assert "robots-red-planet" in cards(page, "results")[:3]


def test_keyboard_reaches_every_control(chromium, kiosk):
    page, _ = open_page(chromium, kiosk["url"])
    page.wait_for_selector("#search:not([hidden])")
    page.wait_for_function("document.querySelectorAll('#chips button').length > 1")
    wanted = set(page.eval_on_selector_all(
        "#q, #search button, #chips button, #for-you .card, #forget",
        "els => els.map((e, i) => { e.dataset.k = 'k' + i; return e.dataset.k; })"))
    reached = set()
    for _ in range(len(wanted) + 10):
        page.keyboard.press("Tab")
        key = page.evaluate("document.activeElement && document.activeElement.dataset.k")
        if key:
            reached.add(key)
    assert wanted <= reached, f"{len(wanted - reached)} controls not reachable by Tab"
    page.focus("#forget")
    page.keyboard.press("Enter")  # activates by keyboard
    page.wait_for_function("document.querySelectorAll('#for-you .card').length > 0")
    assert len(kiosk["app"].history) == 0


def request(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.mark.parametrize("method,path,body,status,needle", [
    ("POST", "api/pick", b"{not json", 400, "not JSON"),
    ("POST", "api/pick", b'["item"]', 400, "object"),
    ("POST", "api/pick", b'{"item_id": "no-such-item"}', 404, "unknown item"),
    ("POST", "api/pick", b'{"item_id": 7}', 400, "item_id"),
    ("POST", "api/pick", b"x" * 100_000, 413, "over"),
    ("GET", "api/similar?item=no-such-item", None, 404, "unknown item"),
    ("GET", "api/search?q=%20%20", None, 400, "empty"),
    ("GET", "api/recommend?k=0", None, 400, "k must"),
    ("GET", "../sample_apps/kiosk/server.py", None, 404, "not found"),
    ("GET", "static/../../README.md", None, 404, "not found"),
    ("GET", "%2e%2e/%2e%2e/etc/passwd", None, 404, "not found"),
    ("GET", "api/pick", None, 405, "takes POST"),
    ("POST", "api/recommend", b"{}", 405, "takes GET"),
    ("DELETE", "api/forget", None, 405, "not supported"),
])
def test_bad_requests_get_4xx_and_write_nothing(kiosk, method, path, body, status, needle):
    app = kiosk["app"]
    app.history.record(kiosk["data"].items[0].id)
    before = app.history.export()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    got, reply = request(kiosk["url"] + path, method, body, headers)
    assert got == status and needle in reply["error"], (got, reply)
    assert app.history.export() == before


def test_binds_to_localhost_by_default():
    import inspect
    module = load_kiosk_module()
    assert inspect.signature(module.make_server).parameters["host"].default == "127.0.0.1"
    assert module.build_parser().parse_args(["--state", "s", "--key", "k"]).host == "127.0.0.1"


def test_terminal_app_non_interactive(converted, tmp_path):
    import subprocess
    import sys
    state = tmp_path / "state"
    args = [sys.executable, str(ROOT / "sample_apps" / "terminal" / "app.py"), "--state", str(state), "--key",
            str(converted["pub"]), "--bundle", str(converted["bundle"]), "--json"]
    r = subprocess.run(args + ["-c", "search toy story", "-c", "pick 1", "-c", "history", "-c", "status"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0]["heading"].startswith("Results") and lines[0]["items"]
    assert lines[1]["heading"].startswith("Because you picked") and lines[1]["items"]
    assert lines[2][0]["item_id"] == lines[0]["items"][0]["id"]
    assert lines[3]["version"] == 1 and lines[3]["search"] is True
    r = subprocess.run(args + ["-c", "search    "], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "empty" in r.stderr and "Traceback" not in r.stderr
    shutil.rmtree(state)
