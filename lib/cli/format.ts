import type { SessionRecord, SessionSummary, WorkspaceRecord } from '../sessions/session-item.js';
import { addUsageByModel, type UsageByModel } from '../sessions/usage.js';
import type { UsageTotals } from '../sessions/session-repository.js';
import type { MilestoneView } from '../sessions/milestone-repository.js';

export function formatUsd(usd: number): string {
  return `$${usd.toFixed(usd < 1 ? 6 : 2)}`;
}

export function formatMs(ms: number): string {
  if (ms < 1_000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1_000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1_000)} s`;
}

/**
 * The CLI's own duration; a session closed with none (aborted, timed out, its process killed:
 * the reaper's close records no run) shows the time from its start to its close instead.
 */
export function formatDuration(s: Pick<SessionRecord, 'durationMs' | 'startedAt' | 'endedAt'>): string {
  if (s.durationMs > 0 || !s.endedAt) return formatMs(s.durationMs);
  const wall = Date.parse(s.endedAt) - Date.parse(s.startedAt);
  return Number.isFinite(wall) && wall > 0 ? `${formatMs(wall)} (start to close)` : formatMs(s.durationMs);
}

function int(n: number): string {
  return n.toLocaleString('en-US');
}

/** A closed session for people: what ran, what it cost, how it ended, the start of the reply. */
export function formatSession(s: SessionRecord, replyLines = 6): string {
  const rows: [string, string][] = [
    ['Session', `${s.sessionId}  ${s.status}`],
    ['Project', `${s.projectId}${s.taskId ? ` / task ${s.taskId}` : ''}   (mode ${s.mode}, runtime ${s.runtime}, trigger ${s.trigger})`],
    ...(s.milestoneId ? [['Milestone', s.milestoneId] as [string, string]] : []),
    ['Tokens', `input ${int(s.usage.inputTokens)} · output ${int(s.usage.outputTokens)} · cache read ${int(s.usage.cacheReadInputTokens)} · cache write ${int(s.usage.cacheCreationInputTokens)}`],
    ...byModelRows(s.modelUsage),
    ['Turns', String(s.numTurns)],
    ['Cost', formatUsd(s.totalCostUsd)],
    ['Duration', formatDuration(s)],
    ['Started', s.startedAt],
    ['Ended', s.endedAt ?? '(running)'],
  ];
  if (s.provider) rows.push(['Model', `${s.model ?? '(the CLI\'s default)'} via ${s.provider}`]);
  if (s.workspace) rows.push(['Workspace', formatWorkspace(s.workspace)]);
  if (s.error) rows.push(['Error', `${s.error}${s.cause ? `: ${s.cause}` : ''}`]);
  const out = rows.map(([k, v]) => `${k.padEnd(9)} ${v}`);
  if (s.result) {
    const lines = s.result.split('\n');
    out.push('Reply', ...lines.slice(0, replyLines).map((l) => `  ${l}`));
    if (lines.length > replyLines) out.push(`  … (${lines.length - replyLines} more lines: show ${s.sessionId})`);
  }
  return out.join('\n');
}

/**
 * One model under one name: the CLI's result names a model with its context variant
 * (`claude-opus-4-8[1m]`) where the stream names it bare, and a total of both would show it twice.
 */
export function mergeModelVariants(byModel: UsageByModel): UsageByModel {
  return Object.entries(byModel).reduce<UsageByModel>((sum, [model, u]) => addUsageByModel(sum, { [model.replace(/\[[^\]]*\]$/, '')]: u }), {});
}

/** One row per model when more than one served (a subagent, the small model): tokens and cost each. */
function byModelRows(byModel: UsageByModel): [string, string][] {
  const models = Object.entries(mergeModelVariants(byModel));
  if (models.length < 2) return [];
  return models.map(([model, u]) => [
    '  by model',
    `${model}: input ${int(u.inputTokens)} · output ${int(u.outputTokens)} · cache ${int(u.cacheReadInputTokens)}/${int(u.cacheCreationInputTokens)} · ${formatUsd(u.costUsd)}`,
  ]);
}

/** The repository, the branch pushed and what changed on it; "no changes" when nothing did. */
function formatWorkspace(w: WorkspaceRecord): string {
  if (!w.branch) return `${w.repo} · no changes`;
  return `${w.repo} · branch ${w.branch} · ${int(w.filesChanged)} file${w.filesChanged === 1 ? '' : 's'} changed, +${int(w.insertions)} −${int(w.deletions)}`;
}

export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function formatSessionTable(sessions: SessionSummary[]): string {
  if (!sessions.length) return 'No sessions.';
  return formatTable(
    ['STARTED', 'SESSION', 'PROJECT', 'STATUS', 'IN', 'OUT', 'CACHE R/W', 'TURNS', 'COST', 'DURATION'],
    sessions.map((s) => [
      s.startedAt.replace('T', ' ').slice(0, 19),
      s.sessionId,
      s.projectId,
      s.status,
      int(s.usage.inputTokens),
      int(s.usage.outputTokens),
      `${int(s.usage.cacheReadInputTokens)}/${int(s.usage.cacheCreationInputTokens)}`,
      String(s.numTurns),
      formatUsd(s.totalCostUsd),
      formatMs(s.durationMs),
    ]),
  );
}

/** A milestone: its state, its tasks oldest first, and what they cost together. */
export function formatMilestone(m: MilestoneView): string {
  const rows: [string, string][] = [
    ['Milestone', `${m.milestoneId}  ${m.status}`],
    ['Project', m.projectId],
    ['Opened', m.createdAt],
  ];
  if (m.closedAt) rows.push(['Closed', m.closedAt]);
  if (m.leaseSessionId) rows.push(['Running', `task ${m.leaseSessionId}`]);
  if (m.brokenReason) rows.push(['Broken', m.brokenReason]);
  rows.push(['Transcript', m.transcript ? `${m.transcript.key} (${int(m.transcript.bytes)} bytes)` : '(none yet)']);
  if (m.workspace) rows.push(['Workspace', `${m.workspace.repo} · branch ${m.workspace.branch}${m.workspace.ref ? ` (from ${m.workspace.ref})` : ''}`]);
  const t = m.totals;
  rows.push(
    ['Tasks', `${t.sessions}${Object.keys(t.byStatus).length ? ` (${Object.entries(t.byStatus).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`],
    ['Tokens', `input ${int(t.usage.inputTokens)} · output ${int(t.usage.outputTokens)} · cache read ${int(t.usage.cacheReadInputTokens)} · cache write ${int(t.usage.cacheCreationInputTokens)}`],
    ...byModelRows(t.byModel),
    ['Cost', formatUsd(t.totalCostUsd)],
  );
  const head = rows.map(([k, v]) => `${k.padEnd(10)} ${v}`).join('\n');
  if (!m.tasks.length) return head;
  // A page of the tasks (the view reads one); the totals above count every task.
  const more = m.nextToken ? `\n(the first ${m.tasks.length} tasks; the rest are in the API's next pages: GET …/milestones/${m.milestoneId}?nextToken=${m.nextToken})` : '';
  return `${head}\n\n${formatSessionTable(m.tasks)}${more}`;
}

/** A row per project, and under it a row per model that served it (what the Bedrock bill splits by). */
export function formatUsageTable(totals: UsageTotals[]): string {
  if (!totals.length) return 'No sessions.';
  return formatTable(
    ['PROJECT', 'SESSIONS', 'BY STATUS', 'IN', 'OUT', 'CACHE R/W', 'TURNS', 'COST'],
    totals.flatMap((t) => [
      [
        t.projectId,
        String(t.sessions),
        Object.entries(t.byStatus).map(([k, v]) => `${k} ${v}`).join(', '),
        int(t.usage.inputTokens),
        int(t.usage.outputTokens),
        `${int(t.usage.cacheReadInputTokens)}/${int(t.usage.cacheCreationInputTokens)}`,
        String(t.numTurns),
        formatUsd(t.totalCostUsd),
      ],
      ...Object.entries(mergeModelVariants(t.byModel)).map(([model, u]) => [
        `  ${model}`, '', '', int(u.inputTokens), int(u.outputTokens), `${int(u.cacheReadInputTokens)}/${int(u.cacheCreationInputTokens)}`, '', formatUsd(u.costUsd),
      ]),
    ]),
  );
}
