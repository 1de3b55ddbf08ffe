// A timer that runs an async `tick` every `intervalMs`: never two ticks at once, none
// while the tab is hidden, and an immediate one when the tab is shown again.
// `schedule(0)` during a tick runs the next tick as soon as this one ends.
//
// `tick` returns false to stop polling (a job that has ended).

export class Poller {
  constructor(tick, intervalMs) {
    this.tick = tick;
    this.intervalMs = intervalMs;
    this.timer = null;
    this.running = false;
    this.rerun = false;
    this.stopped = true;
    this.onVisible = () => {
      if (!document.hidden && !this.stopped && !this.running) this.schedule(0);
    };
  }

  start() {
    this.stopped = false;
    document.addEventListener("visibilitychange", this.onVisible);
    this.schedule(0);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisible);
  }

  schedule(delayMs) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), delayMs);
  }

  async run() {
    if (this.stopped) return;
    if (this.running) {
      this.rerun = true;
      return;
    }
    if (document.hidden) return;  // onVisible restarts it
    this.running = true;
    this.rerun = false;
    let again = true;
    try {
      again = (await this.tick()) !== false;
    } catch (error) {
      // The views report API errors themselves, so this is a bug in the page. One bad
      // tick must not end the polling.
      console.error("dashboard: a poll failed", error);
    } finally {
      this.running = false;
    }
    if (again && !this.stopped) this.schedule(this.rerun ? 0 : this.intervalMs);
    else this.stop();
  }
}
