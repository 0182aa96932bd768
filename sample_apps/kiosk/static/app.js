// edge-rec kiosk page: talks only to the local server (server.py); nothing is fetched from the internet.
"use strict";

const state = { genre: "", query: "", picked: null, version: null, statusEvery: 5000 };
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function param(name, value) { return value ? `&${name}=${encodeURIComponent(value)}` : ""; }

// "Matrix, The" -> "The Matrix" (catalogs such as MovieLens store titles that way)
function spoken(title) { return title.replace(/^(.*), (The|A|An)$/, "$2 $1"); }

function card(item) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "card";
  b.dataset.id = item.id;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = spoken(item.title);
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = [item.year, (item.genres || []).join(", ")].filter(Boolean).join(" · ");
  b.append(title, meta);
  b.addEventListener("click", () => pick(item));
  return b;
}

function show(id, items, emptyText) {
  const grid = $(id);
  grid.replaceChildren(...items.map(card));
  if (!items.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = emptyText;
    grid.append(p);
  }
  grid.dataset.renders = String(Number(grid.dataset.renders || 0) + 1);
}

async function refreshLists() {
  const g = param("genre", state.genre);
  const jobs = [api(`/api/recommend?k=12${g}`).then((r) => show("for-you", r.items, "Nothing matches this genre."))];
  if (state.picked) {
    jobs.push(api(`/api/similar?k=6&item=${encodeURIComponent(state.picked.id)}${g}`)
      .then((r) => show("because", r.items, "Nothing similar in this genre."))
      .catch(() => { state.picked = null; $("because-section").hidden = true; }));  // e.g. removed by an update
  }
  if (state.query) {
    jobs.push(api(`/api/search?k=12&q=${encodeURIComponent(state.query)}${g}`)
      .then((r) => show("results", r.items, "No matches.")));
  }
  await Promise.all(jobs);
}

async function pick(item) {
  await api("/api/pick", { item_id: item.id });
  state.picked = item;
  $("because-title").textContent = `Because you picked ${spoken(item.title)}`;
  $("because-section").hidden = false;
  await refreshLists();
}

function renderChips(genres) {
  const nav = $("chips");
  if (nav.dataset.genres === genres.join("|")) return;
  nav.dataset.genres = genres.join("|");
  nav.replaceChildren(...["", ...genres].map((g) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = g || "All";
    b.setAttribute("aria-pressed", String(g === state.genre));
    b.addEventListener("click", async () => {
      state.genre = g;
      nav.querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
      await refreshLists();
    });
    return b;
  }));
}

function renderBadge(s) {
  const sync = s.last_sync;
  const when = sync ? new Date(sync.time * 1000).toLocaleTimeString() : "never";
  const result = sync ? sync.state : (s.syncing_from ? "pending" : "off");
  const good = !sync || ["updated", "current", "busy"].includes(sync.state);
  $("badge").innerHTML = "";
  const parts = [
    ["", `catalog v${s.version} · ${s.items} items · `],
    ["ok", "signature verified"],
    ["", ` · last sync ${when}: `],
    [good ? "ok" : "warn", result],
    ["", s.latency_ms == null ? "" : ` · last answer ${s.latency_ms.toFixed(1)} ms`],
  ];
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    $("badge").append(span);
  }
  $("badge").dataset.version = String(s.version);
  $("badge").title = sync ? sync.message : "";
}

async function poll() {
  try {
    const s = await api("/api/status");
    renderBadge(s);
    renderChips(s.genres);
    $("search").hidden = !s.search;
    if (state.version !== null && s.version !== state.version) await refreshLists();  // a sync installed a new version
    state.version = s.version;
  } catch (e) {
    $("badge").textContent = `kiosk server unreachable: ${e.message}`;
  }
}

$("search").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.query = $("q").value.trim();
  $("results-section").hidden = !state.query;
  $("results-title").textContent = `Results for “${state.query}”`;
  if (state.query) {
    try { await refreshLists(); } catch (e) { show("results", [], e.message); }
  }
});

$("forget").addEventListener("click", async () => {
  await api("/api/forget", {});
  state.picked = null;
  $("because-section").hidden = true;
  await refreshLists();
});

const every = Number(new URLSearchParams(location.search).get("status_every"));
if (every > 0) state.statusEvery = every;
poll().then(refreshLists);
setInterval(poll, state.statusEvery);
