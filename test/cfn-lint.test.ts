import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { resolveDefinitions, runCfnLint, type CfnLintFinding } from './support/cfn-lint.js';

/** Rules that do not apply to this template, each with why: cfn-lint skips them, anything else fails. */
const IGNORED_RULES: Record<string, string> = {
  W3005:
    'aws-cdk-lib adds DependsOn on the service role to every lambda.Function and sfn.StateMachine ' +
    '(node.addDependency(this.role)) next to the GetAtt of the same role: redundant, harmless, not ours to drop',
};

interface StateMachineTemplate {
  Resources: Record<string, { Type: string; Properties: { DefinitionString: unknown } }>;
}

const templatePath = join(inject('cdkOut'), 'ClaudeSessions.template.json');
const template = JSON.parse(readFileSync(templatePath, 'utf8')) as StateMachineTemplate;
const workDir = mkdtempSync(join(tmpdir(), 'claude-sessions-cfn-lint-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function writeTemplate(name: string, body: object): string {
  const path = join(workDir, name);
  writeFileSync(path, JSON.stringify(body, null, 1));
  return path;
}

function stateMachineIds(body: StateMachineTemplate): string[] {
  return Object.entries(body.Resources).filter(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine').map(([id]) => id);
}

const describeFindings = (findings: CfnLintFinding[]) => findings.map((f) => `${f.rule} ${f.path ?? ''}: ${f.message}`).join('\n') || '(none)';

describe('cfn-lint on the synthesized template', () => {
  it('reports no error and no warning but the ignored ones', () => {
    // Act
    const lint = runCfnLint(templatePath, { ignore: IGNORED_RULES });
    // Assess
    expect(lint.findings, `cfn-lint findings:\n${describeFindings(lint.findings)}`).toEqual([]);
    expect(lint.status).toBe(0);
  });

  it('reports nothing on the state machine definitions once their intrinsics are resolved (the ASL is checked: E3601)', () => {
    // Prepare: cfn-lint skips a DefinitionString that is an Fn::Join, as CDK renders it.
    expect(stateMachineIds(template).length).toBeGreaterThan(0);
    const resolved = resolveDefinitions(template);
    for (const id of stateMachineIds(resolved)) {
      const definition = resolved.Resources[id]!.Properties.DefinitionString;
      expect(typeof definition).toBe('string');
      expect(JSON.parse(definition as string)).toMatchObject({ StartAt: expect.any(String), States: expect.any(Object) });
    }
    // Act
    const lint = runCfnLint(writeTemplate('resolved.template.json', resolved), { ignore: IGNORED_RULES });
    // Assess
    expect(lint.findings, `cfn-lint findings:\n${describeFindings(lint.findings)}`).toEqual([]);
    expect(lint.status).toBe(0);
  });

  it('can fail: a state of an unknown type is an E3601 error', () => {
    // Prepare: a reachable Bogus state, run first and then on to the real start.
    const resolved = resolveDefinitions(template);
    const [id] = stateMachineIds(resolved);
    const properties = resolved.Resources[id!]!.Properties;
    const asl = JSON.parse(properties.DefinitionString as string) as { StartAt: string; States: Record<string, object> };
    properties.DefinitionString = JSON.stringify({ ...asl, StartAt: 'Bogus', States: { ...asl.States, Bogus: { Type: 'Bogus', Next: asl.StartAt } } });
    // Act
    const lint = runCfnLint(writeTemplate('bogus.template.json', resolved), { ignore: IGNORED_RULES });
    // Assess
    expect(lint.findings, `cfn-lint findings:\n${describeFindings(lint.findings)}`).toEqual([
      {
        rule: 'E3601',
        message: expect.stringMatching(/^'Bogus' is not one of \[.*'Task'.*\] at 'States\/Bogus\/Type'$/),
        path: `Resources/${id}/Properties/DefinitionString/States/Bogus/Type`,
      },
    ]);
    expect(lint.status! & 2).toBe(2); // the error bit of cfn-lint's exit code
  });
});
