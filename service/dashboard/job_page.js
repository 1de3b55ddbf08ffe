// The job page: status and progress, charts per step, win rates, rounds and events.
//
// Each poll reads the job. Metric points are read only when the job changed, because
// every stored point also updates the job's progress. The poll after which the job is seen
// in a terminal state is the last.

import {ApiError} from "./api.js";
import {legend, lineChart} from "./charts.js";
import {el, formatNumber, formatPercent, timeEl} from "./dom.js";
import {EventsTail} from "./events_tail.js";
import {progressBar, statusBadge} from "./job_parts.js";
import {MetricStore} from "./metric_store.js";
import {Poller} from "./poller.js";
import {ResultsPanels} from "./results.js";

// Metrics charted per step, named as the losses in cringe_core/losses report them. A
// chart appears once its metric has points, so a job shows the ones its loss reports:
// the gate and margin for the pairwise cringe loss, reward margins for DPO and IPO.
const CHARTS = [
  {metric: "loss", title: "loss"},
  {metric: "gate/mean", title: "gate mean"},
  {metric: "margin/mean", title: "margin (chosen − rejected log-prob)"},
  {metric: "rewards/margins", title: "reward margin (chosen − rejected)"},
];
// Error details listed on the page. The API payload has all of them.
const MAX_SHOWN_DETAILS = 20;

function field(label, value, attributes = {}) {
  return [el("dt", {text: label}), el("dd", attributes, value)];
}

function errorBox(error) {
  const details = (error.details || []).slice(0, MAX_SHOWN_DETAILS);
  return el("div", {class: "job-error", id: "job-error", role: "alert"},
            el("strong", {text: error.code}), " ", el("span", {text: error.message}),
            details.length > 0
              ? el("ul", {}, details.map((detail) => el("li", {text: JSON.stringify(detail)})))
              : null);
}

export class JobPage {
  constructor(api, jobId, reporter, intervalMs) {
    this.api = api;
    this.jobId = jobId;
    this.reporter = reporter;
    this.path = `v1/jobs/${encodeURIComponent(jobId)}`;
    this.poller = new Poller(() => this.tick(), intervalMs);
    this.intervalMs = intervalMs;
    this.job = null;

    this.summary = el("section", {class: "panel", id: "job-summary"},
                      el("h1", {text: jobId}), el("p", {text: "loading…"}));
    this.charts = CHARTS.map(({metric, title}) => ({
      title,
      store: new MetricStore(api, jobId, metric),
      box: el("figure", {class: "chart-box", hidden: true, "data-chart": metric},
              el("figcaption", {text: title})),
    }));
    this.events = new EventsTail(api, jobId);
    this.results = new ResultsPanels(api, jobId);
    this.element = el("div", {class: "job-page"},
      el("p", {}, el("a", {href: "#/", text: "← all jobs"})),
      this.summary,
      el("section", {class: "panel", id: "charts"}, el("h2", {text: "Training"}),
         el("div", {class: "chart-grid"}, this.charts.map((chart) => chart.box))),
      this.results.element,
      this.events.element);
  }

  start() {
    this.poller.start();
  }

  stop() {
    this.poller.stop();
  }

  async tick() {
    try {
      const {body: job, changed} = await this.api.get(this.path);
      if (changed || this.job === null) {
        this.job = job;
        this.renderSummary(job);
        await this.updateCharts(job);
      }
      await this.events.update();
      await this.results.update();
      this.reporter.ok();
      if (job.is_terminal) {
        this.renderSummary(job, true);
        return false;
      }
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.summary.replaceChildren(el("h1", {text: this.jobId}),
                                     el("p", {class: "job-error", text: error.message}));
        return false;
      }
      return this.reporter.failed(error);
    }
  }

  async updateCharts(job) {
    for (const chart of this.charts) {
      if (!(await chart.store.update(job))) continue;
      const series = chart.store.series();
      chart.box.hidden = false;
      const parts = [el("figcaption", {text: chart.title}),
                     lineChart(chart.store.name, chart.title, series)];
      const key = legend(series);
      if (key) parts.push(key);
      chart.box.replaceChildren(...parts);
    }
  }

  renderSummary(job, final = false) {
    const winRate = job.latest_metrics ? job.latest_metrics.win_rate : undefined;
    const loss = job.latest_metrics ? job.latest_metrics.loss : undefined;
    const list = el("dl", {class: "fields"},
      field("status", statusBadge(job, {id: "job-status"})),
      field("phase", job.phase ?? "–", {id: "job-phase"}),
      field("kind", job.kind),
      field("progress", progressBar(job), {id: "job-progress"}),
      field("round", job.progress.round ?? "–"),
      field("attempt", String(job.attempt)),
      field("latest loss", loss === undefined ? "–" : formatNumber(loss)),
      field("latest win rate", winRate === undefined || winRate === null
        ? "–" : formatPercent(winRate)),
      field("created", timeEl(job.created_at)),
      field("started", job.started_at ? timeEl(job.started_at) : "–"),
      field("finished", job.finished_at ? timeEl(job.finished_at) : "–"),
      field("updated", timeEl(job.updated_at)));
    const live = final
      ? "The job has ended; this page no longer polls it."
      : `Updating every ${this.intervalMs / 1000} s.`;
    const parts = [el("h1", {text: job.id}), list];
    if (job.error) parts.push(errorBox(job.error));
    parts.push(el("p", {class: "live", id: "job-live", text: live}));
    this.summary.replaceChildren(...parts);
  }
}
