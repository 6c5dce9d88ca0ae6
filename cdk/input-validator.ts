import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Architecture, Runtime, Tracing, type IFunction } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './claude-runner.js';

export interface InputValidatorProps {
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * The workflow's first state: the shared zod schema applied to whatever started the
 * execution (console input too), the session UUID fixed, the prompt hashed. A Lambda
 * because States.Hash stops at 10,000 characters and prompts may have 100,000.
 */
export class InputValidator extends Construct {
  readonly function: IFunction;

  constructor(scope: Construct, id: string, props: InputValidatorProps = {}) {
    super(scope, id);
    this.function = new NodejsFunction(this, 'Function', {
      description: 'Validates a session input and prepares the session item',
      entry: join(PROJECT_ROOT, 'functions/validator/handler.ts'),
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      projectRoot: PROJECT_ROOT,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: 256,
      timeout: Duration.seconds(10),
      tracing: Tracing.ACTIVE,
      logGroup: new LogGroup(this, 'Logs', {
        retention: props.logRetention ?? RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      }),
      bundling: { format: OutputFormat.ESM, minify: true, sourceMap: true, mainFields: ['module', 'main'] },
      environment: { POWERTOOLS_SERVICE_NAME: 'claude-sessions-validator', NODE_OPTIONS: '--enable-source-maps' },
    });
  }
}
