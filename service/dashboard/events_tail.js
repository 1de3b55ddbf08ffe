// The live tail of a job's events: fetches only events after the last seq it has.

import {el, timeEl} from "./dom.js";

// Older events are dropped from the page past this count. The API keeps them all.
const MAX_SHOWN_EVENTS = 500;
// Pages read per update, so a job with a long backlog does not stall one poll.
const MAX_PAGES_PER_UPDATE = 10;

export class EventsTail {
  constructor(api, jobId) {
    this.api = api;
    this.base = `v1/jobs/${encodeURIComponent(jobId)}/events`;
    this.afterSeq = 0;
    this.list = el("ol", {class: "events", "aria-live": "polite"});
    this.element = el("section", {class: "panel", id: "events"},
                      el("h2", {text: "Events"}), this.list);
  }

  // Append the events after the last one shown, and return whether any arrived.
  async update() {
    let added = 0;
    for (let page = 0; page < MAX_PAGES_PER_UPDATE; page += 1) {
      const {body} = await this.api.get(`${this.base}?after=${this.afterSeq}`);
      const fresh = body.data.filter((event) => event.seq > this.afterSeq);
      if (fresh.length > 0) this.append(fresh);
      added += fresh.length;
      this.afterSeq = Math.max(this.afterSeq, body.last_seq);
      if (!body.has_more) break;
    }
    return added > 0;
  }

  append(events) {
    // Follow the tail only when the reader is already at the bottom of the list.
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 24;
    for (const event of events) {
      const level = (event.data && event.data.level) || "info";
      this.list.append(el("li", {class: `event level-${level}`, "data-seq": event.seq},
                          timeEl(event.created_at), " ",
                          el("span", {class: "event-type", text: event.type}), " ",
                          el("span", {class: "event-message", text: event.message})));
    }
    while (this.list.childElementCount > MAX_SHOWN_EVENTS) this.list.firstElementChild.remove();
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }
}
