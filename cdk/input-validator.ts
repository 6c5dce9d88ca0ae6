import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { Duration } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Grant } from 'aws-cdk-lib/aws-iam';
import { PROJECT_INDEX } from '../lib/sessions/session-item.js';
import { ServiceFunction } from './service-function.js';

export interface InputValidatorProps {
  /** Sessions a project may run at once (a project's own limit in the table wins). @default no limit */
  readonly maxConcurrentSessions?: number;
  /** USD a project may spend per calendar month; the validator then reads the month's cost. @default no budget */
  readonly monthlyBudgetUsd?: number;
  /** Runs of the CLI a session may take when the API fails transiently (429, 5xx, 529). @default 3 */
  readonly runAttempts?: number;
  /** Wait before the second run, doubled for each later one. @default Duration.seconds(15) */
  readonly retryBase?: Duration;
  /** The session table: read (the project index only) when a budget is set. */
  readonly table?: ITable;
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
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/validator/handler.ts',
      description: 'Validates a session input and prepares the session item',
      serviceName: 'claude-sessions-validator',
      logRetention: props.logRetention,
      environment: {
        RUN_ATTEMPTS: String(props.runAttempts ?? 3),
        RETRY_BASE_SECONDS: String(props.retryBase?.toSeconds() ?? 15),
        ...(props.maxConcurrentSessions ? { MAX_CONCURRENT_SESSIONS: String(props.maxConcurrentSessions) } : {}),
        ...(props.monthlyBudgetUsd && props.table ? { MONTHLY_BUDGET_USD: String(props.monthlyBudgetUsd), TABLE_NAME: props.table.tableName } : {}),
      },
    }).function;
    if (props.monthlyBudgetUsd) {
      if (!props.table) throw new Error('InputValidator: monthlyBudgetUsd needs the table to read the month\'s cost');
      // One Query on the project index, nothing else: the month's cost of the project.
      Grant.addToPrincipal({ grantee: this.function, actions: ['dynamodb:Query'], resourceArns: [`${props.table.tableArn}/index/${PROJECT_INDEX}`] });
    }
  }
}
