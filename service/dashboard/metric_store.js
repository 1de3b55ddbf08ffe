// The points of one metric of one job, fetched incrementally with `after_step`.
//
// Steps restart at 1 in each round of an iterative job, and a new attempt replays the
// steps after its checkpoint, so a point is keyed by (round, step), and a later
// attempt's value replaces an earlier one's.

export class MetricStore {
  constructor(api, jobId, name) {
    this.api = api;
    this.name = name;
    this.base = `v1/jobs/${encodeURIComponent(jobId)}/metrics?name=${encodeURIComponent(name)}`;
    this.points = new Map();  // "round:step" -> {step, iteration, attempt, value}
    this.afterStep = null;    // null: fetch every step
    this.epoch = null;        // "attempt:round" the `afterStep` belongs to
  }

  // Fetch the points reported since the last call. Returns whether any arrived.
  async update(job) {
    const round = job.progress.round ?? 0;
    const epoch = `${job.attempt}:${round}`;
    if (epoch !== this.epoch) {
      // A new round's steps restart below `afterStep`, and a new attempt's replayed
      // steps are below it too: read them all once, then move on from there.
      this.epoch = epoch;
      this.afterStep = null;
    }

    let changed = false;
    let cursor = null;
    do {
      let path = this.base;
      if (this.afterStep !== null) path += `&after_step=${this.afterStep}`;
      if (cursor) path += `&cursor=${encodeURIComponent(cursor)}`;
      // A 304 returns the kept copy of the page, which merges as a no-op unless this
      // store is new.
      const {body} = await this.api.get(path);
      changed = this.merge(body.data) || changed;
      cursor = body.has_more ? body.next_cursor : null;
    } while (cursor);

    // NOTE: the API has no round filter, so while an iterative job trains round r, this
    // also re-reads the earlier rounds' points above round r's newest step. They merge
    // as no-ops, but they cost transfer on every change.
    const current = [...this.points.values()].filter(
      (point) => point.iteration === round && point.attempt === job.attempt);
    if (current.length > 0) {
      this.afterStep = Math.max(...current.map((point) => point.step));
    }
    return changed;
  }

  merge(points) {
    let changed = false;
    for (const point of points) {
      const key = `${point.iteration}:${point.step}`;
      const stored = this.points.get(key);
      if (stored && stored.attempt > point.attempt) continue;
      if (stored && stored.attempt === point.attempt && stored.value === point.value) continue;
      this.points.set(key, point);
      changed = true;
    }
    return changed;
  }

  // Return one series per round, sorted by step: [{label, points: [{x, y}]}].
  series() {
    const rounds = new Map();
    for (const point of this.points.values()) {
      if (!rounds.has(point.iteration)) rounds.set(point.iteration, []);
      rounds.get(point.iteration).push({x: point.step, y: point.value});
    }
    const labelled = rounds.size > 1;
    return [...rounds.entries()]
      .sort(([a], [b]) => a - b)
      .map(([round, points]) => ({
        label: labelled ? `round ${round}` : this.name,
        points: points.sort((a, b) => a.x - b.x),
      }));
  }

  get size() {
    return this.points.size;
  }
}
