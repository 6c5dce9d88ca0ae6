/**
 * Infrastructure failures of a Claude run. Each `name` is what the workflow's Catch
 * records as the session's error, so the names are part of the contract.
 */
export class ClaudeOutputError extends Error {
  override readonly name = 'ClaudeOutputError';
}

export class ClaudeCrashError extends Error {
  override readonly name = 'ClaudeCrashError';
  constructor(
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string,
  ) {
    super(
      `the Claude CLI ended ${signal ? `on signal ${signal}` : `with exit code ${exitCode}`} without a result` +
        (stderrTail ? `: ${stderrTail}` : ''),
    );
  }
}

export class ClaudeSpawnError extends Error {
  override readonly name = 'ClaudeSpawnError';
}

export class SessionIdMismatchError extends Error {
  override readonly name = 'SessionIdMismatchError';
  constructor(
    readonly expected: string,
    readonly reported: string,
  ) {
    super(`Claude reported session ${reported}, expected ${expected}`);
  }
}

export class ClaudeAbortedError extends Error {
  override readonly name = 'ClaudeAbortedError';
}

/** The prompt a runner was handed is not the one its session recorded (its SHA-256 differs): Claude does not run. */
export class PromptMismatchError extends Error {
  override readonly name = 'PromptMismatchError';
  constructor(readonly sessionId: string) {
    super(`the prompt handed to the runner for session ${sessionId} is not the one the session recorded (SHA-256 differs); Claude did not run`);
  }
}
