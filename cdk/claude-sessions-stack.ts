import { Stack, Validations, type CfnElement, type StackProps } from 'aws-cdk-lib';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { ClaudeRunner } from './claude-runner.js';
import { InputValidator } from './input-validator.js';
import { SessionTable } from './session-table.js';
import { SessionWorkflow } from './session-workflow.js';

export interface ClaudeSessionsStackProps extends StackProps {
  /** Name of an existing Secrets Manager secret holding the Anthropic API key. @default a new secret to fill in */
  readonly apiKeySecretName?: string;
}

export class ClaudeSessionsStack extends Stack {
  readonly workflow: SessionWorkflow;
  readonly runner: ClaudeRunner;
  readonly validator: InputValidator;

  constructor(scope: Construct, id: string, props: ClaudeSessionsStackProps = {}) {
    super(scope, id, props);
    const apiKeySecret = this.apiKeySecret(props.apiKeySecretName);
    const sessions = new SessionTable(this, 'Sessions');
    const validator = (this.validator = new InputValidator(this, 'InputValidator'));
    const runner = (this.runner = new ClaudeRunner(this, 'Runner', { apiKeySecret }));
    this.workflow = new SessionWorkflow(this, 'Workflow', {
      table: sessions.table,
      validator: validator.function,
      runner: runner.function,
    });
    this.suppressReviewedFindings(runner, validator, this.workflow);
  }

  private apiKeySecret(name: string | undefined): ISecret {
    if (name) return Secret.fromSecretNameV2(this, 'AnthropicApiKey', name);
    // A placeholder the runner recognises and refuses with a clear error until the key is put in.
    const secret = new Secret(this, 'AnthropicApiKey', {
      description: 'Anthropic API key for claude-sessions: put the key as the secret string (or JSON {"ANTHROPIC_API_KEY": "..."})',
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ ANTHROPIC_API_KEY: 'REPLACE_ME' }),
        generateStringKey: 'placeholder',
      },
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SMG4',
      reason: 'An Anthropic API key cannot be rotated by a Secrets Manager rotation function: it is issued in the Anthropic console and put here by hand.',
    });
    return secret;
  }

  /** cdk-nag findings reviewed and accepted, each with its reason. */
  private suppressReviewedFindings(runner: ClaudeRunner, validator: InputValidator, workflow: SessionWorkflow): void {
    const acknowledge = (scope: Construct, rule: string, reason: string) =>
      Validations.of(scope).acknowledge({ id: `AwsSolutions::AwsSolutions-${rule}`, reason });
    for (const fn of [runner, validator]) {
      acknowledge(fn, 'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        'The AWS-maintained minimum for a function to write its own log group; it grants nothing else.');
      acknowledge(fn, 'IAM5[Resource::*]', 'X-Ray PutTraceSegments and PutTelemetryRecords support no resource-level permissions.');
    }
    acknowledge(workflow, 'IAM5[Resource::*]',
      'X-Ray and CloudWatch Logs delivery APIs (logs:CreateLogDelivery and friends) support no resource-level permissions.');
    for (const fn of [runner, validator]) {
      const logicalId = this.getLogicalId(fn.function.node.defaultChild as CfnElement);
      acknowledge(workflow, `IAM5[Resource::<${logicalId}.Arn>:*]`,
        'lambda:InvokeFunction on this one function and its versions (ARN:*), as the LambdaInvoke task grants it.');
    }
  }
}
