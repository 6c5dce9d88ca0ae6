import { Template } from 'aws-cdk-lib/assertions';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';

let memo: Template | undefined;

/**
 * The stack as `cdk synth` rendered it for this test run (test/global-setup.ts), cdk.json's
 * context included: test files that assert the default deployment share this one synth
 * instead of making their own (about 20 s each).
 */
export function synthesizedTemplate(): Template {
  memo ??= Template.fromJSON(JSON.parse(readFileSync(join(inject('cdkOut'), 'ClaudeSessions.template.json'), 'utf8')) as Record<string, unknown>);
  return memo;
}
