// The job page's panels of evaluations (win rate per round) and rounds of iterative jobs.

import {intervalChart} from "./charts.js";
import {el, formatNumber, formatPercent, timeEl} from "./dom.js";

function table(headings, rows) {
  return el("table", {},
            el("thead", {}, el("tr", {}, headings.map((text) => el("th", {text})))),
            el("tbody", {}, rows));
}

export class ResultsPanels {
  constructor(api, jobId) {
    this.api = api;
    this.base = `v1/jobs/${encodeURIComponent(jobId)}`;
    this.winRate = el("section", {class: "panel", id: "win-rate", hidden: true});
    this.rounds = el("section", {class: "panel", id: "rounds", hidden: true});
    this.element = el("div", {class: "results", hidden: true}, this.winRate, this.rounds);
    this.drawn = false;
  }

  async update() {
    // `drawn` covers a first response of 304, which a URL kept from an earlier visit gets.
    const evaluations = await this.api.getList(`${this.base}/evaluations`);
    if (evaluations.changed || !this.drawn) this.renderWinRate(evaluations.data);
    const iterations = await this.api.getList(`${this.base}/iterations`);
    if (iterations.changed || !this.drawn) this.renderRounds(iterations.data);
    this.drawn = true;
    this.element.hidden = this.winRate.hidden && this.rounds.hidden;
  }

  renderWinRate(evaluations) {
    this.winRate.hidden = evaluations.length === 0;
    const rows = evaluations.map((evaluation) => el("tr", {},
      el("td", {text: evaluation.round ?? "–"}),
      el("td", {text: formatPercent(evaluation.win_rate)}),
      el("td", {text: `${formatPercent(evaluation.ci_low)} – ${formatPercent(evaluation.ci_high)}`}),
      el("td", {text: `${evaluation.wins} / ${evaluation.ties} / ${evaluation.losses}`}),
      el("td", {text: evaluation.n}),
      el("td", {text: evaluation.candidate}),
      el("td", {text: evaluation.reference}),
      el("td", {text: evaluation.judge}),
      el("td", {}, timeEl(evaluation.created_at))));
    this.winRate.replaceChildren(
      el("h2", {text: "Win rate per round (95% interval)"}),
      el("div", {class: "chart-box"}, intervalChart(evaluations)),
      table(["round", "win rate", "95% interval", "wins / ties / losses", "n", "candidate",
             "reference", "judge", "time"], rows));
  }

  renderRounds(iterations) {
    this.rounds.hidden = iterations.length === 0;
    const rows = iterations.map((iteration) => el("tr", {},
      el("td", {text: iteration.round}),
      el("td", {text: iteration.phase ?? "–"}),
      el("td", {text: iteration.pairs_generated ?? "–"}),
      el("td", {text: iteration.pairs_kept ?? "–"}),
      el("td", {text: rewardSummary(iteration.reward_stats)}),
      el("td", {text: iteration.win_rate === null ? "–" : formatPercent(iteration.win_rate)}),
      el("td", {class: "path", text: iteration.checkpoint ?? "–"}),
      el("td", {}, timeEl(iteration.updated_at))));
    this.rounds.replaceChildren(
      el("h2", {text: "Rounds"}),
      table(["round", "phase", "pairs generated", "pairs kept", "reward statistics",
             "win rate", "checkpoint", "updated"], rows));
  }
}

// "name value" pairs of a round's numeric reward statistics, in the order the worker sent.
function rewardSummary(stats) {
  if (!stats) return "–";
  return Object.entries(stats)
    .filter(([, value]) => typeof value === "number")
    .map(([name, value]) => `${name} ${formatNumber(value)}`)
    .join(", ") || "–";
}
