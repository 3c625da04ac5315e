// vtr web page: search a collection, show moments as cards, play a moment from its start.
// Plain JavaScript, no build step. Talks to the /v1 API of the server that serves it.
"use strict";

const KEY_STORAGE = "vtr.apiKey";
const KEY_COOKIE = "vtr_api_key"; // media elements cannot send headers: the cookie carries the key

const $ = (id) => document.getElementById(id);
const state = { request: null, nextToken: null, playing: null };

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function setApiKey(key) {
  if (key) {
    localStorage.setItem(KEY_STORAGE, key);
  } else {
    localStorage.removeItem(KEY_STORAGE);
  }
  const value = key ? encodeURIComponent(key) : "";
  const expiry = key ? "" : "; max-age=0";
  document.cookie = `${KEY_COOKIE}=${value}; path=/v1/videos; SameSite=Strict${expiry}`;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_error",
                       error.message || `HTTP ${response.status}`);
  }
  return data;
}

function showStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function handleError(error) {
  if (error instanceof ApiError && error.status === 401) {
    $("key-form").hidden = false;
    $("api-key").focus();
    showStatus("This server needs an API key: enter it above.", true);
  } else {
    showStatus(error.message, true);
  }
}

function clock(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(total / 60);
  return `${String(minutes).padStart(2, "0")}:${String(total % 60).padStart(2, "0")}`;
}

async function loadCollections() {
  const select = $("collection");
  const previous = select.value;
  const collections = await api("/v1/collections");
  select.replaceChildren();
  for (const c of collections) {
    const option = document.createElement("option");
    option.value = c.name;
    option.textContent = `${c.name} (${c.n_videos})`;
    select.append(option);
  }
  if (previous && collections.some((c) => c.name === previous)) select.value = previous;
  if (!collections.length) showStatus("No collections yet: index some videos first.");
}

function momentsOf(results, groupedByVideo) {
  return groupedByVideo ? results.flatMap((video) => video.moments) : results;
}

function card(moment) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.videoId = String(moment.video_id);
  button.dataset.start = String(moment.start_s);
  button.dataset.end = String(moment.end_s);

  const image = document.createElement("img");
  const middle = (moment.start_s + moment.end_s) / 2;
  image.src = `/v1/videos/${moment.video_id}/thumbnail?t=${middle.toFixed(1)}`;
  image.alt = "";
  image.loading = "lazy";

  const title = document.createElement("span");
  title.className = "title";
  title.textContent = moment.title;

  const range = document.createElement("span");
  range.className = "range";
  range.textContent = `${clock(moment.start_s)}-${clock(moment.end_s)}`;

  const score = document.createElement("span");
  score.className = "score";
  score.textContent = moment.score.toFixed(3);

  button.append(image, title, range, score);
  button.addEventListener("click", () => playMoment(moment, button));
  return button;
}

function playMoment(moment, element) {
  const player = $("player");
  const src = `/v1/videos/${moment.video_id}/stream`;
  state.playing = moment;
  $("player-panel").hidden = false;
  $("now-playing").textContent =
    `${moment.title}  ${clock(moment.start_s)}-${clock(moment.end_s)}`;
  for (const other of document.querySelectorAll(".card.active")) other.classList.remove("active");
  if (element) element.classList.add("active");

  const seekAndPlay = () => {
    if (state.playing !== moment) return; // another card was clicked meanwhile
    player.currentTime = moment.start_s;
    player.play().catch(() => {}); // autoplay may be refused; the seek stands
  };
  if (player.getAttribute("src") !== src) {
    player.addEventListener("loadedmetadata", seekAndPlay, { once: true });
    player.setAttribute("src", src);
    player.load();
  } else if (player.readyState >= HTMLMediaElement.HAVE_METADATA) {
    seekAndPlay();
  } else {
    player.addEventListener("loadedmetadata", seekAndPlay, { once: true });
  }
  $("player-panel").scrollIntoView({ block: "nearest" });
}

async function runSearch(append) {
  const request = { ...state.request };
  if (append) request.page_token = state.nextToken;
  $("search-button").disabled = true;
  showStatus(append ? "Loading more..." : "Searching...");
  try {
    const response = await api("/v1/search", { method: "POST", body: request });
    const moments = momentsOf(response.results, response.group_by === "video");
    const results = $("results");
    if (!append) results.replaceChildren();
    for (const moment of moments) results.append(card(moment));
    state.nextToken = response.next_page_token;
    $("more").hidden = !state.nextToken;
    const shown = results.children.length;
    showStatus(shown ? `${shown} moment${shown === 1 ? "" : "s"}` : "No moments found.");
  } catch (error) {
    handleError(error);
  } finally {
    $("search-button").disabled = false;
  }
}

function init() {
  $("api-key").value = apiKey();
  if (apiKey()) setApiKey(apiKey()); // refresh the media cookie

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value.trim());
    showStatus("Key saved.");
    loadCollections().catch(handleError);
  });

  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("query").value.trim();
    if (!query) return;
    state.request = { query, collection: $("collection").value || null };
    runSearch(false);
  });

  $("more").addEventListener("click", () => runSearch(true));
  loadCollections().catch(handleError);
}

document.addEventListener("DOMContentLoaded", init);
