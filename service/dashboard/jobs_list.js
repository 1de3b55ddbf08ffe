// The jobs list: the newest jobs of this key's project, one page at a time.

import {el, formatPercent, timeEl} from "./dom.js";
import {jobHref, progressBar, statusBadge} from "./job_parts.js";
import {Poller} from "./poller.js";

const COLUMNS = ["id", "status", "kind", "progress", "round", "latest win rate", "updated"];

// The job states, read from the server's OpenAPI schema so this page never keeps its
// own copy of the list. Returns [] when the schema cannot be read.
async function jobStatuses() {
  try {
    const response = await fetch("openapi.json", {cache: "no-cache"});
    const schema = await response.json();
    return schema.components.schemas.JobStatus.enum || [];
  } catch {
    return [];
  }
}

function jobRow(job) {
  const winRate = job.latest_metrics ? job.latest_metrics.win_rate : undefined;
  return el("tr", {"data-job-id": job.id},
            el("td", {}, el("a", {href: jobHref(job.id), class: "job-id", text: job.id})),
            el("td", {}, statusBadge(job)),
            el("td", {text: job.kind}),
            el("td", {}, progressBar(job)),
            el("td", {text: job.progress.round ?? "–"}),
            el("td", {text: winRate === undefined || winRate === null
              ? "–" : formatPercent(winRate)}),
            el("td", {}, timeEl(job.updated_at)));
}

export class JobsList {
  constructor(api, reporter, intervalMs) {
    this.api = api;
    this.reporter = reporter;
    this.cursors = [null];  // the cursor of each page up to the one shown
    this.status = "";
    this.poller = new Poller(() => this.tick(), intervalMs);

    this.filter = el("select", {id: "status-filter", "aria-label": "status",
                                onchange: () => this.restart()},
                     el("option", {value: "", text: "all states"}));
    this.newer = el("button", {type: "button", disabled: true, text: "← newer",
                               onclick: () => this.page(-1)});
    this.older = el("button", {type: "button", disabled: true, text: "older →",
                               onclick: () => this.page(1)});
    this.rows = el("tbody");
    this.empty = el("p", {class: "empty", hidden: true,
                          text: "No jobs here yet; submit one with POST /v1/jobs."});
    this.element = el("section", {class: "panel", id: "jobs-list"},
      el("div", {class: "toolbar"}, el("h1", {text: "Jobs"}), this.filter, this.newer,
         this.older),
      el("table", {id: "jobs"},
         el("thead", {}, el("tr", {}, COLUMNS.map((text) => el("th", {text})))),
         this.rows),
      this.empty);

    jobStatuses().then((statuses) => {
      for (const status of statuses) this.filter.append(el("option", {value: status,
                                                                      text: status}));
      this.filter.hidden = statuses.length === 0;
    });
  }

  start() {
    this.poller.start();
  }

  stop() {
    this.poller.stop();
  }

  restart() {
    this.status = this.filter.value;
    this.cursors = [null];
    this.poller.schedule(0);
  }

  page(direction) {
    if (direction < 0) this.cursors.pop();
    else this.cursors.push(this.nextCursor);
    this.poller.schedule(0);
  }

  path() {
    const query = new URLSearchParams();
    if (this.status) query.set("status", this.status);
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const text = query.toString();
    return text ? `v1/jobs?${text}` : "v1/jobs";
  }

  async tick() {
    const path = this.path();
    let result;
    try {
      result = await this.api.get(path);
    } catch (error) {
      return this.reporter.failed(error);
    }
    this.reporter.ok();
    // A 304 for another page or filter than the one shown still needs drawing.
    if (result.changed || path !== this.shownPath) {
      this.render(result.body);
      this.shownPath = path;
    }
    return true;
  }

  render(page) {
    this.nextCursor = page.next_cursor;
    this.rows.replaceChildren(...page.data.map(jobRow));
    this.empty.hidden = page.data.length > 0;
    this.newer.disabled = this.cursors.length <= 1;
    this.older.disabled = !page.next_cursor;
  }
}
