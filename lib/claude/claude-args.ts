import { DEFAULT_TOOLS } from '../sessions/session-limits.js';
/** Edits in the session's throw-away working directory need no approval; nothing else is asked. */
export const DEFAULT_PERMISSION_MODE = 'acceptEdits';
export const PERMISSION_MODES = ['acceptEdits', 'auto', 'bypassPermissions', 'default', 'dontAsk', 'plan'] as const;
export type PermissionMode = (typeof PERMISSION_MODES)[number];

export interface ClaudeArgsOptions {
  sessionId: string;
  /** fresh: a throw-away conversation; resume: continue the persisted one (milestones). */
  conversation: 'fresh' | 'start' | 'resume';
  maxTurns?: number;
  maxBudgetUsd?: number;
  model?: string;
  /** The only tools the CLI offers the model. @default DEFAULT_TOOLS */
  tools?: readonly string[];
  /** @default DEFAULT_PERMISSION_MODE */
  permissionMode?: PermissionMode;
  /**
   * Whether the CLI reads the working directory's own Claude Code settings (`.claude/settings*.json`,
   * `.mcp.json`): only for a repository the deployment trusts (RunnerClaudeSettings.trustedSettingsRepositories).
   * @default false
   */
  repositorySettings?: boolean;
  /**
   * Permission rules the CLI allows without asking (`Bash(npm test:*)`, `Bash(git diff:*)`): the
   * deployment's. In `-p` nobody can answer a prompt, so a command no rule allows is refused.
   */
  permissionRules?: readonly string[];
}

/** A permission rule as the CLI's settings take one: a tool name, optionally with its specifier in parentheses. */
const PERMISSION_RULE = /^[A-Za-z][A-Za-z0-9_]{0,63}(?:\([^()\n]{1,200}\))?$/;

/** The deployment's permission rules, checked: a bad one is named with the setting it came from. */
export function checkedPermissionRules(rules: readonly string[] | undefined, setting: string): string[] | undefined {
  const bad = (rules ?? []).filter((r) => !PERMISSION_RULE.test(r));
  if (bad.length) throw new Error(`${setting} must be permission rules such as Bash(npm test:*) or Read, not ${bad.map((r) => JSON.stringify(r)).join(', ')}`);
  return rules ? [...rules] : undefined;
}

/**
 * bypassPermissions lets every tool call through, reading /proc, the environment and the network
 * included: a runner takes it only from a deployment that says it runs no untrusted input.
 */
export function assertPermissionModeAllowed(mode: PermissionMode | undefined, trustedInputsOnly: boolean | undefined, setting: string): void {
  if (mode === 'bypassPermissions' && !trustedInputsOnly) {
    throw new Error(`${setting} bypassPermissions lets any command run unasked: it needs the deployment to state that it runs no untrusted prompt or repository (trustedInputsOnly); allow commands with permission rules instead`);
  }
}

/**
 * The CLI's argument array (spawned without a shell). The prompt is not in it: it goes
 * to stdin, where no size limit applies (one argument is capped at 128 KiB, less than a
 * 100,000-character prompt in a non-Latin script) and no `ps` shows it.
 * stream-json with partial messages prints as it goes: the no-output watchdog then
 * means "stalled", and usage spent before a kill is still known.
 * stream-json input (one user message): the CLI waits for it as long as it takes, where a
 * text prompt on stdin is given up after 3 s (2.1.x), so a CLI can boot ahead of its prompt.
 */
/** The prompt as the CLI reads it with `--input-format stream-json`: one user message, one line. */
export function promptMessage(prompt: string): string {
  return `${JSON.stringify({ type: 'user', message: { role: 'user', content: prompt } })}\n`;
}

/**
 * A workspace is data, not configuration: of the CLI's settings files only the user's are read
 * (the runner's own per-run HOME, which holds none), so a cloned repository's hooks, `env`,
 * `apiKeyHelper`, MCP servers, status line, plugins, permission rules and model settings never
 * apply; `--strict-mcp-config` with no `--mcp-config` starts no MCP server at all. Its CLAUDE.md
 * is still read, as the memory of an added directory (CLAUDE_CODE_ADDITIONAL_DIRECTORIES_CLAUDE_MD
 * in claudeEnv), which loads no settings. Pinned against the CLI by test/session-sandbox.test.ts.
 */
export const REPOSITORY_IS_DATA: readonly string[] = ['--setting-sources', 'user', '--strict-mcp-config', '--add-dir', '.'];

export function buildClaudeArgs(options: ClaudeArgsOptions): string[] {
  const args = ['-p', '--input-format', 'stream-json', '--output-format', 'stream-json', '--verbose', '--include-partial-messages'];
  if (options.conversation === 'resume') args.push('--resume', options.sessionId);
  else args.push('--session-id', options.sessionId);
  // Tracking is ours; the CLI's transcript is only kept when a later task resumes it.
  if (options.conversation === 'fresh') args.push('--no-session-persistence');
  if (options.maxTurns !== undefined) args.push('--max-turns', String(options.maxTurns));
  if (options.maxBudgetUsd !== undefined) args.push('--max-budget-usd', String(options.maxBudgetUsd));
  if (options.model) args.push('--model', options.model);
  // An explicit allow-list: one comma-joined value, so the variadic flag takes nothing else.
  args.push('--tools', (options.tools ?? DEFAULT_TOOLS).join(','));
  args.push('--permission-mode', options.permissionMode ?? DEFAULT_PERMISSION_MODE);
  if (!options.repositorySettings) args.push(...REPOSITORY_IS_DATA);
  // As flag settings: read whatever the setting sources, and not split on the spaces a rule may hold.
  // /proc is denied to the file tools whatever the rules: other processes' environments are there.
  const permissions = { allow: options.permissionRules ?? [], deny: ['Read(//proc/**)', 'Grep(//proc/**)', 'Glob(//proc/**)'] };
  args.push('--settings', JSON.stringify({ permissions }));
  return args;
}
