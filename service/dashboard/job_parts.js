// Pieces of a job's display shared by the jobs list and the job page.

import {el} from "./dom.js";

export function statusBadge(job, attributes = {}) {
  return el("span", {...attributes, class: `status status-${job.status}`, text: job.status});
}

// A progress bar of step / total_steps, or the step alone while the total is unknown.
export function progressBar(job) {
  const {step, total_steps: total} = job.progress;
  if (!total) {
    return el("span", {class: "progress-text", text: step === null || step === undefined
      ? "–" : `step ${step}`});
  }
  const done = Math.min(step ?? 0, total);
  return el("span", {class: "progress"},
            el("progress", {max: total, value: done, "aria-label": "steps done"}),
            el("span", {class: "progress-text", text: `${step ?? 0} / ${total}`}));
}

export function jobHref(jobId) {
  return `#/jobs/${encodeURIComponent(jobId)}`;
}
