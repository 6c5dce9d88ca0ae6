import { App, Validations } from 'aws-cdk-lib';
import cdkNag from 'cdk-nag';
import { ClaudeSessionsStack } from './claude-sessions-stack.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';

const app = new App();
new ClaudeSessionsStack(app, 'ClaudeSessions', {
  apiKeySecretName: app.node.tryGetContext('apiKeySecretName'),
  alarmTopicArn: app.node.tryGetContext('alarmTopicArn'),
  // Validated here with the shared schema: a bad entry fails the synth, naming entry and field.
  schedules: parseSchedules(app.node.tryGetContext('schedules')),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
// Every synth runs the AwsSolutions pack; a finding fails it unless acknowledged with a reason.
Validations.of(app).addPlugins(new cdkNag.AwsSolutionsChecks(app, { verbose: true }));
