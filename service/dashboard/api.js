// Client of the /v1 API: the stored API key, conditional GETs and the error envelope.

const KEY_STORAGE = "cringe.apiKey";
// Metric URLs change with every new step, so old entries are dropped past this count.
const MAX_CACHED_URLS = 300;

// An error of a request: its HTTP status (0 when the server was not reached), the
// envelope's stable `code`, and its message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The key when the browser blocks localStorage (a privacy setting), kept until reload.
let unsavedKey = "";

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || unsavedKey;
  } catch {
    return unsavedKey;
  }
}

// Keep `key` in localStorage. Return false when the browser blocks it, so the key lasts
// only until the page is reloaded.
export function storeKey(key) {
  try {
    localStorage.setItem(KEY_STORAGE, key);
    return true;
  } catch {
    unsavedKey = key;
    return false;
  }
}

export function forgetKey() {
  unsavedKey = "";
  try {
    localStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing was stored
  }
}

async function errorOf(response) {
  let envelope = null;
  try {
    envelope = await response.json();
  } catch {
    // not JSON: a proxy's error page, for example
  }
  const error = envelope && envelope.error;
  if (error && typeof error.message === "string") {
    return new ApiError(response.status, error.code || "error", error.message);
  }
  const retry = response.headers.get("Retry-After");
  const hint = retry ? `; retry after ${retry} s` : "";
  return new ApiError(response.status, "http_error",
                      `the server returned HTTP ${response.status}${hint}`);
}

export class Api {
  // `onCount(requestCount, notModifiedCount)` is called after each response.
  constructor(onCount = () => {}) {
    this.etags = new Map();  // URL -> {etag, body} of the last 200 response
    this.requestCount = 0;
    this.notModifiedCount = 0;
    this.onCount = onCount;
  }

  clearCache() {
    this.etags.clear();
  }

  // GET a path relative to the page. Returns {body, changed}, where `changed` is false
  // when the server returned 304 for the ETag of the copy kept from the last 200.
  async get(path) {
    const key = storedKey();
    if (!key) {
      throw new ApiError(401, "api_key_missing", "enter an API key to read the jobs");
    }
    const cached = this.etags.get(path);
    const headers = {Authorization: `Bearer ${key}`, Accept: "application/json"};
    if (cached) headers["If-None-Match"] = cached.etag;

    // `no-store` keeps the browser's HTTP cache out of the way: the conditional
    // request is this code's own, and its 304 reaches this code unchanged.
    let response;
    try {
      response = await fetch(path, {headers, cache: "no-store", credentials: "same-origin"});
    } catch (error) {
      throw new ApiError(0, "network_error",
                         `cannot reach the server (${error.message}); retrying`);
    }
    this.requestCount += 1;
    const notModified = response.status === 304 && cached;
    if (notModified) this.notModifiedCount += 1;
    this.onCount(this.requestCount, this.notModifiedCount);

    if (notModified) {
      this.etags.delete(path);  // re-insert, so the Map's order is least recently used first
      this.etags.set(path, cached);
      return {body: cached.body, changed: false};
    }
    if (!response.ok) throw await errorOf(response);
    const body = await response.json();
    const etag = response.headers.get("ETag");
    if (etag) this.remember(path, {etag, body});
    return {body, changed: true};
  }

  // GET every page of a list. Returns {data, changed}, where `changed` is false when
  // every page got a 304.
  async getList(path) {
    const data = [];
    let changed = false;
    let cursor = null;
    do {
      const separator = path.includes("?") ? "&" : "?";
      const page = cursor ? `${path}${separator}cursor=${encodeURIComponent(cursor)}` : path;
      const {body, changed: pageChanged} = await this.get(page);
      data.push(...body.data);
      changed = changed || pageChanged;
      cursor = body.has_more ? body.next_cursor : null;
    } while (cursor);
    return {data, changed};
  }

  remember(path, entry) {
    this.etags.delete(path);
    this.etags.set(path, entry);
    while (this.etags.size > MAX_CACHED_URLS) {
      this.etags.delete(this.etags.keys().next().value);
    }
  }
}
