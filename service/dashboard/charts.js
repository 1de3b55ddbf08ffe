// Line charts of metrics and an interval chart of win rates, drawn as SVG.
//
// Each chart has a fixed viewBox and is scaled to its container's width by CSS.

import {el, formatNumber, formatPercent, svgEl} from "./dom.js";

const WIDTH = 440;
const HEIGHT = 220;
const MARGIN = {left: 52, right: 14, top: 12, bottom: 34};
const LEFT = MARGIN.left;
const RIGHT = WIDTH - MARGIN.right;
const TOP = MARGIN.top;
const BOTTOM = HEIGHT - MARGIN.bottom;
// Past this many points, markers would hide the line, so only the line is drawn.
const MAX_MARKED_POINTS = 60;
// The CSS has this many series colours, and more series reuse them in turn.
const SERIES_COLOURS = 6;

// Return round tick values over [min, max], about `count` of them, spaced by 1, 2 or
// 5 times a power of ten (at least `minStep`).
export function niceTicks(min, max, count, minStep = 0) {
  const rough = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(minStep, [1, 2, 5, 10].map((f) => f * power).find((s) => s >= rough));
  const ticks = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Number(value.toPrecision(12)));
  }
  return ticks;
}

// The [low, high] range of `values`, widened when it is a single value, and padded by
// `padFraction` of its span on each side.
function domain(values, padFraction) {
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (low === high) {
    const half = Math.abs(low) * 0.1 || 1;
    return [low - half, high + half];
  }
  const pad = (high - low) * padFraction;
  low -= pad;
  high += pad;
  return [low, high];
}

function linearScale(domainLow, domainHigh, rangeLow, rangeHigh) {
  const ratio = (rangeHigh - rangeLow) / (domainHigh - domainLow);
  return (value) => rangeLow + (value - domainLow) * ratio;
}

function frame(label, metric) {
  return svgEl("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": label,
    "data-metric": metric,
  });
}

function yAxis(svg, ticks, scaleY, format) {
  for (const tick of ticks) {
    const y = scaleY(tick).toFixed(1);
    svg.append(svgEl("line", {x1: LEFT, x2: RIGHT, y1: y, y2: y, class: "grid"}));
    svg.append(svgEl("text", {x: LEFT - 6, y, class: "tick tick-y", text: format(tick)}));
  }
}

function xAxis(svg, ticks, scaleX, label) {
  svg.append(svgEl("line", {x1: LEFT, x2: RIGHT, y1: BOTTOM, y2: BOTTOM, class: "axis"}));
  for (const tick of ticks) {
    const x = scaleX(tick).toFixed(1);
    svg.append(svgEl("text", {x, y: BOTTOM + 15, class: "tick tick-x", text: String(tick)}));
  }
  if (label) svg.append(svgEl("text", {x: RIGHT, y: HEIGHT - 3, class: "axis-label", text: label}));
}

// Return the `d` attribute of a polyline through the points. A null value (a NaN or
// an infinity the trainer logged) lifts the pen, so the line shows a gap there.
function pathData(points, scaleX, scaleY) {
  const commands = [];
  let penDown = false;
  for (const point of points) {
    if (point.y === null) {
      penDown = false;
      continue;
    }
    const command = penDown ? "L" : "M";
    commands.push(`${command}${scaleX(point.x).toFixed(1)},${scaleY(point.y).toFixed(1)}`);
    penDown = true;
  }
  return commands.join(" ");
}

// Draw one line per series. `series` is [{label, points: [{x, y}]}], each sorted by x,
// and y may be null.
export function lineChart(metric, title, series) {
  const points = series.flatMap((line) => line.points);
  const values = points.filter((point) => point.y !== null).map((point) => point.y);
  const svg = frame(title, metric);
  if (values.length === 0) {
    svg.append(svgEl("text", {x: WIDTH / 2, y: HEIGHT / 2, class: "empty",
                              text: "no finite values yet"}));
    return svg;
  }

  const [xLow, xHigh] = domain(points.map((point) => point.x), 0);
  const [yLow, yHigh] = domain(values, 0.05);
  const scaleX = linearScale(xLow, xHigh, LEFT, RIGHT);
  const scaleY = linearScale(yLow, yHigh, BOTTOM, TOP);
  yAxis(svg, niceTicks(yLow, yHigh, 4), scaleY, formatNumber);
  xAxis(svg, niceTicks(xLow, xHigh, 6, 1), scaleX, "step");

  series.forEach((line, index) => {
    const colour = `series-${index % SERIES_COLOURS}`;
    const finite = line.points.filter((point) => point.y !== null);
    const last = finite[finite.length - 1];
    const summary = last
      ? `${line.label}: ${formatNumber(last.y)} at step ${last.x}`
      : `${line.label}: no finite values`;
    svg.append(svgEl("path", {
      d: pathData(line.points, scaleX, scaleY), class: `series ${colour}`,
      "data-series": line.label, "data-point-count": finite.length,
    }, svgEl("title", {text: summary})));
    if (line.points.length <= MAX_MARKED_POINTS) {
      for (const point of finite) {
        svg.append(svgEl("circle", {
          cx: scaleX(point.x).toFixed(1), cy: scaleY(point.y).toFixed(1), r: 2.5,
          class: `marker ${colour}`,
        }, svgEl("title", {text: `step ${point.x}: ${formatNumber(point.y)}`})));
      }
    }
  });

  return svg;
}

// An HTML key of the series' colours, for a chart of more than one series.
export function legend(series) {
  if (series.length < 2) return null;
  return el("ul", {class: "legend"}, series.map((line, index) =>
    el("li", {class: `series-${index % SERIES_COLOURS}`, text: line.label})));
}

// Draw each evaluation's win rate as a dot on its 95% interval, with the 0.5 line
// (no better than the reference) dashed. `evaluations` are EvaluationPublic payloads.
export function intervalChart(evaluations) {
  const svg = frame("win rate per round with its 95% interval", "win_rate");
  const scaleY = linearScale(0, 1, BOTTOM, TOP);
  yAxis(svg, [0, 0.25, 0.5, 0.75, 1], scaleY, formatPercent);
  const parity = scaleY(0.5).toFixed(1);
  svg.append(svgEl("line", {x1: LEFT, x2: RIGHT, y1: parity, y2: parity, class: "parity"}));
  svg.append(svgEl("line", {x1: LEFT, x2: RIGHT, y1: BOTTOM, y2: BOTTOM, class: "axis"}));

  const slotWidth = (RIGHT - LEFT) / Math.max(evaluations.length, 1);
  // Label every slot while labels fit, else every k-th one.
  const labelEvery = Math.ceil(evaluations.length / 12);
  evaluations.forEach((evaluation, index) => {
    const x = (LEFT + slotWidth * (index + 0.5)).toFixed(1);
    const low = scaleY(evaluation.ci_low).toFixed(1);
    const high = scaleY(evaluation.ci_high).toFixed(1);
    const label = evaluation.round === null ? `#${index + 1}` : `round ${evaluation.round}`;
    const summary = `${label}: win rate ${formatPercent(evaluation.win_rate)} (95% interval `
      + `${formatPercent(evaluation.ci_low)} to ${formatPercent(evaluation.ci_high)}), `
      + `${evaluation.wins} wins, ${evaluation.ties} ties, ${evaluation.losses} losses `
      + `of ${evaluation.n}`;
    const group = svgEl("g", {class: "interval", "data-win-rate": evaluation.win_rate},
                        svgEl("title", {text: summary}));
    group.append(svgEl("line", {x1: x, x2: x, y1: low, y2: high, class: "whisker"}));
    for (const y of [low, high]) {
      group.append(svgEl("line", {x1: Number(x) - 5, x2: Number(x) + 5, y1: y, y2: y,
                                  class: "whisker"}));
    }
    group.append(svgEl("circle", {cx: x, cy: scaleY(evaluation.win_rate).toFixed(1), r: 4,
                                  class: "estimate"}));
    svg.append(group);
    if (index % labelEvery === 0) {
      svg.append(svgEl("text", {x, y: BOTTOM + 15, class: "tick tick-x", text: label}));
    }
  });
  return svg;
}
