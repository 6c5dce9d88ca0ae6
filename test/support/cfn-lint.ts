import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { templateResolver, type CfnTemplate } from './template-resolver.js';

/** One finding of cfn-lint: its rule id (E…, W…, I…), what it says, where in the template. */
export interface CfnLintFinding {
  rule: string;
  message: string;
  /** Slash-joined path in the template, e.g. `Resources/MyFunction/DependsOn/1`. */
  path?: string;
}

export interface CfnLintResult {
  /** cfn-lint's exit code: a bit mask of 2 (errors), 4 (warnings), 8 (informational). */
  status: number | null;
  findings: CfnLintFinding[];
  /** cfn-lint's stdout as printed, for failure messages. */
  raw: string;
}

export interface CfnLintOptions {
  /** Rule id -> why the rule does not apply: the reason is the documentation, cfn-lint gets the ids. */
  ignore?: Record<string, string>;
}

/**
 * A copy of the template where each state machine's DefinitionString is plain JSON, its intrinsics
 * replaced by well-formed placeholders: cfn-lint validates the ASL (E3601) only when it is a string.
 */
export function resolveDefinitions<T extends object>(template: T): T {
  const copy = structuredClone(template) as unknown as CfnTemplate;
  // The same placeholders the artifact and IAM tests resolve with (account, region, names).
  const resolver = templateResolver(copy);
  for (const [logicalId, resource] of Object.entries(copy.Resources ?? {})) {
    const properties = resource.Properties as Record<string, unknown> | undefined;
    if (resource.Type !== 'AWS::StepFunctions::StateMachine' || !properties) continue;
    if (properties.DefinitionString === undefined || typeof properties.DefinitionString === 'string') continue;
    let text = String(resolver.resolve(properties.DefinitionString));
    // DefinitionSubstitutions fill ${name} in the definition at deploy time: fill them here too.
    const substitutions = properties.DefinitionSubstitutions as Record<string, unknown> | undefined;
    for (const [name, value] of Object.entries(substitutions ?? {})) {
      text = text.split(`\${${name}}`).join(JSON.stringify(String(resolver.resolve(value))).slice(1, -1));
    }
    delete properties.DefinitionSubstitutions;
    try {
      JSON.parse(text);
    } catch (error) {
      throw new Error(`resolveDefinitions: ${logicalId}'s resolved DefinitionString is not JSON: ${(error as Error).message}`);
    }
    properties.DefinitionString = text;
  }
  return copy as unknown as T;
}

const INSTALL_HINT = 'cfn-lint is not on PATH: install it with `python3 -m pip install cfn-lint` (pip install cfn-lint)';

/** The cfn-lint executable on PATH, as a shell would find it. */
function findCfnLint(): string {
  const names = process.platform === 'win32' ? ['cfn-lint.exe', 'cfn-lint.cmd', 'cfn-lint'] : ['cfn-lint'];
  for (const directory of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    for (const name of names) {
      const candidate = join(directory, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here: try the next directory
      }
    }
  }
  throw new Error(INSTALL_HINT);
}

interface CfnLintJsonMatch {
  Rule: { Id: string };
  Message: string;
  Location?: { Path?: (string | number)[] | null };
}

/** Runs cfn-lint on one template and returns what it found, without any rule being ignored unless named with a reason. */
export function runCfnLint(templatePath: string, options: CfnLintOptions = {}): CfnLintResult {
  const ignored = Object.keys(options.ignore ?? {});
  const args = ['--format', 'json'];
  // One `--ignore-checks=A,B` argument: the option takes several values and would swallow the template path.
  if (ignored.length > 0) args.push(`--ignore-checks=${ignored.join(',')}`);
  args.push('--', templatePath);
  const lint = spawnSync(findCfnLint(), args, { cwd: dirname(templatePath), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (lint.error) {
    if ((lint.error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(INSTALL_HINT);
    throw lint.error;
  }
  // Any exit code outside the 2|4|8 mask (1 is "cfn-lint itself failed") leaves no findings to read.
  if (lint.status === null || (lint.status & ~(2 | 4 | 8)) !== 0) {
    throw new Error(`cfn-lint failed (exit ${lint.status ?? lint.signal}):\n${lint.stderr}\n${lint.stdout}`);
  }
  let matches: CfnLintJsonMatch[];
  try {
    matches = JSON.parse(lint.stdout) as CfnLintJsonMatch[];
  } catch {
    throw new Error(`cfn-lint printed no JSON (exit ${lint.status}):\n${lint.stderr}\n${lint.stdout}`);
  }
  const findings = matches.map((match): CfnLintFinding => {
    const path = match.Location?.Path;
    return { rule: match.Rule.Id, message: match.Message, ...(path && path.length > 0 ? { path: path.join('/') } : {}) };
  });
  return { status: lint.status, findings, raw: lint.stdout };
}
