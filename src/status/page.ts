// The status page itself (README "Status page"): plain HTML, a stylesheet and
// a script, kept here as strings so that the compiled binary carries them and
// the page needs nothing from elsewhere (no CDN, no font, no library). The
// script draws from /events (server-sent events, once a second) and the charts
// are inline SVG it builds itself.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>parachute status</title>
<link rel="stylesheet" href="status.css">
<script src="status.js" defer></script>
</head>
<body>
<header>
  <h1>parachute</h1>
  <p id="meta">connecting…</p>
  <p id="live" class="badge" data-live="connecting">connecting</p>
</header>
<main id="services"><p class="empty">Loading…</p></main>
<footer>Read-only. Data as JSON: <a href="status.json">status.json</a>.</footer>
</body>
</html>
`;

export const PAGE_STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #5c6670; --bg: #fff; --card: #f6f7f9; --line: #d8dde3;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --info: #0969da; --chart: #0969da; --chart2: #8250df; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9aa5b1; --bg: #0d1117; --card: #161b22; --line: #30363d;
  --ok: #3fb950; --warn: #d29922; --bad: #f85149; --info: #58a6ff; --chart: #58a6ff; --chart2: #bc8cff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .4rem 1rem; padding: .8rem 1rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 0; }
h3 { font-size: .8rem; margin: 1rem 0 .3rem; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
#meta { margin: 0; color: var(--muted); flex: 1; }
main { padding: 1rem; display: grid; gap: 1rem; grid-template-columns: repeat(auto-fill, minmax(min(100%, 34rem), 1fr)); }
section.service { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1rem; min-width: 0; }
.title { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem .7rem; }
.routes { color: var(--muted); margin: .2rem 0 0; overflow-wrap: anywhere; }
.numbers { display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; margin: .5rem 0 0; }
.numbers b { font-variant-numeric: tabular-nums; }
.badge { display: inline-block; margin: 0; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; border: 1px solid currentColor; white-space: nowrap; }
[data-state=healthy], [data-state=running], [data-live=live] { color: var(--ok); }
[data-state=adding], [data-state=paused], [data-state=issuing], [data-live=connecting] { color: var(--warn); }
[data-state=unhealthy], [data-state=stopped], [data-state=error], [data-live=lost] { color: var(--bad); }
[data-state=draining] { color: var(--info); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .25rem .5rem .25rem 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.check { color: var(--muted); overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(7rem, 1fr)); gap: .6rem 1rem; }
figure { margin: 0; }
figcaption { font-size: .8rem; color: var(--muted); display: flex; justify-content: space-between; gap: .3rem; }
figcaption b { color: var(--fg); font-variant-numeric: tabular-nums; }
svg.chart { width: 100%; height: 3.2rem; display: block; border-bottom: 1px solid var(--line); }
svg.chart polyline { fill: none; stroke: var(--chart); stroke-width: 2; stroke-linecap: round; stroke-linejoin: round; vector-effect: non-scaling-stroke; }
svg.chart polyline.second { stroke: var(--chart2); }
.p50 { color: var(--chart); } .p99 { color: var(--chart2); }
.empty, .note { color: var(--muted); }
.error { color: var(--bad); overflow-wrap: anywhere; }
footer { padding: 0 1rem 1rem; color: var(--muted); font-size: .85rem; }
a { color: var(--info); }
`;

export const PAGE_SCRIPT = String.raw`"use strict";
(() => {
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const ago = (iso, now) => {
    const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    return s < 90 ? s + "s ago" : s < 5400 ? Math.round(s / 60) + "m ago" : Math.round(s / 3600) + "h ago";
  };
  const until = (iso, now) => {
    const days = (Date.parse(iso) - now) / 86400000;
    return days < 0 ? "expired" : days < 2 ? "in " + Math.round(days * 24) + " h" : "in " + Math.round(days) + " days";
  };
  const rate = (n) => (n === null || n === undefined ? "–" : n < 10 ? n.toFixed(2) : n.toFixed(0)) + "/s";
  const millis = (n) => (n === null || n === undefined ? "–" : n < 0.01 ? (n * 1000).toFixed(1) + " ms" : n < 1 ? (n * 1000).toFixed(0) + " ms" : n.toFixed(2) + " s");
  const last = (list) => { for (let i = list.length - 1; i >= 0; i--) if (list[i] !== null) return list[i]; return null; };

  // One small chart: a polyline per series, broken where a point is missing
  // (nobody was looking, or no request ended then).
  function chart(t, lines, from, to, gapMs) {
    const max = Math.max(0, ...lines.flatMap((l) => l.filter((v) => v !== null))) || 1;
    const x = (ms) => ((ms - from) / (to - from || 1)) * 100;
    const y = (v) => 38 - (v / max) * 36;
    const polylines = lines.map((values, k) => {
      const runs = [];
      let run = [];
      values.forEach((v, i) => {
        const broken = v === null || (i > 0 && t[i] - t[i - 1] > gapMs);
        if (broken && run.length) { runs.push(run); run = []; }
        if (v !== null) run.push(x(t[i]).toFixed(2) + "," + y(v).toFixed(2));
      });
      if (run.length) runs.push(run);
      return runs.map((r) => '<polyline class="' + (k ? "second" : "first") + '" points="' + (r.length === 1 ? r[0] + " " + r[0] : r.join(" ")) + '"/>').join("");
    });
    return '<svg class="chart" viewBox="0 0 100 40" preserveAspectRatio="none" role="img">' + polylines.join("") + "</svg>";
  }

  function figure(labelHtml, value, svg, test) {
    return '<figure data-chart="' + test + '"><figcaption><span>' + labelHtml + "</span><b>" + esc(value) + "</b></figcaption>" + svg + "</figure>";
  }

  function charts(s, status) {
    const { t } = s.series;
    const to = Date.parse(status.generatedAt);
    const point = status.sampling.pointSeconds * 1000;
    const windowStart = to - status.sampling.windowSeconds * 1000;
    // Until the window is full (points are taken only while someone looks), the charts span what there is.
    const from = t.length ? Math.max(windowStart, Math.min(t[0] - point, to - 6 * point)) : windowStart;
    const gap = point * 2.5;
    const title = from > windowStart + point ? "Since " + new Date(from).toLocaleTimeString() : "Last " + Math.round(status.sampling.windowSeconds / 60) + " minutes";
    return "<h3>" + esc(title) + "</h3>" + '<div class="charts">' +
      figure("requests", rate(last(s.series.requestRate)), chart(t, [s.series.requestRate], from, to, gap), "requests") +
      figure("5xx", rate(last(s.series.errorRate)), chart(t, [s.series.errorRate], from, to, gap), "errors") +
      figure('<span class="p50">p50</span> / <span class="p99">p99</span>', millis(last(s.series.p50)) + " / " + millis(last(s.series.p99)), chart(t, [s.series.p50, s.series.p99], from, to, gap), "latency") +
      figure("in flight", String(s.inFlight), chart(t, [s.series.inFlight], from, to, gap), "in-flight") +
      "</div>";
  }

  function targets(s, now) {
    if (!s.targets.length) return '<p class="empty">No targets.</p>';
    const rows = s.targets.map((t) =>
      '<tr data-target="' + esc(t.address) + '" data-target-state="' + esc(t.state) + '"><td>' + esc(t.address) + "</td><td>" + esc(t.role) +
      '</td><td><span class="badge" data-state="' + esc(t.state) + '">' + esc(t.state) + '</span></td><td class="check">' + esc(t.lastCheck) +
      (t.lastCheckAt ? " · " + ago(t.lastCheckAt, now) : "") + "</td></tr>");
    return '<div class="scroll"><table><thead><tr><th>target</th><th>role</th><th>state</th><th>last health check</th></tr></thead><tbody>' + rows.join("") + "</tbody></table></div>";
  }

  function certificates(s, now) {
    if (!s.tls) return "";
    const rows = s.certificates.map((c) => {
      const state = c.error ? "error" : c.issuing ? "issuing" : c.expiresAt ? "healthy" : "adding";
      const expiry = c.expiresAt ? esc(until(c.expiresAt, now)) + " (" + esc(c.expiresAt.slice(0, 10)) + ")" : "no certificate yet";
      const note = c.error ? '<div class="error">ACME error ' + esc(ago(c.error.at, now)) + ": " + esc(c.error.message) + "</div>" : c.issuing ? '<div class="note">ordering…</div>' : "";
      return '<tr data-host="' + esc(c.host) + '"><td>' + esc(c.host) + "</td><td>" + esc(c.source) + '</td><td><span class="badge" data-state="' + state + '">' + expiry + "</span>" + note + "</td></tr>";
    });
    return "<h3>TLS certificates</h3>" + (rows.length ? '<div class="scroll"><table><thead><tr><th>host</th><th>source</th><th>expires</th></tr></thead><tbody>' + rows.join("") + "</tbody></table></div>" : '<p class="empty">No TLS host.</p>');
  }

  const targetSets = (sets) => [sets.targets.join(", "), sets.readTargets.length ? "read: " + sets.readTargets.join(", ") : "", sets.rolloutTargets.length ? "rollout: " + sets.rolloutTargets.join(", ") : ""].filter(Boolean).join(" · ") || "–";

  // Newest first; "parachute history SERVICE" has them all.
  function history(s, now) {
    const list = s.history.slice().reverse();
    if (!list.length) return '<h3>Deploy history</h3><p class="empty">Nothing recorded.</p>';
    const rows = list.map((h) =>
      '<tr data-history="' + esc(h.command) + '"><td>' + esc(ago(h.time, now)) + "</td><td>" + esc(h.commandLine) + "</td><td>" + esc(targetSets(h.before)) + " → " + esc(targetSets(h.after)) +
      "</td><td>" + esc(h.durationMs < 1000 ? h.durationMs + " ms" : (h.durationMs / 1000).toFixed(1) + " s") + '</td><td class="' + (h.outcome === "ok" ? "" : "error") + '">' + esc(h.outcome === "ok" ? "ok" : "failed: " + (h.error || "")) + "</td></tr>");
    return '<h3>Deploy history</h3><div class="scroll"><table><thead><tr><th>when</th><th>command</th><th>targets</th><th>took</th><th>outcome</th></tr></thead><tbody>' + rows.join("") + "</tbody></table></div>";
  }

  function service(s, status, now) {
    const routes = (s.hosts.length ? s.hosts.join(", ") : "any host") + " · " + s.pathPrefixes.join(", ") + (s.tls ? " · TLS" : "");
    const state = s.state + (s.message ? ": " + s.message : "");
    const split = s.rollout ? "<span>rollout <b>" + esc(s.rollout.percent) + "%</b>" + (s.rollout.list.length ? " + " + esc(s.rollout.list.join(", ")) : "") + "</span>" : "";
    return '<section class="service" data-service="' + esc(s.name) + '" data-service-state="' + esc(s.state) + '">' +
      '<div class="title"><h2>' + esc(s.name) + '</h2><span class="badge" data-state="' + esc(s.state) + '">' + esc(state) + "</span></div>" +
      '<p class="routes">' + esc(routes) + "</p>" +
      '<p class="numbers"><span>in flight <b data-in-flight>' + esc(s.inFlight) + "</b></span>" + (s.waiting ? "<span>waiting <b>" + esc(s.waiting) + "</b></span>" : "") +
      "<span>requests <b>" + esc(s.requests.total) + "</b></span><span>5xx <b>" + esc(s.requests.errors5xx) + "</b></span>" + split + "</p>" +
      "<h3>Targets</h3>" + targets(s, now) + charts(s, status) + certificates(s, now) + history(s, now) + "</section>";
  }

  function render(status) {
    const now = Date.parse(status.generatedAt);
    document.getElementById("meta").textContent = "v" + status.version + " · pid " + status.pid + " · " + new Date(now).toLocaleTimeString();
    document.getElementById("meta").dataset.generatedAt = status.generatedAt;
    const main = document.getElementById("services");
    main.innerHTML = status.services.length ? status.services.map((s) => service(s, status, now)).join("") : '<p class="empty">No services deployed.</p>';
  }

  const live = (state) => {
    const el = document.getElementById("live");
    el.dataset.live = state;
    el.textContent = state;
  };
  const events = new EventSource("events");
  events.addEventListener("status", (e) => { live("live"); render(JSON.parse(e.data)); });
  events.addEventListener("error", () => live(events.readyState === EventSource.CLOSED ? "lost" : "connecting"));
})();
`;
