// Entry point: the API key form, the message line, hash routing and poll counts.
//
// Routes: `#/` is the jobs list, `#/jobs/<id>` a job's page.

import {Api, forgetKey, storeKey, storedKey} from "./api.js";
import {JobPage} from "./job_page.js";
import {JobsList} from "./jobs_list.js";

const POLL_INTERVAL_MS = 2000;
const KEY_HINT = "Enter an API key of your project (create one on the server with "
  + "`cringe keys create --project NAME`).";

const pollStats = document.getElementById("poll-stats");
const api = new Api((requestCount, notModifiedCount) => {
  pollStats.dataset.requests = requestCount;
  pollStats.dataset.notModified = notModifiedCount;
  pollStats.textContent = `${requestCount} API requests, ${notModifiedCount} answered 304 `
    + "(unchanged)";
});
const view = document.getElementById("view");
const message = document.getElementById("message");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const keyPrompt = document.getElementById("key-prompt");
const keyInfo = document.getElementById("key-info");
const keyPrefix = document.getElementById("key-prefix");
let current = null;

// Show `text` in the message line. A "transient" message (the server unreachable, a
// 503) is cleared by the next successful poll, but an "error" stays until replaced.
function showMessage(text, kind) {
  message.textContent = text;
  message.dataset.kind = kind;
  message.hidden = !text;
}

function showKeyForm(prompt) {
  keyPrompt.textContent = prompt;
  keyForm.hidden = false;
  keyInfo.hidden = true;
  keyInput.focus();
}

function showKeyInfo() {
  // The first ten characters are the prefix the server stores to identify a key.
  keyPrefix.textContent = `${storedKey().slice(0, 10)}…`;
  keyForm.hidden = true;
  keyInfo.hidden = false;
}

// Callbacks through which the views report each poll's outcome. `failed` returns whether
// to keep polling.
const reporter = {
  ok() {
    if (message.dataset.kind === "transient") showMessage("", "");
  },
  failed(error) {
    if (error.status === 401) {
      showMessage(`The server rejected the API key: ${error.message}`, "error");
      showKeyForm(KEY_HINT);
      return false;
    }
    showMessage(`Request failed: ${error.message}`, "transient");
    return true;
  },
};

function jobIdOfRoute() {
  const match = /^#\/jobs\/([^/?#]+)$/.exec(location.hash);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return null;  // a malformed %-escape: show the list instead
  }
}

function route() {
  if (current) current.stop();
  const jobId = jobIdOfRoute();
  current = jobId === null
    ? new JobsList(api, reporter, POLL_INTERVAL_MS)
    : new JobPage(api, jobId, reporter, POLL_INTERVAL_MS);
  document.title = jobId === null ? "jobs · cringe" : `${jobId} · cringe`;
  view.replaceChildren(current.element);
  if (!storedKey()) {
    showKeyForm(KEY_HINT);
    return;
  }
  showKeyInfo();
  current.start();
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) {
    showMessage("The API key is empty; paste the key that `cringe keys create` printed.",
                "error");
    return;
  }
  const saved = storeKey(key);
  keyInput.value = "";
  api.clearCache();
  showMessage(saved ? "" : "This browser does not allow localStorage, so the key is kept "
              + "only until the page is reloaded.", saved ? "" : "error");
  route();
});

document.getElementById("change-key").addEventListener("click", () => {
  showKeyForm(KEY_HINT);
});

document.getElementById("forget-key").addEventListener("click", () => {
  forgetKey();
  api.clearCache();
  if (current) current.stop();
  showMessage("The API key was removed from this browser.", "error");
  showKeyForm(KEY_HINT);
});

window.addEventListener("hashchange", route);

route();
