/**
 * The local web view `claude-sessions serve` shows at "/": one self-contained page (no build
 * step, no dependency) that reads the same HTTP API as curl does and refreshes every 2 s. It is
 * also the engine's console: it starts sessions (POST /projects/{projectId}/sessions), follows one's
 * states as they are entered (the engine's GET /sessions/{id}/events), aborts it (POST
 * /sessions/{id}/abort) and shows a milestone with its tasks (GET /projects/{projectId}/milestones/{id}),
 * which it can close (POST …/close). A session or milestone is always read under its project's path.
 * Record data reaches markup only through esc().
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
  .wide { grid-column: 1 / -1; }
  form.start { display:grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap:8px 12px; align-items:start; }
  form.start label { display:flex; flex-direction:column; gap:2px; font-size:12px; color:var(--muted); }
  form.start label[hidden] { display:none; }
  form.start .prompt { grid-column: 1 / -1; }
  input, textarea { font:inherit; padding:3px 6px; border:1px solid var(--line); border-radius:4px; color:var(--fg); }
  textarea { min-height:56px; resize:vertical; }
  input[aria-invalid=true], textarea[aria-invalid=true] { border-color:var(--bad); }
  .field-error, .form-error { color:var(--bad); font-size:12px; }
  .field-error:empty, .form-error:empty { display:none; }
  button { font:inherit; padding:4px 12px; border-radius:4px; border:1px solid var(--line); background:#fff; cursor:pointer; }
  button.primary { background:var(--run); color:#fff; border-color:var(--run); }
  button.danger { color:var(--bad); border-color:var(--bad); margin-top:8px; }
  .milestone-actions { display:flex; gap:12px; align-items:baseline; }
  .actions { display:flex; gap:12px; align-items:center; grid-column: 1 / -1; }
  ol.progress { margin:8px 0 0; padding-left:20px; font-size:12px; color:var(--muted); }
  ol.progress li.end { font-weight:600; }
  ol.progress li.StateFailed, ol.progress li.ExecutionFailed, ol.progress li.ExecutionAborted, ol.progress li.ExecutionTimeout { color:var(--bad); }
  a { color:var(--run); }
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
  <section class="wide">
    <h2>Start a session</h2>
    <form id="start" class="start" data-testid="start-form" novalidate>
      <label class="prompt">Prompt <textarea name="prompt" data-field="prompt" data-testid="field-prompt"></textarea><span class="field-error" data-error="prompt"></span></label>
      <label>Project <input name="projectId" data-field="projectId" data-testid="field-projectId" value="default"><span class="field-error" data-error="projectId"></span></label>
      <label>Runtime <select name="runtime" data-field="runtime" data-testid="field-runtime"><option>lambda</option><option>fargate</option></select><span class="field-error" data-error="runtime"></span></label>
      <label>Milestone (optional) <input name="milestoneId" data-field="milestoneId" data-testid="field-milestoneId" placeholder="UUID"><span class="field-error" data-error="milestoneId"></span><span class="field-error" data-error="mode"></span></label>
      <label id="task-field" hidden>Task (optional) <input name="taskId" data-field="taskId" data-testid="field-taskId" placeholder="its name in the milestone"><span class="field-error" data-error="taskId"></span></label>
      <label>Max turns (optional) <input name="maxTurns" data-field="maxTurns" data-testid="field-maxTurns" inputmode="numeric" placeholder="1–200"><span class="field-error" data-error="maxTurns"></span></label>
      <label>Tools (optional) <input name="tools" data-field="tools" data-testid="field-tools" placeholder="Read, Grep (empty: the default)"><span class="field-error" data-error="tools"></span></label>
      <label>Workspace repository (optional) <input name="workspace.repo" data-field="workspace.repo" data-testid="field-workspace.repo" placeholder="https://… or /path"><span class="field-error" data-error="workspace.repo"></span><span class="field-error" data-error="workspace"></span></label>
      <label>Ref <input name="workspace.ref" data-field="workspace.ref" data-testid="field-workspace.ref" placeholder="the remote's default"><span class="field-error" data-error="workspace.ref"></span></label>
      <label>Branch <input name="workspace.branch" data-field="workspace.branch" data-testid="field-workspace.branch" placeholder="one of its own"><span class="field-error" data-error="workspace.branch"></span></label>
      <div class="actions"><button class="primary" type="submit" data-testid="start">Start</button><span class="form-error" data-testid="form-error"></span></div>
    </form>
  </section>
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
    <div id="none" class="empty" hidden>No sessions yet: run one with <code>npx claude-sessions run "…"</code> or POST /projects/{projectId}/sessions.</div>
  </section>
  <section data-testid="detail">
    <h2>Session</h2>
    <div id="detail" class="empty">Pick a session to see it here.</div>
    <ol id="progress" class="progress" data-testid="progress" hidden></ol>
  </section>
  <section class="wide" data-testid="milestone" id="milestone-section" hidden>
    <h2>Milestone</h2>
    <div id="milestone"></div>
  </section>
  <div class="charts">
    <section><h2>Tokens per day (in + out)</h2><div id="chart-tokens" data-testid="chart-tokens"></div><div class="legend" id="legend-tokens"></div></section>
    <section><h2>Cost per day (USD)</h2><div id="chart-cost" data-testid="chart-cost"></div><div class="legend" id="legend-cost"></div></section>
  </div>
</main>
<script>
const COLORS = ['#3867d6', '#20bf6b', '#fa8231', '#8854d0', '#eb3b5a', '#0fb9b1', '#f7b731', '#4b6584'];
// A project's colour from its id (FNV-1a), not its place in the list: another project appearing changes no colour.
const colorOf = (projectId) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < projectId.length; i++) h = Math.imul(h ^ projectId.charCodeAt(i), 0x01000193) >>> 0;
  return COLORS[h % COLORS.length];
};
// selected: the session shown in the detail; selectedProject: its project, whose path reads it.
const state = { sessions: [], usage: [], selected: null, selectedProject: null, stream: null, detailSeq: 0 };
const $ = (id) => document.getElementById(id);
const int = (n) => n.toLocaleString('en-US');
const usd = (n) => '$' + n.toFixed(n < 1 ? 6 : 2);
const ms = (n) => n < 1000 ? n + ' ms' : n < 120000 ? (n / 1000).toFixed(1) + ' s' : Math.floor(n / 60000) + ' min';
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
async function api(path, init) {
  const res = await fetch(path, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(path + ': ' + res.status + (body.message ? ' ' + body.message : '')), { status: res.status, body });
  return body;
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
  if (state.selected) showDetail(state.selected, state.selectedProject, false);
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}
function render() {
  const rows = state.sessions.map((s) => '<tr data-session="' + esc(s.sessionId) + '" data-project="' + esc(s.projectId) + '"' + (s.sessionId === state.selected ? ' class="selected"' : '') + '>' +
    '<td>' + esc(s.startedAt.replace('T', ' ').slice(0, 19)) + '</td><td title="' + esc(s.sessionId) + '">' + esc(s.sessionId.slice(0, 8)) + '…</td>' +
    '<td>' + esc(s.projectId) + '</td><td>' + status(s.status) + '</td><td>' + esc(s.mode) + '</td>' +
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
      bars += '<rect data-project="' + esc(u.projectId) + '" data-day="' + esc(day) + '" x="' + x + '" y="' + (H - pad - h) + '" width="' + (barW - 2) + '" height="' + h + '" fill="' + colorOf(u.projectId) + '"><title>' + esc(u.projectId) + ' ' + day + ': ' + fmt(value(d)) + '</title></rect>';
    });
    bars += '<text x="' + (pad + i * groupW + 4) + '" y="' + (H - 10) + '">' + esc(day.slice(5)) + '</text>';
  });
  el.innerHTML = '<svg viewBox="0 0 ' + W + ' ' + H + '" width="100%"><text x="0" y="12">' + fmt(max) + '</text><line x1="' + pad + '" x2="' + W + '" y1="' + (H - pad) + '" y2="' + (H - pad) + '" stroke="#ccd"/>' + bars + '</svg>';
  $('legend-' + kind).innerHTML = state.usage.map((u) => '<span><i style="background:' + colorOf(u.projectId) + '"></i>' + esc(u.projectId) + '</span>').join('');
}
// A workspace's branch and what changed on it; a branch of null means Claude changed nothing.
function workspace(w) {
  if (!w.branch) return esc(w.repo) + ' · no changes';
  return esc(w.repo) + ' · branch <code>' + esc(w.branch) + '</code> · ' + int(w.filesChanged) + (w.filesChanged === 1 ? ' file' : ' files') + ' changed, ' +
    '<span class="ins">+' + int(w.insertions) + '</span> <span class="del">−' + int(w.deletions) + '</span>';
}
const status = (s) => '<span class="status ' + esc(s) + '">' + esc(s) + '</span>';
const tokens = (u) => 'in ' + int(u.inputTokens) + ' · out ' + int(u.outputTokens) + ' · cache read ' + int(u.cacheReadInputTokens) + ' · cache write ' + int(u.cacheCreationInputTokens);
const dl = (rows) => '<dl>' + rows.map(([k, v]) => '<dt>' + k + '</dt><dd>' + v + '</dd>').join('') + '</dl>';
const projectPath = (projectId) => '/projects/' + encodeURIComponent(projectId);
// A milestone's link says its project too (#milestone=<projectId>/<milestoneId>): it is read under its project's path.
const milestoneLink = (id, projectId) => '<a href="#milestone=' + esc(encodeURIComponent(projectId) + '/' + id) + '" data-milestone="' + esc(id) + '" data-project="' + esc(projectId) + '" data-testid="milestone-link">' + esc(id) + '</a>';

// The selected session's record; the latest call wins, so a slow poll cannot paint over the stream's end.
async function showDetail(sessionId, projectId, scroll = true) {
  state.selected = sessionId;
  state.selectedProject = projectId;
  const seq = ++state.detailSeq;
  let s;
  try {
    s = await api(projectPath(projectId) + '/sessions/' + encodeURIComponent(sessionId));
  } catch (err) {
    if (err.status !== 404) throw err;
    s = null; // started, its CreateSession not yet passed
  }
  if (seq !== state.detailSeq || state.selected !== sessionId) return;
  renderDetail(sessionId, s);
  for (const tr of document.querySelectorAll('#rows tr')) tr.classList.toggle('selected', tr.dataset.session === sessionId);
  if (scroll) $('detail').scrollIntoView({ block: 'nearest' });
}
function renderDetail(sessionId, s) {
  $('detail').className = '';
  if (!s) {
    $('detail').innerHTML = dl([['Session', esc(sessionId)], ['Status', status('STARTING')]]) + abortButton(sessionId);
    return;
  }
  const rows = [['Session', esc(s.sessionId)], ['Status', status(s.status)], ['Project', esc(s.projectId) + (s.taskId ? ' / ' + esc(s.taskId) : '')],
    ['Mode', esc(s.mode) + (s.milestoneId ? ' (milestone ' + milestoneLink(s.milestoneId, s.projectId) + ')' : '')], ['Runtime', esc(s.runtime) + ' · trigger ' + esc(s.trigger)],
    ['Tokens', tokens(s.usage)],
    ['Turns', esc(s.numTurns)], ['Cost', usd(s.totalCostUsd)], ['Duration', ms(s.durationMs)], ['Started', esc(s.startedAt)], ['Ended', esc(s.endedAt ?? '(running)')]];
  if (s.provider) rows.push(['Model', esc(s.model ?? "(the CLI's default)") + ' via ' + esc(s.provider)]);
  for (const [model, u] of Object.entries(s.modelUsage ?? {})) {
    rows.push(['', '<span data-testid="model-usage">' + esc(model) + ': in ' + int(u.inputTokens) + ' · out ' + int(u.outputTokens) +
      ' · cache ' + int(u.cacheReadInputTokens) + '/' + int(u.cacheCreationInputTokens) + ' · ' + usd(u.costUsd) + '</span>']);
  }
  if (s.workspace) rows.push(['Workspace', '<span data-testid="workspace">' + workspace(s.workspace) + '</span>']);
  if (s.error) rows.push(['Error', esc(s.error) + (s.cause ? ': ' + esc(s.cause) : '')]);
  $('detail').innerHTML = dl(rows) + (s.status === 'RUNNING' ? abortButton(s.sessionId) : '') + (s.result ? '<pre>' + esc(s.result) + '</pre>' : '');
}
const abortButton = (sessionId) => '<button type="button" class="danger" data-abort="' + esc(sessionId) + '" data-testid="abort">Abort</button><span class="form-error" data-testid="abort-error"></span>';

// Each state as the execution enters it, from GET /sessions/{id}/events (replayed from the first), then the closed record.
const STEP = {
  StateEntered: (e) => '→ ' + e.state, StateFailed: (e) => '✗ ' + e.state + ': ' + e.error, StateRetried: (e) => '↻ ' + e.state + ' (retry ' + e.attempt + ')',
  ExecutionSucceeded: () => '✓ execution succeeded', ExecutionFailed: (e) => '✗ execution failed: ' + e.error,
  ExecutionAborted: () => '✗ execution aborted', ExecutionTimeout: () => '✗ execution timed out',
};
function follow(sessionId) {
  state.stream?.close();
  const list = $('progress');
  list.replaceChildren();
  list.hidden = false;
  list.dataset.session = sessionId;
  const stream = new EventSource('/sessions/' + encodeURIComponent(sessionId) + '/events');
  state.stream = stream;
  const step = (kind, text) => {
    const li = document.createElement('li');
    li.className = kind;
    li.textContent = text; // text, never markup
    list.append(li);
  };
  stream.addEventListener('state', (e) => {
    if (state.stream !== stream) return;
    const event = JSON.parse(e.data);
    if (STEP[event.type]) step(event.type, STEP[event.type](event));
  });
  stream.addEventListener('end', (e) => {
    stream.close(); // else EventSource reconnects and replays
    if (state.stream !== stream) return;
    state.stream = null;
    const { session } = JSON.parse(e.data);
    if (!session) return;
    step('end ' + session.status, session.status);
    if (state.selected === sessionId) {
      state.detailSeq++;
      renderDetail(sessionId, session);
    }
    tick();
  });
  // A session the engine no longer knows (404) or an engine gone: the 2 s refresh still shows the record.
  stream.addEventListener('error', () => { if (stream.readyState !== EventSource.OPEN) stream.close(); });
}
function select(sessionId, projectId) {
  follow(sessionId);
  return showDetail(sessionId, projectId);
}

// The form's fields as POST /projects/{projectId}/sessions takes them (the project in the path); blank
// optional fields are left out, so the API's defaults apply.
function startBody(form) {
  const value = (name) => form.elements.namedItem(name).value.trim();
  const body = { prompt: form.elements.namedItem('prompt').value, runtime: value('runtime') };
  if (value('milestoneId')) body.milestoneId = value('milestoneId');
  if (value('milestoneId') && value('taskId')) body.taskId = value('taskId');
  // Sent as typed when it is no number, so the API's error says what was wrong with it.
  const turns = value('maxTurns');
  if (turns) body.maxTurns = Number.isFinite(Number(turns)) ? Number(turns) : turns;
  const tools = value('tools').split(',').map((t) => t.trim()).filter(Boolean);
  if (tools.length) body.tools = tools;
  const workspace = {};
  for (const key of ['repo', 'ref', 'branch']) if (value('workspace.' + key)) workspace[key] = value('workspace.' + key);
  if (Object.keys(workspace).length) body.workspace = workspace;
  return body;
}
function showFieldErrors(form, errors) {
  for (const el of form.querySelectorAll('[data-error]')) el.textContent = '';
  for (const el of form.querySelectorAll('[data-field]')) el.removeAttribute('aria-invalid');
  const general = [];
  for (const { field, message } of errors) {
    const slot = [...form.querySelectorAll('[data-error]')].find((el) => el.dataset.error === field);
    if (!slot) { general.push(field + ' ' + message); continue; }
    slot.textContent = field + ' ' + message;
    const input = [...form.querySelectorAll('[data-field]')].find((el) => el.dataset.field === field);
    input?.setAttribute('aria-invalid', 'true');
  }
  form.querySelector('[data-testid=form-error]').textContent = general.join('; ');
}
// A task id belongs to a milestone task: the field shows once a milestone is given.
$('start').elements.namedItem('milestoneId').addEventListener('input', (e) => { $('task-field').hidden = !e.target.value.trim(); });
$('start').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target;
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const projectId = form.elements.namedItem('projectId').value.trim();
    if (!projectId) {
      showFieldErrors(form, [{ field: 'projectId', message: 'is required' }]);
      return;
    }
    const started = await api(projectPath(projectId) + '/sessions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(startBody(form)) });
    showFieldErrors(form, []);
    await select(started.sessionId, projectId);
    tick();
  } catch (err) {
    // 400 names each bad field; 404/409/429 (no such milestone, one busy, a project at its limit) say why.
    showFieldErrors(form, err.body?.errors ?? [{ field: '(request)', message: err.body?.message ?? err.message }]);
  } finally {
    button.disabled = false;
  }
});

$('detail').addEventListener('click', async (e) => {
  const button = e.target.closest('[data-abort]');
  if (!button) return;
  const sessionId = button.dataset.abort;
  button.disabled = true;
  button.textContent = 'Aborting…';
  try {
    const { session } = await api('/sessions/' + encodeURIComponent(sessionId) + '/abort', { method: 'POST' });
    if (session && state.selected === sessionId) {
      state.detailSeq++;
      renderDetail(sessionId, session);
    }
    tick();
  } catch (err) {
    const slot = $('detail').querySelector('[data-testid=abort-error]');
    if (slot) slot.textContent = err.message;
    button.disabled = false;
    button.textContent = 'Abort';
  }
});

// A milestone: its status, the workspace its tasks continue, each task with its usage, and the totals.
async function showMilestone(milestoneId, projectId) {
  const m = await api(projectPath(projectId) + '/milestones/' + encodeURIComponent(milestoneId));
  const w = m.workspace;
  const rows = [['Milestone', esc(m.milestoneId)], ['Status', status(m.status)], ['Project', esc(m.projectId)],
    ['Created', esc(m.createdAt)], ['Closed', esc(m.closedAt ?? '(open)')],
    ['Workspace', '<span data-testid="milestone-workspace">' + (w ? esc(w.repo) + ' · branch <code>' + esc(w.branch) + '</code>' + (w.ref ? ' from ' + esc(w.ref) : '') : 'none') + '</span>'],
    ['Totals', '<span data-testid="milestone-totals">' + int(m.totals.sessions) + (m.totals.sessions === 1 ? ' task' : ' tasks') + ' · ' + tokens(m.totals.usage) +
      ' · ' + int(m.totals.numTurns) + ' turns · ' + usd(m.totals.totalCostUsd) + ' · ' + ms(m.totals.durationMs) + '</span>']];
  if (m.brokenReason) rows.push(['Broken', esc(m.brokenReason)]);
  const close = m.status === 'OPEN' ? '<button type="button" class="danger" data-close-milestone="' + esc(m.milestoneId) + '" data-project="' + esc(m.projectId) + '" data-testid="milestone-close">Close</button>' : '';
  const tasks = m.tasks.map((t) => '<tr data-task-session="' + esc(t.sessionId) + '" data-project="' + esc(t.projectId) + '">' +
    '<td>' + esc(t.startedAt.replace('T', ' ').slice(0, 19)) + '</td><td>' + esc(t.taskId ?? '') + '</td><td title="' + esc(t.sessionId) + '">' + esc(t.sessionId.slice(0, 8)) + '…</td>' +
    '<td>' + status(t.status) + '</td><td class="num">' + int(t.usage.inputTokens) + '</td><td class="num">' + int(t.usage.outputTokens) + '</td>' +
    '<td class="num">' + usd(t.totalCostUsd) + '</td><td class="num">' + ms(t.durationMs) + '</td></tr>').join('');
  $('milestone').innerHTML = dl(rows) + '<div class="milestone-actions">' + close + '<span class="form-error" data-testid="milestone-error"></span></div>' + '<div class="scroll"><table><thead><tr><th>Started</th><th>Task</th><th>Session</th><th>Status</th>' +
    '<th class="num">In</th><th class="num">Out</th><th class="num">Cost</th><th class="num">Duration</th></tr></thead>' +
    '<tbody data-testid="milestone-tasks">' + tasks + '</tbody></table></div>' + (m.tasks.length ? '' : '<div class="empty">No tasks yet.</div>') +
    // The view reads one page of tasks; the totals above count every task.
    (m.nextToken ? '<div class="empty">The first ' + int(m.tasks.length) + ' of ' + int(m.totals.sessions) + ' tasks.</div>' : '');
  $('milestone-section').hidden = false;
  $('milestone-section').scrollIntoView({ block: 'nearest' });
}
const openMilestone = (milestoneId, projectId) => showMilestone(milestoneId, projectId).catch((err) => { $('milestone').textContent = err.message; $('milestone-section').hidden = false; });
document.addEventListener('click', (e) => {
  const link = e.target.closest('a[data-milestone]');
  if (!link) return;
  e.preventDefault();
  history.replaceState(null, '', link.getAttribute('href'));
  openMilestone(link.dataset.milestone, link.dataset.project);
});
// Closing, then the view as GET …/milestones/{id} has it; a refusal (a task running: 409) stays beside the button.
$('milestone').addEventListener('click', async (e) => {
  const button = e.target.closest('[data-close-milestone]');
  if (!button) return;
  const milestoneId = button.dataset.closeMilestone;
  const projectId = button.dataset.project;
  button.disabled = true;
  button.textContent = 'Closing…';
  try {
    await api(projectPath(projectId) + '/milestones/' + encodeURIComponent(milestoneId) + '/close', { method: 'POST' });
  } catch (err) {
    $('milestone').querySelector('[data-testid=milestone-error]').textContent = err.body?.message ?? err.message;
    button.disabled = false;
    button.textContent = 'Close';
    return;
  }
  await openMilestone(milestoneId, projectId);
});
$('milestone').addEventListener('click', (e) => { const tr = e.target.closest('tr[data-task-session]'); if (tr) select(tr.dataset.taskSession, tr.dataset.project); });
$('rows').addEventListener('click', (e) => { const tr = e.target.closest('tr'); if (tr) select(tr.dataset.session, tr.dataset.project); });
$('project').addEventListener('change', refresh);
$('status').addEventListener('change', refresh);
const tick = () => refresh().catch((err) => { $('updated').textContent = 'cannot reach the API: ' + err.message; });
tick();
setInterval(tick, 2000);
const linked = /^#milestone=([^/]+)[/]([0-9a-f-]{36})$/i.exec(location.hash);
if (linked) openMilestone(linked[2], decodeURIComponent(linked[1]));
</script>
</body>
</html>
`;
