"""The dashboard in headless Chromium, against a live server that runs a real tiny job.

Needs Debian's `chromium` and `chromium-driver` packages and the `selenium` package.
Selenium is given both binaries' paths, so it never looks for or downloads a driver.
Screenshots go to build/test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth import create_api_key
from service.db import Database
from service.migrations import upgrade
from service.models import Job
from service.reports import (
    EvaluationIn,
    EventIn,
    IterationIn,
    MetricIn,
    record_evaluation,
    record_events,
    record_iteration,
    record_metrics,
)
from service.settings import default_job_command
from tests.service.conftest import (
    HH_PAIRS,
    REPO_ROOT,
    LiveServer,
    fake_job_command,
    make_settings,
    wait_for,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO_ROOT / "build" / "test-artifacts"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400")
MAX_STEPS = 6
TERMINAL = {"succeeded", "failed", "cancelled"}
# The page polls every 2 s. These limits leave room for a slow, shared CI machine.
JOB_TIMEOUT_S = 180.0
PAGE_TIMEOUT_S = 20.0
# One coordinate pair of an SVG path command, as charts.js writes it: "M12.0,34.5".
PATH_POINT = re.compile(r"[ML]-?[0-9.]+,-?[0-9.]+")


def _start_browser() -> Any:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found; install Debian's chromium and "
                    "chromium-driver packages (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the selenium package is missing; install it into the virtual "
                    "environment (pip install selenium)")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _start_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def start_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers with their dispatcher and the local executor.

    Their data root contains the real pairs file and, for `with_model`, a copy of the tiny
    policy (a copy, not a link, because the server rejects paths that resolve outside its
    data roots).
    """
    root = tmp_path / "data"
    root.mkdir()
    shutil.copyfile(HH_PAIRS, root / "pairs.jsonl.gz")
    database_url = f"sqlite:///{tmp_path / 'cringe.db'}"
    upgrade(database_url)
    servers: list[LiveServer] = []

    def start(job_command: list[str], with_model: bool = False) -> LiveServer:
        if with_model:
            shutil.copytree(request.getfixturevalue("tiny_policy_path"), root / "tiny-policy")
        settings = make_settings(database_url, root, tmp_path / "service",
                                 dispatcher_enabled=True, dispatch_interval_s=0.2,
                                 job_command=job_command)
        servers.append(LiveServer(settings).__enter__())
        return servers[-1]

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def _wait(browser: Any, condition: Callable[[], Any], what: str,
          timeout_s: float = PAGE_TIMEOUT_S) -> Any:
    """Poll `condition` until truthy. On timeout, save a screenshot and fail with the
    page's message."""

    def page_state() -> str:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-timeout.png"))
        message = browser.execute_script(
            "return document.getElementById('message').textContent")
        return f"the page's message: {message!r}; screenshot in {ARTIFACTS}"

    return wait_for(condition, timeout_s, what, interval_s=0.2, describe_timeout=page_state)


def _find(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found else None


def _text(browser: Any, selector: str) -> str | None:
    """Return the element's visible text, read in one script so a re-render between
    finding and reading cannot leave a stale element."""
    text: str | None = browser.execute_script(
        "const found = document.querySelector(arguments[0]);"
        "return found ? found.innerText : null;", selector)
    return text


def _attribute(browser: Any, selector: str, name: str) -> str | None:
    value: str | None = browser.execute_script(
        "const found = document.querySelector(arguments[0]);"
        "return found ? found.getAttribute(arguments[1]) : null;", selector, name)
    return value


def _click(browser: Any, selector: str) -> None:
    """Click the element, finding it again if the page re-rendered it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(5):
        try:
            _find(browser, selector).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    pytest.fail(f"{selector} was re-rendered on every click attempt")


def _enter_key(browser: Any, key: str) -> None:
    _wait(browser, lambda: _find(browser, "#api-key").is_displayed(), "the API key form")
    _find(browser, "#api-key").send_keys(key)
    _click(browser, "#key-form button[type=submit]")


def _submit_job(base_url: str, key: str, model: str | None = "tiny-policy") -> dict[str, Any]:
    """Submit a small pairwise cringe job. A `model` of None keeps the default policy."""
    spec: dict[str, Any] = {
        "dataset": {"path": "pairs.jsonl.gz", "max_rows": 16, "max_invalid_fraction": 0.9},
        "loss": {"name": "pairwise_cringe"},
        "training": {"max_steps": MAX_STEPS, "batch_size": 2, "micro_batch_size": 2,
                     "max_length": 256, "precision": "float32"},
    }
    if model is not None:
        spec["model"] = {"name": model}
    response = httpx.post(f"{base_url}/v1/jobs", json={"spec": spec},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def _get(base_url: str, key: str, path: str) -> Any:
    response = httpx.get(f"{base_url}{path}", headers={"Authorization": f"Bearer {key}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _chart_points(browser: Any, metric: str) -> list[str]:
    path = _attribute(browser, f'svg[data-metric="{metric}"] path.series', "d")
    return PATH_POINT.findall(path) if path is not None else []


def _severe_console_entries(browser: Any) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE"]


def test_dashboard_follows_real_job(
    start_server: Callable[..., LiveServer], browser: Any
) -> None:
    server = start_server(default_job_command(), with_model=True)
    _, key = create_api_key(server.app.state.db, f"dashboard-{uuid.uuid4().hex[:8]}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # The page shows the key form, then the (empty) list.
    browser.get(server.url + "/")
    _enter_key(browser, key)
    _wait(browser, lambda: _text(browser, "#jobs-list .empty"), "the empty jobs list")

    # A job submitted over the API appears in the list by polling alone.
    job = _submit_job(server.url, key)
    row = f'#jobs tr[data-job-id="{job["id"]}"]'
    _wait(browser, lambda: _find(browser, row), "the job's row in the list")
    assert _text(browser, f"{row} td:nth-child(3)") == "train"

    # The job page shows the status change while it runs, without a reload.
    _click(browser, f"{row} a.job-id")
    _wait(browser, lambda: _find(browser, "#job-status"), "the job page")
    seen: list[str] = []

    def status_now() -> bool:
        status = _text(browser, "#job-status") or ""
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in TERMINAL

    _wait(browser, status_now, "the job to end", timeout_s=JOB_TIMEOUT_S)
    assert seen[-1] == "succeeded", (seen, _text(browser, "#job-error"))
    assert seen[0] not in TERMINAL, seen
    assert _text(browser, "#job-progress") == f"{MAX_STEPS} / {MAX_STEPS}"
    assert _find(browser, "#job-error") is None

    # Charts: one path point per loss step stored by the API, and the gate and margin
    # charts of the pairwise cringe loss. DPO's reward margin has no points here.
    base = f"/v1/jobs/{job['id']}"
    loss_steps = [p["step"] for p in _get(server.url, key, f"{base}/metrics?name=loss")["data"]]
    assert loss_steps == list(range(1, MAX_STEPS + 1))
    _wait(browser, lambda: len(_chart_points(browser, "loss")) == len(loss_steps),
          f"a loss chart of {len(loss_steps)} points")
    loss_count = _attribute(browser, 'svg[data-metric="loss"] path.series', "data-point-count")
    assert loss_count == str(len(loss_steps))
    assert len(_chart_points(browser, "gate/mean")) == len(loss_steps)
    assert len(_chart_points(browser, "margin/mean")) == len(loss_steps)
    assert not _find(browser, '[data-chart="rewards/margins"]').is_displayed()

    # The event tail contains every event the API has, in order.
    events = _get(server.url, key, f"{base}/events?limit=100")["data"]
    shown_seqs = [int(item.get_attribute("data-seq")) for item in
                  browser.find_elements("css selector", "#events li.event")]
    assert shown_seqs == [event["seq"] for event in events]
    assert "succeeded" in (_text(browser, "#events") or "")
    browser.save_screenshot(str(ARTIFACTS / "dashboard-job.png"))

    # Polls carried If-None-Match, and some got a 304. Once the job ended, the page
    # stopped polling it.
    assert int(_attribute(browser, "#poll-stats", "data-not-modified") or 0) > 0
    _wait(browser, lambda: "no longer polls" in (_text(browser, "#job-live") or ""),
          "the page to stop polling the ended job")
    requests_then = _attribute(browser, "#poll-stats", "data-requests")
    time.sleep(5)  # two and a half poll intervals
    assert _attribute(browser, "#poll-stats", "data-requests") == requests_then
    assert _severe_console_entries(browser) == []

    # Back on the list, the job shows as succeeded with a full progress bar.
    _click(browser, "a[href='#/']")
    _wait(browser, lambda: _text(browser, f"{row} .status") == "succeeded",
          "the list to show the job succeeded")
    assert _text(browser, f"{row} .progress-text") == f"{MAX_STEPS} / {MAX_STEPS}"
    browser.save_screenshot(str(ARTIFACTS / "dashboard-list.png"))

    # A key the server rejects gives a clear message and the key form again.
    _click(browser, "#change-key")
    _enter_key(browser, "ck_not-a-real-key")
    _wait(browser, lambda: "rejected the API key" in (_text(browser, "#message") or ""),
          "the message about the rejected key")
    assert "invalid API key" in (_text(browser, "#message") or "")
    assert _find(browser, "#key-form").is_displayed()


# (round, wins, ties, losses, ci_low, ci_high) of two evaluations.
EVALUATIONS = [(1, 55, 10, 35, 0.50, 0.69), (2, 70, 5, 25, 0.63, 0.80)]
MARKUP_MESSAGE = '<img src="x" id="injected">not markup'


def _add_rounds(db: Database, job_id: str) -> None:
    """Store what an iterative job reports: per-round metrics, evaluations, rounds, events."""
    with db.write() as session:
        job = session.get(Job, job_id)
        assert job is not None
        points = [MetricIn(name=name, step=step, value=value * step, iteration=round_index)
                  for round_index in (1, 2) for step in (1, 2, 3)
                  for name, value in (("loss", 1.0 / round_index), ("rewards/margins", 0.1))]
        record_metrics(session, job, job.attempt, points)
        for round_index, wins, ties, losses, ci_low, ci_high in EVALUATIONS:
            n = wins + ties + losses
            win_rate = (wins + ties / 2) / n
            record_evaluation(session, job, job.attempt, EvaluationIn(
                round=round_index, candidate=f"round-{round_index}", reference="round-0",
                judge="reward-model", n=n, wins=wins, ties=ties, losses=losses,
                win_rate=win_rate, ci_low=ci_low, ci_high=ci_high))
            record_iteration(session, job, IterationIn(
                round=round_index, phase="evaluate", pairs_generated=64, pairs_kept=40,
                reward_stats={"gap_mean": 0.25}, win_rate=win_rate))
        record_events(session, job, job.attempt,
                      [EventIn(level="warning", message=MARKUP_MESSAGE)])


def test_dashboard_shows_rounds_and_failure(
    start_server: Callable[..., LiveServer], browser: Any
) -> None:
    server = start_server(fake_job_command("--exit-code", "1"))
    _, key = create_api_key(server.app.state.db, f"dashboard-{uuid.uuid4().hex[:8]}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    job = _submit_job(server.url, key, model=None)  # the fake job loads no model
    base = f"/v1/jobs/{job['id']}"
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while _get(server.url, key, base)["status"] != "failed":
        assert time.monotonic() < deadline, "the fake job did not fail in time"
        time.sleep(0.2)
    _add_rounds(server.app.state.db, job["id"])

    browser.get(f"{server.url}/#/jobs/{job['id']}")
    _enter_key(browser, key)
    _wait(browser, lambda: "no longer polls" in (_text(browser, "#job-live") or ""),
          "the page's last read of the failed job")

    # The failure and its message.
    assert _text(browser, "#job-status") == "failed"
    assert "CUDA out of memory" in (_text(browser, "#job-error") or "")

    # One line per round in the loss chart, and DPO's reward margin instead of the gate.
    lines = browser.find_elements("css selector", 'svg[data-metric="loss"] path.series')
    assert [line.get_attribute("data-series") for line in lines] == ["round 1", "round 2"]
    assert [line.get_attribute("data-point-count") for line in lines] == ["3", "3"]
    assert len(_chart_points(browser, "rewards/margins")) == 3
    assert not _find(browser, '[data-chart="gate/mean"]').is_displayed()

    # The win rate per round with its interval, and the rounds table.
    dots = browser.find_elements("css selector", 'svg[data-metric="win_rate"] g.interval')
    expected = [(wins + ties / 2) / (wins + ties + losses)
                for _, wins, ties, losses, _, _ in EVALUATIONS]
    assert [float(dot.get_attribute("data-win-rate")) for dot in dots] == expected
    assert len(browser.find_elements("css selector", "#rounds tbody tr")) == 2
    assert "50.0% – 69.0%" in (_text(browser, "#win-rate tbody") or "")

    # Text from the API is shown as text, never parsed as markup.
    assert _find(browser, "#injected") is None
    assert MARKUP_MESSAGE in (_text(browser, "#events") or "")
    browser.save_screenshot(str(ARTIFACTS / "dashboard-rounds.png"))

    # The list shows the newest evaluation's win rate.
    _click(browser, "a[href='#/']")
    row = f'#jobs tr[data-job-id="{job["id"]}"]'
    _wait(browser, lambda: _find(browser, row), "the job's row in the list")
    assert _text(browser, f"{row} td:nth-child(6)") == f"{expected[-1] * 100:.1f}%"

    # The status filter, with the states read from the server's OpenAPI schema.
    from selenium.webdriver.support.select import Select

    _wait(browser, lambda: _find(browser, "#status-filter option[value=succeeded]"),
          "the status filter's options")
    Select(_find(browser, "#status-filter")).select_by_value("succeeded")
    _wait(browser, lambda: _find(browser, row) is None, "the filter to hide the failed job")
    assert _find(browser, "#jobs-list .empty").is_displayed()
    Select(_find(browser, "#status-filter")).select_by_value("failed")
    _wait(browser, lambda: _find(browser, row), "the filter to show the failed job")

    # An unknown job gets the API's own message, and polling stops.
    browser.get(f"{server.url}/#/jobs/job_unknown")
    _wait(browser, lambda: "not found" in (_text(browser, "#job-summary") or ""),
          "the message about the unknown job")
    assert "job_unknown" in (_text(browser, "#job-summary .job-error") or "")

    # Forgetting the key removes it from localStorage and shows the key form.
    _click(browser, "#forget-key")
    assert _find(browser, "#key-form").is_displayed()
    assert browser.execute_script("return localStorage.getItem('cringe.apiKey')") is None
    browser.get(f"{server.url}/")
    _enter_key(browser, key)
    _wait(browser, lambda: _find(browser, row), "the list after entering the key again")

    # With the server gone, the page shows a message and keeps trying.
    server.__exit__(None, None, None)
    _wait(browser, lambda: "cannot reach the server" in (_text(browser, "#message") or ""),
          "the message about the unreachable server")
