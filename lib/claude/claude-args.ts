export interface ClaudeArgsOptions {
  prompt: string;
  sessionId: string;
  /** fresh: a throw-away conversation; resume: continue the persisted one (milestones). */
  conversation: 'fresh' | 'start' | 'resume';
  maxTurns?: number;
  maxBudgetUsd?: number;
  model?: string;
}

/**
 * The CLI's argument array (spawned without a shell, so the prompt is never parsed).
 * stream-json with partial messages prints as it goes: the no-output watchdog then
 * means "stalled", and usage spent before a kill is still known.
 */
export function buildClaudeArgs(options: ClaudeArgsOptions): string[] {
  const args = ['-p', options.prompt, '--output-format', 'stream-json', '--verbose', '--include-partial-messages'];
  if (options.conversation === 'resume') args.push('--resume', options.sessionId);
  else args.push('--session-id', options.sessionId);
  // Tracking is ours; the CLI's transcript is only kept when a later task resumes it.
  if (options.conversation === 'fresh') args.push('--no-session-persistence');
  if (options.maxTurns !== undefined) args.push('--max-turns', String(options.maxTurns));
  if (options.maxBudgetUsd !== undefined) args.push('--max-budget-usd', String(options.maxBudgetUsd));
  if (options.model) args.push('--model', options.model);
  return args;
}
