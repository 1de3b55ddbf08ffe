// Element builders and value formatting shared by the views.
//
// Text from the API is always inserted as text nodes, never parsed as HTML.

// The HTML parser puts an <svg> element in the SVG namespace, so reading it here keeps
// the namespace identifier out of this file's strings.
const svgHolder = document.createElement("div");
svgHolder.innerHTML = "<svg></svg>";
const SVG_NAMESPACE = svgHolder.firstChild.namespaceURI;

function fill(node, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Create an HTML element: `el("a", {href: "#/"}, "Jobs")`.
export function el(tag, attributes, ...children) {
  return fill(document.createElement(tag), attributes, children);
}

// Create an SVG element with presentation attributes.
export function svgEl(tag, attributes, ...children) {
  return fill(document.createElementNS(SVG_NAMESPACE, tag), attributes, children);
}

// Format an RFC 3339 time as local time: the clock time for today, else date and time.
export function formatTime(iso) {
  if (!iso) return "";
  const time = new Date(iso);
  if (Number.isNaN(time.getTime())) return String(iso);
  const today = new Date().toDateString() === time.toDateString();
  return today ? time.toLocaleTimeString() : time.toLocaleString();
}

// Format a metric value with about four significant digits.
export function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  if (!Number.isFinite(value)) return String(value);
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) {
    return value.toExponential(2);
  }
  return String(Number(value.toPrecision(4)));
}

export function formatPercent(fraction) {
  if (fraction === null || fraction === undefined) return "–";
  return `${(fraction * 100).toFixed(1)}%`;
}

// A <time> element that shows local time and keeps the exact value in its tooltip.
export function timeEl(iso) {
  return el("time", {datetime: iso || null, title: iso || null, text: formatTime(iso)});
}
