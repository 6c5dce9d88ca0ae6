import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { join } from 'node:path';
import { PROJECT_LOCK_FILE, PROJECT_ROOT } from '../lib/project-root.js';
import { ESM_REQUIRE_SHIM } from './esm-bundle.js';

export interface ServiceFunctionProps {
  /** The handler file, relative to the project root. */
  readonly entry: string;
  readonly description: string;
  readonly serviceName: string;
  /** @default 256 */
  readonly memorySize?: number;
  /** @default Duration.seconds(10) */
  readonly timeout?: Duration;
  readonly environment?: Record<string, string>;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * A small TypeScript Lambda of ours (CreateSession, API, reaper): bundled by the local esbuild
 * at synth (no Docker), ARM, traced, with its own log group and the findings every such
 * function shares acknowledged once, with their reasons.
 */
export class ServiceFunction extends Construct {
  readonly function: NodejsFunction;

  constructor(scope: Construct, id: string, props: ServiceFunctionProps) {
    super(scope, id);
    this.function = new NodejsFunction(this, 'Function', {
      description: props.description,
      entry: join(PROJECT_ROOT, props.entry),
      depsLockFilePath: PROJECT_LOCK_FILE,
      projectRoot: PROJECT_ROOT,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout ?? Duration.seconds(10),
      tracing: Tracing.ACTIVE,
      logGroup: new LogGroup(this, 'Logs', {
        retention: props.logRetention ?? RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      }),
      bundling: {
        format: OutputFormat.ESM, minify: true, sourceMap: true, mainFields: ['module', 'main'],
        banner: ESM_REQUIRE_SHIM,
      },
      environment: { POWERTOOLS_SERVICE_NAME: props.serviceName, NODE_OPTIONS: '--enable-source-maps', ...props.environment, ...TRACES_WITHOUT_PAYLOADS },
    });
    acknowledgeFunctionBasics(this);
  }
}

/**
 * What every traced function of ours sets, last so no caller can undo it: the Powertools Tracer
 * puts no handler response (a session record, Claude's reply) and no error message (a JSON parse
 * error quotes its input: a prompt) into X-Ray. A failed invocation is still flagged as a fault.
 */
export const TRACES_WITHOUT_PAYLOADS = {
  POWERTOOLS_TRACER_CAPTURE_RESPONSE: 'false',
  POWERTOOLS_TRACER_CAPTURE_ERROR: 'false',
} as const;

/** The two findings every Lambda function raises, reviewed once. */
export function acknowledgeFunctionBasics(scope: Construct): void {
  Validations.of(scope).acknowledge({
    id: 'AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason: 'The AWS-maintained minimum for a function to write its own log group; it grants nothing else.',
  });
  Validations.of(scope).acknowledge({
    id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
    reason: 'X-Ray PutTraceSegments and PutTelemetryRecords support no resource-level permissions.',
  });
}
