import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStandIn, offeredTools } from '../lib/local/anthropic-stand-in.js';
import { git, remoteRepository } from './support/git-remote.js';

// Debian's chromium. CI installs it (.ci/run) and sets REQUIRE_BROWSER, so there a missing
// browser fails this file; on a machine without it the browser test is skipped, saying why.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveBrowser = existsSync(CHROMIUM);
// What the page shows after a request to serve: on a loaded 2-core machine that takes more than
// expect.poll's default second (the other waits here already allow 15 s).
const PAGE_POLL = { timeout: 15_000 };
if (!haveBrowser && process.env.REQUIRE_BROWSER) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
if (!haveBrowser) process.stderr.write(`web-page.test.ts skipped: no browser at ${CHROMIUM} (apt-get install chromium to run it)\n`);

const BIN = join(process.cwd(), 'bin', 'claude-sessions.js');
let serve: ChildProcess;
let url: string;
let browser: Browser;
// The model API `serve` talks to: a stand-in the test steers (Claude writes a file for the workspace test).
let anthropic: AnthropicStandIn;

beforeAll(async () => {
  if (!haveBrowser) return;
  const home = await mkdtemp(join(tmpdir(), 'claude-sessions-web-'));
  anthropic = await new AnthropicStandIn().start();
  const env: NodeJS.ProcessEnv = { ...process.env, CLAUDE_SESSIONS_HOME: home, ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: anthropic.url };
  // The page as a user gets it: `claude-sessions serve`, its own process.
  serve = spawn(process.execPath, [BIN, 'serve', '--port', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  url = await new Promise<string>((resolve, reject) => {
    let stderr = '';
    serve.stderr!.on('data', (d) => {
      stderr += d;
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    serve.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  if (serve && serve.exitCode === null) {
    serve.kill('SIGINT');
    await new Promise((r) => serve.once('exit', r));
  }
  await anthropic?.close();
});

async function runSession(projectId: string, prompt: string, extra: Record<string, unknown> = {}): Promise<Record<string, any>> {
  const body = JSON.stringify({ prompt, ...extra });
  const post = await (await fetch(`${url}/projects/${projectId}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).json() as { sessionId: string };
  for (let i = 0; i < 300; i++) {
    const session = (await (await fetch(`${url}/projects/${projectId}/sessions/${post.sessionId}`)).json()) as Record<string, any>;
    if (session.status && session.status !== 'RUNNING') return session;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('session did not close');
}

describe.skipIf(!haveBrowser)('the sessions page of `serve`, in a real browser', () => {
  it('shows each session with its tokens and cost, its detail, and a chart of spend per day per project', async () => {
    // Prepare
    const first = await runSession('web-alpha', 'Summarise the README');
    const second = await runSession('web-beta', 'List the TODOs');
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    // Act
    await page.goto(`${url}/`);
    const row = page.locator(`tr[data-session="${first.sessionId}"]`);
    await row.waitFor({ timeout: 15_000 });
    // Assess: the row carries what the API recorded.
    const cells = await row.locator('td').allInnerTexts();
    expect(cells).toEqual(expect.arrayContaining(['web-alpha', 'COMPLETED', String(first.usage.inputTokens), String(first.usage.outputTokens), `$${first.totalCostUsd.toFixed(6)}`]));
    expect(await page.locator('tbody tr').count()).toBe(2);
    expect(await page.getByTestId('total-sessions').innerText()).toBe('2');
    expect(await page.getByTestId('total-cost').innerText()).toBe(`$${(first.totalCostUsd + second.totalCostUsd).toFixed(6)}`);
    // A day's bar per project in both charts.
    for (const chart of ['chart-tokens', 'chart-cost']) {
      expect(await page.getByTestId(chart).locator('rect[data-project="web-alpha"]').count()).toBe(1);
      expect(await page.getByTestId(chart).locator('rect[data-project="web-beta"]').count()).toBe(1);
    }
    // Filtering by project, then the detail of a session.
    await page.getByTestId('filter-project').selectOption('web-beta');
    await page.locator(`tr[data-session="${first.sessionId}"]`).waitFor({ state: 'detached' });
    await page.locator(`tr[data-session="${second.sessionId}"]`).click();
    await expect.poll(() => page.getByTestId('detail').innerText(), PAGE_POLL).toContain(second.sessionId);
    const detail = await page.getByTestId('detail').innerText();
    expect(detail).toContain('COMPLETED');
    expect(detail).toContain(`in ${second.usage.inputTokens} · out ${second.usage.outputTokens}`);
    // The split by model: one row per model that served the session, with its tokens and cost.
    const [model, byModel] = Object.entries(second.modelUsage as Record<string, { inputTokens: number; outputTokens: number; cacheReadInputTokens: number; cacheCreationInputTokens: number; costUsd: number }>)[0]!;
    expect(await page.getByTestId('model-usage').allInnerTexts()).toEqual([
      `${model}: in ${byModel!.inputTokens} · out ${byModel!.outputTokens} · cache ${byModel!.cacheReadInputTokens}/${byModel!.cacheCreationInputTokens} · $${byModel!.costUsd.toFixed(6)}`,
    ]);
    await page.getByTestId('filter-project').selectOption('');
    await row.waitFor();
    await mkdir('test-output', { recursive: true });
    await page.screenshot({ path: join('test-output', 'sessions-page.png'), fullPage: true });
  }, 60_000);

  it('keeps a project\'s colour in the charts when another project appears', async () => {
    // Prepare: a project's bar as the page draws it now
    await runSession('web-colour-b', 'one');
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${url}/`);
    const bar = page.getByTestId('chart-cost').locator('rect[data-project="web-colour-b"]');
    await bar.waitFor({ timeout: 15_000 });
    const before = await bar.getAttribute('fill');
    // Act: a project that sorts before it
    await runSession('web-colour-a', 'two');
    await page.reload();
    await page.getByTestId('chart-cost').locator('rect[data-project="web-colour-a"]').waitFor({ timeout: 15_000 });
    // Assess
    expect(await bar.getAttribute('fill')).toBe(before);
    await page.close();
  }, 60_000);

  it('is live: a session started while the page is open appears without a reload', async () => {
    const page = await browser.newPage();
    await page.goto(`${url}/`);
    await page.locator('tbody tr').first().waitFor();
    const session = await runSession('web-live', 'One more');
    await page.locator(`tr[data-session="${session.sessionId}"]`).waitFor({ timeout: 10_000 });
  }, 60_000);

  it('shows a workspace session\'s branch and what changed on it, "no changes" when nothing did, and no workspace for a session without one', async () => {
    // Prepare: Claude writes a three-line file in one workspace session, changes nothing in another;
    // the repository's path would be markup if the page did not escape it
    const bare = join(dirname(remoteRepository().bare), 'widgets<i>&amp;.git');
    git(tmpdir(), 'clone', '--quiet', '--bare', join(dirname(bare), 'remote.git'), bare);
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'NOTES.md', content: 'one\ntwo\nthree\n' } },
      { kind: 'text', text: 'Wrote the notes' },
    );
    const changed = await runSession('web-ws', 'Write notes', { workspace: { repo: bare, branch: 'notes/web' } });
    const unchanged = await runSession('web-ws', 'Look around', { workspace: { repo: bare } });
    const plain = await runSession('web-ws', 'No repository');
    expect(changed).toMatchObject({ status: 'COMPLETED', workspace: { repo: bare, branch: 'notes/web', filesChanged: 1, insertions: 3, deletions: 0 } });
    expect(git(bare, 'show', 'notes/web:NOTES.md')).toBe('one\ntwo\nthree');
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${url}/`);
    const detailOf = async (sessionId: string) => {
      await page.locator(`tr[data-session="${sessionId}"]`).click();
      await expect.poll(() => page.getByTestId('detail').innerText(), PAGE_POLL).toContain(sessionId);
      return page.getByTestId('detail');
    };
    // Act + Assess: the repository as text (escaped, not markup), the branch and the counts
    const detail = await detailOf(changed.sessionId);
    expect(await detail.getByTestId('workspace').innerText()).toBe(`${bare} · branch notes/web · 1 file changed, +3 −0`);
    expect(await detail.locator('i').count()).toBe(0);
    expect(await (await detailOf(unchanged.sessionId)).getByTestId('workspace').innerText()).toBe(`${bare} · no changes`);
    const none = await detailOf(plain.sessionId);
    expect(await none.getByTestId('workspace').count()).toBe(0);
    expect(await none.innerText()).not.toContain('Workspace');
  }, 60_000);

  // The console: the page starts, follows, aborts sessions and shows milestones, through the engine's own routes.
  const steps = (page: Page) => page.getByTestId('progress').locator('li').allInnerTexts();
  type FormFields = { prompt: string; projectId: string; milestoneId?: string; taskId?: string; runtime?: string; maxTurns?: string; tools?: string };
  async function startFromForm(page: Page, fields: FormFields): Promise<void> {
    await page.getByTestId('field-prompt').fill(fields.prompt);
    await page.getByTestId('field-projectId').fill(fields.projectId);
    await page.getByTestId('field-runtime').selectOption(fields.runtime ?? 'lambda');
    if (fields.milestoneId) await page.getByTestId('field-milestoneId').fill(fields.milestoneId);
    if (fields.taskId) await page.getByTestId('field-taskId').fill(fields.taskId);
    if (fields.maxTurns) await page.getByTestId('field-maxTurns').fill(fields.maxTurns);
    if (fields.tools) await page.getByTestId('field-tools').fill(fields.tools);
    await page.getByTestId('start').click();
  }

  it('starts a session from its form, shows each state as the execution enters it, then the closed session', async () => {
    // Prepare
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${url}/`);
    const asked = anthropic.messageRequests.length;
    // Act
    await startFromForm(page, { prompt: 'Say hello from the page', projectId: 'web-form' });
    // Assess: the states in order, then the execution's end and the session's status
    await expect.poll(() => steps(page), { timeout: 30_000 }).toContain('COMPLETED');
    expect(await steps(page)).toEqual([
      '→ CreateSession', '→ ChooseFirstStep', '→ RunClaude', '→ ClaudeSucceeded', '→ RecordUsage', '✓ execution succeeded', 'COMPLETED',
    ]);
    const sessionId = (await page.getByTestId('progress').getAttribute('data-session'))!;
    const session = (await (await fetch(`${url}/projects/web-form/sessions/${sessionId}`)).json()) as Record<string, any>;
    expect(session).toMatchObject({ sessionId, projectId: 'web-form', status: 'COMPLETED', runtime: 'lambda', trigger: 'api' });
    // The engine's own Claude (the stand-in serve was started with) got the form's prompt.
    expect(anthropic.messageRequests.slice(asked).some((r) => JSON.stringify(r.body).includes('Say hello from the page'))).toBe(true);
    const detail = await page.getByTestId('detail').innerText();
    expect(detail).toContain(sessionId);
    expect(detail).toContain('COMPLETED');
    expect(await page.getByTestId('abort').count()).toBe(0);
    await page.locator(`tr[data-session="${sessionId}"]`).waitFor({ timeout: 10_000 });
  }, 60_000);

  it('starts a session with the form\'s max turns and tools: Claude is offered those tools and stops at that turn', async () => {
    // Prepare: every model call asks for a tool, so only the turn limit ends the run
    anthropic.respondByDefault({ kind: 'tool_use' });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
      await page.goto(`${url}/`);
      const asked = anthropic.messageRequests.length;
      // Act
      await startFromForm(page, { prompt: 'Look at two tools', projectId: 'web-opts', maxTurns: '1', tools: ' Read, Glob ,' });
      // Assess: one model call, offering exactly the two tools; the session stopped by its turn limit
      await expect.poll(() => steps(page), { timeout: 30_000 }).toContain('FAILED');
      const sessionId = (await page.getByTestId('progress').getAttribute('data-session'))!;
      const session = (await (await fetch(`${url}/projects/web-opts/sessions/${sessionId}`)).json()) as Record<string, any>;
      expect(session).toMatchObject({ projectId: 'web-opts', status: 'FAILED', error: 'ClaudeMaxTurns', cause: expect.stringMatching(/maximum number of turns/) });
      const calls = anthropic.messageRequests.slice(asked);
      expect(calls).toHaveLength(1);
      expect(offeredTools(calls[0]!).sort()).toEqual(['Glob', 'Read']);
      expect(await page.locator('[data-error="maxTurns"]').innerText()).toBe('');
    } finally {
      anthropic.respondByDefault({ kind: 'text' });
    }
  }, 60_000);

  it.each([
    ['0', /^maxTurns /],
    ['many', /^maxTurns must be a number, not "many"$/],
  ])('shows the API\'s error for a max turns of %s next to its field and starts nothing', async (maxTurns, message) => {
    // Prepare
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${url}/`);
    const asked = anthropic.requests.length;
    // Act
    await startFromForm(page, { prompt: 'Never runs', projectId: 'web-bad-turns', maxTurns });
    // Assess
    const error = page.locator('[data-error="maxTurns"]');
    await expect.poll(() => error.innerText(), PAGE_POLL).toMatch(message);
    expect(await page.getByTestId('field-maxTurns').getAttribute('aria-invalid')).toBe('true');
    expect(await page.getByTestId('form-error').innerText()).toBe('');
    expect(await page.getByTestId('progress').isHidden()).toBe(true);
    const projects = (await (await fetch(`${url}/projects`)).json()) as { items: string[] };
    expect(projects.items).not.toContain('web-bad-turns');
    expect(anthropic.requests.length).toBe(asked);
  }, 60_000);

  it('shows each bad field\'s error next to the form and starts nothing', async () => {
    // Prepare
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${url}/`);
    const asked = anthropic.requests.length;
    // Act: an empty prompt, a project id with a space, a branch a session may not push to
    await page.getByTestId('field-workspace.repo').fill('/tmp/some-repo.git');
    await page.getByTestId('field-workspace.branch').fill('main');
    await startFromForm(page, { prompt: '', projectId: 'web bad' });
    // Assess
    const errorOf = (field: string) => page.locator(`[data-error="${field}"]`);
    await expect.poll(() => errorOf('prompt').innerText(), PAGE_POLL).toBe('prompt must not be empty');
    expect(await errorOf('projectId').innerText()).toBe('projectId must be 1-64 characters of A-Z a-z 0-9 . _ -');
    expect(await page.getByTestId('field-prompt').getAttribute('aria-invalid')).toBe('true');
    expect(await page.getByTestId('field-projectId').getAttribute('aria-invalid')).toBe('true');
    expect(await page.getByTestId('field-runtime').getAttribute('aria-invalid')).toBeNull();
    expect(await errorOf('runtime').innerText()).toBe('');
    expect(await page.getByTestId('progress').isHidden()).toBe(true);
    const projects = (await (await fetch(`${url}/projects`)).json()) as { items: string[] };
    expect(projects.items).not.toContain('web bad');
    // Then the deployment's own rule, once the input is well-formed: main is a protected branch
    await startFromForm(page, { prompt: 'Push to main', projectId: 'web-protected' });
    await expect.poll(() => errorOf('workspace.branch').innerText(), PAGE_POLL).toMatch(/^workspace\.branch must not be a branch this deployment protects \(main, master/);
    expect(await errorOf('prompt').innerText()).toBe('');
    expect(((await (await fetch(`${url}/projects`)).json()) as { items: string[] }).items).not.toContain('web-protected');
    expect(anthropic.requests.length).toBe(asked);
  }, 60_000);

  it('aborts a stalled session from its detail, which then shows ABORTED', async () => {
    // Prepare: Claude's model call never answers
    anthropic.respondByDefault({ kind: 'stall' });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
      await page.goto(`${url}/`);
      const asked = anthropic.messageRequests.length;
      await startFromForm(page, { prompt: 'Wait for the model', projectId: 'web-abort' });
      // Live: RunClaude entered and the session RUNNING while Claude waits on the model
      await expect.poll(() => steps(page), { timeout: 30_000 }).toContain('→ RunClaude');
      await expect.poll(() => anthropic.messageRequests.length, { timeout: 30_000 }).toBeGreaterThan(asked);
      await expect.poll(() => page.getByTestId('detail').innerText(), PAGE_POLL).toContain('RUNNING');
      const sessionId = (await page.getByTestId('progress').getAttribute('data-session'))!;
      // Act
      await page.getByTestId('abort').click();
      // Assess
      await expect.poll(() => page.getByTestId('detail').innerText(), { timeout: 30_000 }).toContain('ABORTED');
      expect(await page.getByTestId('detail').innerText()).toContain(sessionId);
      await expect.poll(() => steps(page), { timeout: 10_000 }).toContain('ABORTED');
      expect((await steps(page)).slice(-2)).toEqual(['✗ execution aborted', 'ABORTED']);
      expect(await page.getByTestId('abort').count()).toBe(0);
      const session = (await (await fetch(`${url}/projects/web-abort/sessions/${sessionId}`)).json()) as Record<string, any>;
      expect(session).toMatchObject({ status: 'ABORTED' });
      await expect.poll(() => page.locator(`tr[data-session="${sessionId}"] .status`).innerText(), { timeout: 10_000 }).toBe('ABORTED');
    } finally {
      anthropic.respondByDefault({ kind: 'text' });
    }
  }, 90_000);

  it('links a milestone task to its milestone\'s view: status, workspace, the task with its usage, the totals', async () => {
    // Prepare
    const opened = await fetch(`${url}/projects/web-ms/milestones`, { method: 'POST' });
    const { milestoneId } = (await opened.json()) as { milestoneId: string };
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${url}/`);
    await startFromForm(page, { prompt: 'First task of the milestone', projectId: 'web-ms', milestoneId });
    await expect.poll(() => steps(page), { timeout: 30_000 }).toContain('COMPLETED');
    const sessionId = (await page.getByTestId('progress').getAttribute('data-session'))!;
    // Act
    const link = page.getByTestId('detail').getByTestId('milestone-link');
    expect(await link.innerText()).toBe(milestoneId);
    await link.click();
    // Assess: the view reads what GET /projects/web-ms/milestones/{id} says
    const view = (await (await fetch(`${url}/projects/web-ms/milestones/${milestoneId}`)).json()) as Record<string, any>;
    expect(view.tasks.map((t: { sessionId: string }) => t.sessionId)).toEqual([sessionId]);
    const section = page.getByTestId('milestone');
    await section.waitFor();
    const text = await section.innerText();
    expect(text).toContain(milestoneId);
    expect(text).toContain('OPEN');
    expect(await section.getByTestId('milestone-workspace').innerText()).toBe('none');
    const task = section.locator(`tr[data-task-session="${sessionId}"]`);
    expect(await task.locator('td').allInnerTexts()).toEqual(expect.arrayContaining([
      'COMPLETED', String(view.tasks[0].usage.inputTokens), String(view.tasks[0].usage.outputTokens), `$${view.tasks[0].totalCostUsd.toFixed(6)}`,
    ]));
    expect(await section.getByTestId('milestone-tasks').locator('tr').count()).toBe(1);
    expect(await section.getByTestId('milestone-totals').innerText()).toContain(`1 task · in ${view.totals.usage.inputTokens} · out ${view.totals.usage.outputTokens}`);
    expect(await section.getByTestId('milestone-totals').innerText()).toContain(`$${view.totals.totalCostUsd.toFixed(6)}`);
    expect(page.url()).toBe(`${url}/#milestone=web-ms/${milestoneId}`);
  }, 60_000);

  const openMilestone = async (projectId: string) => ((await (await fetch(`${url}/projects/${projectId}/milestones`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ projectId }),
  })).json()) as { milestoneId: string }).milestoneId;

  it('closes a milestone from its view, which then shows it CLOSED without a Close button', async () => {
    // Prepare: a milestone with one task, started from the form with its task id
    const milestoneId = await openMilestone('web-close');
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${url}/`);
    expect(await page.getByTestId('field-taskId').isHidden()).toBe(true);
    await startFromForm(page, { prompt: 'The only task', projectId: 'web-close', milestoneId, taskId: 'task-1' });
    await expect.poll(() => steps(page), { timeout: 30_000 }).toContain('COMPLETED');
    const sessionId = (await page.getByTestId('progress').getAttribute('data-session'))!;
    expect(await (await fetch(`${url}/projects/web-close/sessions/${sessionId}`)).json()).toMatchObject({ milestoneId, taskId: 'task-1', mode: 'milestone' });
    await page.getByTestId('detail').getByTestId('milestone-link').click();
    const section = page.getByTestId('milestone');
    await section.getByTestId('milestone-close').waitFor();
    expect(await section.innerText()).toContain('OPEN');
    expect(await section.locator(`tr[data-task-session="${sessionId}"] td`).allInnerTexts()).toContain('task-1');
    // Act
    await section.getByTestId('milestone-close').click();
    // Assess: the view is GET /projects/web-close/milestones/{id}'s, closed
    await expect.poll(() => section.innerText(), { timeout: 15_000 }).toContain('CLOSED');
    const view = (await (await fetch(`${url}/projects/web-close/milestones/${milestoneId}`)).json()) as Record<string, any>;
    expect(view).toMatchObject({ status: 'CLOSED', closedAt: expect.any(String) });
    expect(await section.innerText()).toContain(view.closedAt);
    expect(await section.getByTestId('milestone-close').count()).toBe(0);
    expect(await section.getByTestId('milestone-error').innerText()).toBe('');
  }, 60_000);

  it('shows the API\'s refusal to close a milestone while its task runs, and closes it once the task has ended', async () => {
    // Prepare: a milestone task whose model call never answers holds the milestone
    const milestoneId = await openMilestone('web-busy');
    anthropic.respondByDefault({ kind: 'stall' });
    let sessionId: string | undefined;
    try {
      const asked = anthropic.messageRequests.length;
      const started = await fetch(`${url}/projects/web-busy/sessions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Hold on', milestoneId }),
      });
      sessionId = ((await started.json()) as { sessionId: string }).sessionId;
      await expect.poll(() => anthropic.messageRequests.length, { timeout: 30_000 }).toBeGreaterThan(asked);
      const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
      await page.goto(`${url}/#milestone=web-busy/${milestoneId}`);
      const section = page.getByTestId('milestone');
      // Act
      await section.getByTestId('milestone-close').click();
      // Assess: the 409's message, the milestone still open and its button back
      const refusal = await fetch(`${url}/projects/web-busy/milestones/${milestoneId}/close`, { method: 'POST' });
      expect(refusal.status).toBe(409);
      const { message } = (await refusal.json()) as { message: string };
      expect(message).toMatch(/has a task running/);
      await expect.poll(() => section.getByTestId('milestone-error').innerText(), { timeout: 10_000 }).toBe(message);
      expect(await section.innerText()).toContain('OPEN');
      expect(await section.getByTestId('milestone-close').isEnabled()).toBe(true);
      // Once the task has ended, the same button closes it, and the refusal is gone with the old view
      await fetch(`${url}/sessions/${sessionId}/abort`, { method: 'POST' });
      sessionId = undefined;
      await section.getByTestId('milestone-close').click();
      await expect.poll(() => section.innerText(), { timeout: 10_000 }).toContain('CLOSED');
      expect(await section.getByTestId('milestone-close').count()).toBe(0);
      expect(await section.getByTestId('milestone-error').innerText()).toBe('');
    } finally {
      anthropic.respondByDefault({ kind: 'text' });
      if (sessionId) await fetch(`${url}/sessions/${sessionId}/abort`, { method: 'POST' });
    }
  }, 90_000);
});
