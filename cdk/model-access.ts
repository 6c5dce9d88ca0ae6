import { Lazy, Stack, Validations } from 'aws-cdk-lib';
import { AccountRootPrincipal, PolicyStatement, Role, type Grant, type IGrantable, type IPrincipal, type IRole } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { invokeGrant, invokeStatements, type BedrockSettings } from '../lib/claude/model-provider.js';

export interface ModelAccessProps {
  /** The Bedrock models of the deployment: the main and small models, and the projects' application inference profiles. */
  readonly settings: BedrockSettings;
}

/**
 * The role Claude's process invokes Bedrock with (docs/ARCHITECTURE.md#bedrock): a runner
 * assumes it for each session and hands the CLI those credentials alone, so Claude and any
 * tool it runs hold nothing but the right to invoke the configured models.
 */
export class ModelAccess extends Construct {
  readonly role: IRole;
  private readonly assumers: IPrincipal[] = [];

  constructor(scope: Construct, id: string, props: ModelAccessProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { model, smallFastModel, projectModels } = props.settings;
    const models = [model, ...(smallFastModel ? [smallFastModel] : []), ...Object.values(projectModels ?? {})];
    const grant = invokeGrant(models, { partition: stack.partition, region: stack.region, account: stack.account });
    // Trusted only for the roles granted below (grantAssume), by ARN: a principal of the account
    // with a broad sts:AssumeRole of its own still cannot take it.
    const role = new Role(this, 'Role', {
      assumedBy: new AccountRootPrincipal().withConditions({
        ArnEquals: { 'aws:PrincipalArn': Lazy.list({ produce: () => this.assumers.map((p) => (p as IRole).roleArn ?? p.toString()) }) },
      }),
      description: 'claude-sessions: what the Claude CLI may do on Bedrock (invoke the configured models), assumed per session by the runners',
    });
    // The same statements each session's policy is made of (lib/claude/model-endpoint.ts).
    for (const statement of invokeStatements(grant)) role.addToPrincipalPolicy(PolicyStatement.fromJson(statement));
    this.role = role;
    Validations.of(role).acknowledge({
      id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
      reason: 'bedrock:ListInferenceProfiles supports no resource-level permission; the CLI calls it before its first model call.',
    });
    for (const resource of grant.throughProfiles?.resources ?? []) {
      Validations.of(role).acknowledge({
        id: `AwsSolutions::AwsSolutions-IAM5[Resource::${nagSpelling(resource)}]`,
        reason: 'A cross-region inference profile routes to its foundation model in regions Bedrock chooses: any region, and only through the configured profiles (condition bedrock:InferenceProfileArn).',
      });
    }
  }

  /** Lets a runner (a role) assume the role for a session: its identity policy, and the trust policy's condition. */
  grantAssume(grantee: IGrantable): Grant {
    if (!('roleArn' in grantee.grantPrincipal)) throw new Error('ModelAccess.grantAssume: the grantee must be a role (a runner\'s execution or task role)');
    this.assumers.push(grantee.grantPrincipal);
    return this.role.grantAssumeRole(grantee.grantPrincipal);
  }
}

/** How cdk-nag writes a resource in a finding's id: the partition token as <AWS::Partition>. */
function nagSpelling(resource: string): string {
  return resource.replace(/^arn:[^:]+:/, 'arn:<AWS::Partition>:');
}
