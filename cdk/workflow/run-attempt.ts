import type { Duration } from 'aws-cdk-lib';
import { SubnetType } from 'aws-cdk-lib/aws-ec2';
import { FargatePlatformVersion } from 'aws-cdk-lib/aws-ecs';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Choice, Condition, IntegrationPattern, JsonPath, Pass, TaskInput, Timeout, Wait, WaitTime, type IChainable } from 'aws-cdk-lib/aws-stepfunctions';
import { EcsFargateLaunchTarget, EcsRunTask, LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { Construct } from 'constructs';
import { RECORD_ATTEMPT_CONDITION, RECORD_ATTEMPT_NAMES, RECORD_ATTEMPT_UPDATE, RUNNER_CONTRACT } from '../../lib/sessions/session-item.js';
import type { FargateRunner } from '../fargate-runner.js';
import { sessionKey } from './execution-state.js';
import { RUN_TASK_REFUSED_RETRY, THROTTLED_INVOKE_RETRY, TRANSACTION_CANCELED, type CatchPolicy } from './error-handling.js';
import type { TransactState } from './update-item-state.js';

export interface RunAttemptProps {
  readonly runner: IFunction;
  readonly fargate: FargateRunner;
  /** A task that stops beating for this long has failed. */
  readonly heartbeat: Duration;
}

export interface RunAttempt {
  /** Ends a Choice with the run, on the session's runtime. */
  readonly thenRun: (choice: Choice) => Choice;
  /** The run alone: after the slot, and before each further attempt. */
  readonly chooseRuntime: Choice;
  /** RecordAttempt: a transient API failure with attempts left, run again after a back-off. */
  readonly retry: IChainable;
  /** Where both runners go, with the runner's TaskResult at $.run. */
  next(outcome: IChainable): void;
}

/** One run of Claude on Lambda or Fargate, and the way back to it for the next attempt. */
export function runAttempt(scope: Construct, transact: TransactState, step: CatchPolicy, props: RunAttemptProps): RunAttempt {
  const runClaude = step.assign(new LambdaInvoke(scope, 'RunClaude', {
    lambdaFunction: props.runner,
    payload: TaskInput.fromObject({
      'session.$': '$.session', 'prompt.$': '$.prompt', 'milestone.$': '$.milestone', 'retry.$': '$.retry', contract: RUNNER_CONTRACT,
    }),
    payloadResponseOnly: true,
    resultPath: '$.run',
    retryOnServiceExceptions: true,
  }).addRetry(THROTTLED_INVOKE_RETRY));

  const runOnFargate = step.assign(new EcsRunTask(scope, 'RunClaudeOnFargate', {
    integrationPattern: IntegrationPattern.WAIT_FOR_TASK_TOKEN,
    cluster: props.fargate.cluster,
    taskDefinition: props.fargate.taskDefinition,
    launchTarget: new EcsFargateLaunchTarget({ platformVersion: FargatePlatformVersion.LATEST }),
    subnets: { subnetType: props.fargate.subnetType },
    assignPublicIp: props.fargate.subnetType === SubnetType.PUBLIC,
    // ECS holds 8 KiB of overrides in all: the session without its prompt (the task reads the
    // prompt from the execution's input), the milestone item, the retry and the token.
    containerOverrides: [
      {
        containerDefinition: props.fargate.container,
        environment: [
          { name: 'SESSION_JSON', value: JsonPath.jsonToString(JsonPath.objectAt('$.session')) },
          { name: 'MILESTONE_JSON', value: JsonPath.jsonToString(JsonPath.objectAt('$.milestone')) },
          { name: 'RETRY_JSON', value: JsonPath.jsonToString(JsonPath.objectAt('$.retry')) },
          { name: 'TASK_TOKEN', value: JsonPath.taskToken },
          // The family's newest revision runs, even for an execution started before a deploy: it says which values it expects.
          { name: 'RUNNER_CONTRACT', value: String(RUNNER_CONTRACT) },
        ],
      },
    ],
    heartbeatTimeout: Timeout.duration(props.heartbeat),
    // The runner stops Claude at timeoutSeconds; the platform gives it a margin to report.
    taskTimeout: Timeout.at('$.session.platformTimeoutSeconds'),
    resultPath: '$.run',
  }).addRetry(RUN_TASK_REFUSED_RETRY));

  const thenRun = (choice: Choice) => choice.when(Condition.stringEquals('$.session.runtime', 'fargate'), runOnFargate).otherwise(runClaude);
  const chooseRuntime = thenRun(new Choice(scope, 'ChooseRuntime'));

  // The spend so far on the session (SET, so a repeat changes nothing), a back-off, and Claude
  // again with that spend carried in the state.
  // The attempt's own spend counts into the project's totals in the same transaction. A repeat of
  // it (a retried write whose answer was lost) is refused by its condition: that attempt is
  // recorded already, so the run goes on; any other refusal fails the session.
  const retryWait = new Wait(scope, 'RetryWait', { time: WaitTime.secondsPath('$.run.next.waitSeconds') });
  const attemptRecorded = new Choice(scope, 'AttemptRecorded')
    .when(Condition.stringMatches('$.failure.Cause', '*ConditionalCheckFailed*'), retryWait)
    .otherwise(step.onFailure);
  const recordAttempt = transact('RecordAttempt', {
    session: { key: sessionKey, update: RECORD_ATTEMPT_UPDATE, condition: RECORD_ATTEMPT_CONDITION, names: RECORD_ATTEMPT_NAMES, values: '$.run.next.values' },
    totals: '$.run.next.totals',
  }, step, { errors: TRANSACTION_CANCELED, next: attemptRecorded, resultPath: '$.failure' });
  recordAttempt
    .next(retryWait)
    .next(new Pass(scope, 'NextAttempt', { parameters: { 'attempt.$': '$.run.next.attempt', 'prior.$': '$.run.next.prior' }, resultPath: '$.retry' }))
    .next(chooseRuntime);

  return {
    thenRun,
    chooseRuntime,
    retry: recordAttempt,
    next(outcome) {
      runClaude.next(outcome);
      runOnFargate.next(outcome);
    },
  };
}
