import { v4 as uuidv4 } from 'uuid';
import type { ClaudeEndpoint, StandbyClaude } from '../claude/claude-process.js';
import type { StandbySource } from '../api/start-session.js';
import type { ExecutionInput } from '../sessions/execution-input.js';
import type { LocalRuntime } from './local-runtime.js';

// The local engine keeps one Claude CLI booted for its next `run` (docs/ARCHITECTURE.md#the-local-engine).
// The CLI's own start is most of a short session's second; a `run` client's process start
// would come on top of it. Booted when a run ends, like that run: a run that differs (other
// flags, another shell's endpoint) does not match it, and the runner starts its own CLI.

/** What the engine's GET /local/engine reports of it. */
export interface StandbyCounts {
  /** CLIs booted ahead. */
  started: number;
  /** Taken by the run they were given to. */
  used: number;
  /** Stopped without a prompt: the run differed, or nothing came in time. */
  unused: number;
}

export class NextRunStandby implements StandbySource {
  private next: Promise<StandbyClaude | undefined> | undefined;
  private closed = false;
  readonly counts: StandbyCounts = { started: 0, used: 0, unused: 0 };
  /** CLIs given to runs still going, by session id: counted used or unused when the run ends. */
  private readonly taken = new Map<string, StandbyClaude>();

  constructor(private readonly runtime: LocalRuntime) {}

  /**
   * The booted CLI for this run, if it can take one (`startSession`, for a session without an id of
   * its own): a fresh session on the Lambda runtime, without a workspace (cloned before the CLI
   * starts). The session takes the CLI's id; `ended` reports whether the runner used it.
   */
  async take(input: ExecutionInput): Promise<StandbyClaude | undefined> {
    const next = this.next;
    if (!canUseStandby(input) || input.sessionId !== undefined || !next) return undefined;
    this.next = undefined; // before any await: two runs arriving together never share one
    const standby = await next;
    if (!standby) return undefined;
    if (!standby.usable) {
      await this.release(standby);
      return undefined;
    }
    this.taken.set(standby.sessionId, standby);
    return standby;
  }

  /** After a run like this one (its input as started): count its CLI, and boot one for the next unless one waits already. */
  ended(input: ExecutionInput & { sessionId: string }, endpoint: ClaudeEndpoint): void {
    const standby = this.taken.get(input.sessionId);
    if (standby) {
      this.taken.delete(input.sessionId);
      if (standby.claimed) this.counts.used++;
      else this.counts.unused++; // the execution discards it
    }
    if (this.closed || this.next || !canUseStandby(input)) return;
    this.counts.started++;
    this.next = this.runtime.standbyFor({ ...input, sessionId: uuidv4() }, endpoint).catch(() => undefined);
  }

  /** Stops a CLI that waited too long (its endpoint's credentials may have aged). */
  async sweep(): Promise<void> {
    const waiting = this.next;
    const standby = await waiting;
    if (standby && !standby.usable && this.next === waiting) {
      this.next = undefined;
      await this.release(standby);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const next = this.next;
    this.next = undefined;
    const standby = await next;
    if (standby) await this.release(standby);
  }


  /** Stops a CLI no run will take (also one taken for an execution that could not start), counted so. */
  async release(standby: StandbyClaude): Promise<void> {
    this.taken.delete(standby.sessionId);
    this.counts.unused++;
    await standby.discard();
  }
}

function canUseStandby(input: ExecutionInput): boolean {
  return input.milestoneId === undefined && input.workspace === undefined && (input.runtime ?? 'lambda') === 'lambda';
}
