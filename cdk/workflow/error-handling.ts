import { Duration } from 'aws-cdk-lib';
import { CustomState, JitterType, State, TaskStateBase, type IChainable, type RetryProps } from 'aws-cdk-lib/aws-stepfunctions';

/** Throttling and service faults: every direct DynamoDB write retries them. */
export const DYNAMODB_RETRY: RetryProps = {
  errors: [
    'DynamoDB.ProvisionedThroughputExceededException',
    'DynamoDB.ThrottlingException',
    'DynamoDB.RequestLimitExceeded',
    'DynamoDB.InternalServerErrorException',
    'DynamoDB.AmazonDynamoDBException',
  ],
  interval: Duration.seconds(1), backoffRate: 2, maxAttempts: 4, jitterStrategy: JitterType.FULL,
};

/**
 * The same for a transaction through the AWS SDK integration, whose errors Step Functions names
 * `DynamoDb.` (both spellings listed: a name that matches nothing only costs a retry). A cancelled
 * transaction is tried again too: two closes of one project's sessions meet on its totals items
 * (TransactionConflict); a refused condition refuses again and goes on to the Catch.
 */
export const TRANSACTION_RETRY: RetryProps = {
  errors: [
    ...DYNAMODB_RETRY.errors!.flatMap((e) => [e, e.replace('DynamoDB.', 'DynamoDb.')]),
    'DynamoDb.TransactionCanceledException', 'DynamoDB.TransactionCanceledException',
    'DynamoDb.TransactionInProgressException', 'DynamoDB.TransactionInProgressException',
  ],
  interval: Duration.seconds(1), backoffRate: 2, maxAttempts: 3, jitterStrategy: JitterType.FULL,
};

/** A transaction refused: its Cause names each item's reason ([ConditionalCheckFailed, None, None]). */
export const TRANSACTION_CANCELED = ['DynamoDb.TransactionCanceledException', 'DynamoDB.TransactionCanceledException'];

/**
 * Lambda throttling is not among LambdaInvoke's service-exception retries, and a new account
 * runs 10 functions at once: a burst of sessions retries it, with a back-off, instead of failing.
 */
export const THROTTLED_INVOKE_RETRY: RetryProps = {
  errors: ['Lambda.TooManyRequestsException'], interval: Duration.seconds(2), backoffRate: 2, maxAttempts: 6, jitterStrategy: JitterType.FULL,
};

/**
 * RunTask refused before any task started: Fargate capacity (`ECS.AmazonECSException`), a
 * non-empty `Failures` list (`AmazonECS.Unknown` with a task token), throttling. Nothing ran, so
 * asking again cannot start a second Claude (and the runner's attempt claim would refuse one).
 */
export const RUN_TASK_REFUSED_RETRY: RetryProps = {
  errors: ['ECS.AmazonECSException', 'AmazonECS.Unknown', 'ECS.ThrottlingException'],
  interval: Duration.seconds(10), backoffRate: 2, maxAttempts: 3, jitterStrategy: JitterType.FULL,
};

export type TaskState = TaskStateBase | CustomState;

/** An error a state answers itself, ahead of its catch policy's Catch. */
export interface HandledError {
  readonly errors: string[];
  readonly next: IChainable;
  readonly resultPath: string;
}

/** A conditional take refused (the item is not ours to take): an answer to name, not a fault. */
export function whenRefused(next: IChainable): HandledError {
  return { errors: ['DynamoDB.ConditionalCheckFailedException'], next, resultPath: '$.acquireFailure' };
}

const hasCatchPolicy = new WeakSet<State>();

/**
 * Where a Task's failure goes once its retries are spent. Every Task after CreateSession is
 * given its catch policy as it is built, so none can be left out of a list of Catches.
 */
export class CatchPolicy {
  /** A step of the session: a failure closes it FAILED (`onFailure`), the error kept at $.failure. */
  static sessionStep(onFailure: IChainable): CatchPolicy {
    return new CatchPolicy(onFailure, '$.failure', false);
  }

  /**
   * A step of the close on failure: done or failed, it goes on to `next`. Its own error is kept
   * apart, so $.failure stays the execution's error.
   */
  static finallyStep(next: IChainable, errorPath: '$.closeFailure' | '$.releaseFailure'): CatchPolicy {
    return new CatchPolicy(next, errorPath, true);
  }

  private constructor(
    readonly onFailure: IChainable,
    private readonly errorPath: string,
    private readonly alwaysNext: boolean,
  ) {}

  assign<T extends TaskState>(state: T, ...handled: HandledError[]): T {
    for (const h of handled) state.addCatch(h.next, { errors: h.errors, resultPath: h.resultPath });
    state.addCatch(this.onFailure, { errors: ['States.ALL'], resultPath: this.errorPath });
    if (this.alwaysNext) state.next(this.onFailure);
    hasCatchPolicy.add(state);
    return state;
  }
}

/** The Tasks after `start` (its Catch paths included) that were built without a catch policy. */
export function tasksWithoutCatchPolicy(start: State): string[] {
  return State.findReachableStates(start, { includeErrorHandlers: true })
    .filter((s) => s !== start && (s instanceof TaskStateBase || s instanceof CustomState) && !hasCatchPolicy.has(s))
    .map((s) => s.stateId);
}
