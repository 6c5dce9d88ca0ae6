import { Annotations, type App, type Stack } from 'aws-cdk-lib';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The deployment's settings as CDK context, read through one object that remembers which keys
 * the app reads, so that after the stack is built it can say what a plain `npx cdk deploy` would
 * get wrong: a key nobody reads (a typo in cdk.json is otherwise ignored in silence), and a
 * setting given only on the command line (`-c`), which the next deploy without the flag reverts.
 */
export class DeploymentContext {
  private readonly read = new Set<string>();
  private readonly checkedIn: Record<string, unknown>;

  /** @param cdkJson the app's cdk.json, whose `context` is the checked-in settings */
  constructor(private readonly app: App, cdkJson = join(process.cwd(), 'cdk.json')) {
    this.checkedIn = existsSync(cdkJson) ? ((JSON.parse(readFileSync(cdkJson, 'utf8')) as { context?: Record<string, unknown> }).context ?? {}) : {};
  }

  /** As Node.tryGetContext (any: each value is checked where the app or the stack uses it). */
  tryGetContext(key: string): any {
    this.read.add(key);
    return this.app.node.tryGetContext(key);
  }

  /** Fails on a context key that is no setting (CDK's own keys hold a `:` or start with `@`), naming it. */
  assertOnlySettings(): void {
    const all = this.app.node.getAllContext() as Record<string, unknown>;
    const unknown = Object.keys(all).filter((key) => !this.read.has(key) && !key.includes(':') && !key.startsWith('@'));
    if (unknown.length) {
      const hints = unknown.map((key) => {
        const near = [...this.read].find((known) => editDistance(known.toLowerCase(), key.toLowerCase()) <= 2);
        return near ? `${key} (did you mean ${near}?)` : key;
      });
      throw new Error(`context ${hints.join(', ')}: no such setting of claude-sessions (docs/CONFIGURATION.md lists them)`);
    }
  }

  /** Warns on the stack of each setting whose value is not the one cdk.json holds. */
  warnAboutCommandLineSettings(stack: Stack): void {
    const all = this.app.node.getAllContext() as Record<string, unknown>;
    for (const key of this.read) {
      const value = all[key];
      if (value === undefined || sameSetting(value, this.checkedIn[key])) continue;
      Annotations.of(stack).addWarningV2(`claude-sessions:context-${key}`,
        `${key} is set outside cdk.json (a -c flag): a later npx cdk deploy without the flag reverts it. Put it in cdk.json's "context" to keep it.`);
    }
  }
}

/** A -c value is a string, the same setting in cdk.json may be a number, a boolean or JSON. */
function sameSetting(value: unknown, checkedIn: unknown): boolean {
  if (checkedIn === undefined) return false;
  const text = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  if (text(value) === text(checkedIn)) return true;
  // `-c allowedTools=Read,Bash` against ["Read","Bash"] in cdk.json.
  return Array.isArray(checkedIn) && typeof value === 'string' && checkedIn.map(String).join(',') === value.split(',').map((v) => v.trim()).join(',');
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}
