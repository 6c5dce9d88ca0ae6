/**
 * The local web view `claude-sessions serve` shows at "/": one self-contained page (no build
 * step, no dependency) that reads the same HTTP API as curl does and refreshes every 2 s.
 */
export const SESSIONS_PAGE = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>claude-sessions</title>
<style>
  :root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ec; --bg:#f7f8fa; --ok:#1a7f37; --bad:#c62828; --warn:#b26a00; --run:#0b62d6; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; align-items:baseline; gap:24px; padding:16px 24px; background:#fff; border-bottom:1px solid var(--line); flex-wrap:wrap; }
  header h1 { font-size:18px; margin:0; }
  .figure { color:var(--muted); } .figure b { color:var(--fg); font-size:16px; }
  main { padding:16px 24px; display:grid; grid-template-columns: minmax(0,1fr) minmax(300px,380px); gap:16px; }
  .scroll { overflow-x:auto; }
  section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 16px; min-width:0; }
  h2 { font-size:14px; margin:0 0 8px; }
  .filters { display:flex; gap:12px; margin-bottom:8px; align-items:center; }
  select { font:inherit; padding:2px 6px; }
  table { width:100%; border-collapse:collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align:left; padding:5px 6px; border-bottom:1px solid var(--line); white-space:nowrap; }
  th { color:var(--muted); font-weight:500; font-size:12px; }
  td.num, th.num { text-align:right; }
  tbody tr { cursor:pointer; } tbody tr:hover { background:#f2f5fb; } tbody tr.selected { background:#e8f0fe; }
  .status { font-size:12px; font-weight:600; padding:1px 6px; border-radius:10px; background:#eef0f4; }
  .ins { color:var(--ok); } .del { color:var(--bad); }
  .COMPLETED { color:var(--ok); } .FAILED, .ABORTED { color:var(--bad); } .TIMED_OUT { color:var(--warn); } .RUNNING { color:var(--run); }
  dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 12px; margin:0; }
  dt { color:var(--muted); } dd { margin:0; overflow-wrap:anywhere; }
  pre { white-space:pre-wrap; background:var(--bg); padding:8px; border-radius:6px; max-height:220px; overflow:auto; margin:8px 0 0; }
  .empty { color:var(--muted); padding:12px 0; }
  .legend span { display:inline-flex; align-items:center; gap:4px; margin-right:12px; font-size:12px; color:var(--muted); }
  .legend i { width:10px; height:10px; border-radius:2px; display:inline-block; }
  .charts { grid-column: 1 / -1; display:grid; grid-template-columns:1fr 1fr; gap:16px; }
  svg text { font-size:11px; fill:var(--muted); }
</style>
</head>
<body>
<header>
  <h1>claude-sessions</h1>
  <span class="figure">sessions <b data-testid="total-sessions">–</b></span>
  <span class="figure">tokens in/out <b data-testid="total-tokens">–</b></span>
  <span class="figure">cost <b data-testid="total-cost">–</b></span>
  <span class="figure" id="updated"></span>
</header>
<main>
  <section>
    <h2>Sessions</h2>
    <div class="filters">
      <label>Project <select id="project" data-testid="filter-project"><option value="">all</option></select></label>
      <label>Status <select id="status" data-testid="filter-status"><option value="">all</option>
        <option>RUNNING</option><option>COMPLETED</option><option>FAILED</option><option>TIMED_OUT</option><option>ABORTED</option></select></label>
    </div>
    <div class="scroll"><table>
      <thead><tr><th>Started</th><th>Session</th><th>Project</th><th>Status</th><th>Mode</th>
        <th class="num">In</th><th class="num">Out</th><th class="num">Turns</th><th class="num">Cost</th><th class="num">Duration</th></tr></thead>
      <tbody id="rows" data-testid="sessions"></tbody>
    </table></div>
    <div id="none" class="empty" hidden>No sessions yet: run one with <code>npx claude-sessions run "…"</code> or POST /sessions.</div>
  </section>
  <section data-testid="detail">
    <h2>Session</h2>
    <div id="detail" class="empty">Pick a session to see it here.</div>
  </section>
  <div class="charts">
    <section><h2>Tokens per day (in + out)</h2><div id="chart-tokens" data-testid="chart-tokens"></div><div class="legend" id="legend-tokens"></div></section>
    <section><h2>Cost per day (USD)</h2><div id="chart-cost" data-testid="chart-cost"></div><div class="legend" id="legend-cost"></div></section>
  </div>
</main>
<script>
const COLORS = ['#3867d6', '#20bf6b', '#fa8231', '#8854d0', '#eb3b5a', '#0fb9b1', '#f7b731', '#4b6584'];
const state = { sessions: [], usage: [], selected: null };
const $ = (id) => document.getElementById(id);
const int = (n) => n.toLocaleString('en-US');
const usd = (n) => '$' + n.toFixed(n < 1 ? 6 : 2);
const ms = (n) => n < 1000 ? n + ' ms' : n < 120000 ? (n / 1000).toFixed(1) + ' s' : Math.floor(n / 60000) + ' min';
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
async function api(path) {
  const res = await fetch(path);
  if (!res.ok) throw new Error(path + ': ' + res.status);
  return res.json();
}
async function refresh() {
  const projects = (await api('/projects')).items;
  const select = $('project');
  for (const p of projects) if (![...select.options].some((o) => o.value === p)) select.add(new Option(p, p));
  const shown = select.value ? [select.value] : projects;
  const status = $('status').value;
  const pages = await Promise.all(shown.map((p) => api('/projects/' + encodeURIComponent(p) + '/sessions?limit=100' + (status ? '&status=' + status : ''))));
  state.sessions = pages.flatMap((p) => p.items).sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  state.usage = await Promise.all(shown.map((p) => api('/projects/' + encodeURIComponent(p) + '/usage')));
  render();
  if (state.selected) showDetail(state.selected, false);
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}
function render() {
  const rows = state.sessions.map((s) => '<tr data-session="' + s.sessionId + '"' + (s.sessionId === state.selected ? ' class="selected"' : '') + '>' +
    '<td>' + esc(s.startedAt.replace('T', ' ').slice(0, 19)) + '</td><td title="' + s.sessionId + '">' + s.sessionId.slice(0, 8) + '…</td>' +
    '<td>' + esc(s.projectId) + '</td><td><span class="status ' + s.status + '">' + s.status + '</span></td><td>' + esc(s.mode) + '</td>' +
    '<td class="num">' + int(s.usage.inputTokens) + '</td><td class="num">' + int(s.usage.outputTokens) + '</td>' +
    '<td class="num">' + s.numTurns + '</td><td class="num">' + usd(s.totalCostUsd) + '</td><td class="num">' + ms(s.durationMs) + '</td></tr>').join('');
  $('rows').innerHTML = rows;
  $('none').hidden = state.sessions.length > 0;
  const t = state.usage.reduce((a, u) => ({ n: a.n + u.sessions, i: a.i + u.usage.inputTokens, o: a.o + u.usage.outputTokens, c: a.c + u.totalCostUsd }), { n: 0, i: 0, o: 0, c: 0 });
  document.querySelector('[data-testid=total-sessions]').textContent = int(t.n);
  document.querySelector('[data-testid=total-tokens]').textContent = int(t.i) + ' / ' + int(t.o);
  document.querySelector('[data-testid=total-cost]').textContent = usd(t.c);
  chart('tokens', (d) => d.inputTokens + d.outputTokens, int);
  chart('cost', (d) => d.totalCostUsd, usd);
}
function chart(kind, value, fmt) {
  const days = [...new Set(state.usage.flatMap((u) => u.daily.map((d) => d.day)))].sort().slice(-14);
  const el = $('chart-' + kind);
  if (!days.length) { el.innerHTML = '<div class="empty">No data yet.</div>'; $('legend-' + kind).innerHTML = ''; return; }
  const W = 520, H = 180, pad = 28, groupW = (W - pad) / days.length, barW = Math.max(4, Math.min(28, (groupW - 8) / Math.max(1, state.usage.length)));
  const max = Math.max(1e-9, ...state.usage.flatMap((u) => u.daily.map(value)));
  let bars = '';
  days.forEach((day, i) => {
    state.usage.forEach((u, j) => {
      const d = u.daily.find((x) => x.day === day);
      if (!d) return;
      const h = Math.max(1, (value(d) / max) * (H - pad - 22));
      const x = pad + i * groupW + 4 + j * barW;
      bars += '<rect data-project="' + esc(u.projectId) + '" data-day="' + day + '" x="' + x + '" y="' + (H - pad - h) + '" width="' + (barW - 2) + '" height="' + h + '" fill="' + COLORS[j % COLORS.length] + '"><title>' + esc(u.projectId) + ' ' + day + ': ' + fmt(value(d)) + '</title></rect>';
    });
    bars += '<text x="' + (pad + i * groupW + 4) + '" y="' + (H - 10) + '">' + day.slice(5) + '</text>';
  });
  el.innerHTML = '<svg viewBox="0 0 ' + W + ' ' + H + '" width="100%"><text x="0" y="12">' + fmt(max) + '</text><line x1="' + pad + '" x2="' + W + '" y1="' + (H - pad) + '" y2="' + (H - pad) + '" stroke="#ccd"/>' + bars + '</svg>';
  $('legend-' + kind).innerHTML = state.usage.map((u, j) => '<span><i style="background:' + COLORS[j % COLORS.length] + '"></i>' + esc(u.projectId) + '</span>').join('');
}
// A workspace's branch and what changed on it; a branch of null means Claude changed nothing.
function workspace(w) {
  if (!w.branch) return esc(w.repo) + ' · no changes';
  return esc(w.repo) + ' · branch <code>' + esc(w.branch) + '</code> · ' + int(w.filesChanged) + (w.filesChanged === 1 ? ' file' : ' files') + ' changed, ' +
    '<span class="ins">+' + int(w.insertions) + '</span> <span class="del">−' + int(w.deletions) + '</span>';
}
async function showDetail(sessionId, scroll = true) {
  state.selected = sessionId;
  const s = await api('/sessions/' + sessionId);
  const rows = [['Session', s.sessionId], ['Status', '<span class="status ' + s.status + '">' + s.status + '</span>'], ['Project', esc(s.projectId) + (s.taskId ? ' / ' + esc(s.taskId) : '')],
    ['Mode', esc(s.mode) + (s.milestoneId ? ' (milestone ' + s.milestoneId + ')' : '')], ['Runtime', esc(s.runtime) + ' · trigger ' + esc(s.trigger)],
    ['Tokens', 'in ' + int(s.usage.inputTokens) + ' · out ' + int(s.usage.outputTokens) + ' · cache read ' + int(s.usage.cacheReadInputTokens) + ' · cache write ' + int(s.usage.cacheCreationInputTokens)],
    ['Turns', s.numTurns], ['Cost', usd(s.totalCostUsd)], ['Duration', ms(s.durationMs)], ['Started', esc(s.startedAt)], ['Ended', esc(s.endedAt ?? '(running)')]];
  if (s.provider) rows.push(['Model', esc(s.model ?? "(the CLI's default)") + ' via ' + esc(s.provider)]);
  for (const [model, u] of Object.entries(s.modelUsage ?? {})) {
    rows.push(['', '<span data-testid="model-usage">' + esc(model) + ': in ' + int(u.inputTokens) + ' · out ' + int(u.outputTokens) +
      ' · cache ' + int(u.cacheReadInputTokens) + '/' + int(u.cacheCreationInputTokens) + ' · ' + usd(u.costUsd) + '</span>']);
  }
  if (s.workspace) rows.push(['Workspace', '<span data-testid="workspace">' + workspace(s.workspace) + '</span>']);
  if (s.error) rows.push(['Error', esc(s.error) + (s.cause ? ': ' + esc(s.cause) : '')]);
  $('detail').className = '';
  $('detail').innerHTML = '<dl>' + rows.map(([k, v]) => '<dt>' + k + '</dt><dd>' + v + '</dd>').join('') + '</dl>' + (s.result ? '<pre>' + esc(s.result) + '</pre>' : '');
  for (const tr of document.querySelectorAll('#rows tr')) tr.classList.toggle('selected', tr.dataset.session === sessionId);
  if (scroll) $('detail').scrollIntoView({ block: 'nearest' });
}
$('rows').addEventListener('click', (e) => { const tr = e.target.closest('tr'); if (tr) showDetail(tr.dataset.session); });
$('project').addEventListener('change', refresh);
$('status').addEventListener('change', refresh);
const tick = () => refresh().catch((err) => { $('updated').textContent = 'cannot reach the API: ' + err.message; });
tick();
setInterval(tick, 2000);
</script>
</body>
</html>
`;
