import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { Duration } from 'aws-cdk-lib';
import { ServiceFunction } from './service-function.js';
import type { SessionTable } from './session-table.js';
import { sessionPolicyEnvironment } from '../lib/sessions/session-creation.js';
import type { ProjectLimits } from '../lib/sessions/project-limits.js';

export interface SessionCreatorProps {
  /** The session table: the session item is put here (and the month's cost read, with a budget). */
  readonly sessions: SessionTable;
  /** Sessions a project may run at once (a project's own limit in the table wins). @default no limit */
  readonly maxConcurrentSessions?: number;
  /** USD a project may spend per calendar month; the month's cost is then read first. @default no budget */
  readonly monthlyBudgetUsd?: number;
  /** The tools a session may name in its input. @default DEFAULT_TOOLS (no shell, no web) */
  readonly allowedTools?: readonly string[];
  /** Branches (or patterns, `*` any characters) a session's workspace may not push. @default main, master */
  readonly protectedBranches?: readonly string[];
  /** A Lambda session may have a shell (SessionPolicy.shellOnLambda). @default false */
  readonly shellOnLambda?: boolean;
  /** Caps on maxBudgetUsd, timeoutSeconds and the runtime, by project (SessionPolicy.projectLimits). @default none */
  readonly projectLimits?: ProjectLimits;
  /** Days after its start a closed session's item expires (SessionPolicy.sessionRetentionDays). @default none: kept */
  readonly sessionRetentionDays?: number;
  /** Runs of the CLI a session may take when the API fails transiently (429, 5xx, 529). @default 3 */
  readonly runAttempts?: number;
  /** Wait before the second run, doubled for each later one. @default Duration.seconds(15) */
  readonly retryBase?: Duration;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * The workflow's first state, CreateSession: the shared zod schema applied to whatever
 * started the execution (console input too), the session UUID fixed, the prompt hashed,
 * the budget checked, and the session item put RUNNING. A Lambda because States.Hash
 * stops at 10,000 characters and prompts may have 100,000; the put is in it because a
 * separate PutItem state would cost every session one more state transition.
 */
export class SessionCreator extends Construct {
  readonly function: IFunction;

  constructor(scope: Construct, id: string, props: SessionCreatorProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/create-session/handler.ts',
      description: 'Validates a session input and creates the session item, RUNNING',
      serviceName: 'claude-sessions-create-session',
      logRetention: props.logRetention,
      environment: {
        RUN_ATTEMPTS: String(props.runAttempts ?? 3),
        RETRY_BASE_SECONDS: String(props.retryBase?.toSeconds() ?? 15),
        TABLE_NAME: props.sessions.table.tableName,
        ...sessionPolicyEnvironment(props),
      },
    }).function;
    props.sessions.grantCreateSessions(this.function);
    // The month's cost of the project is read only when there is a budget to check it against.
    if (props.monthlyBudgetUsd) props.sessions.grantProjectQuery(this.function);
    // With no deployment-wide limit, a project's own limit is read from its slots item (createSession).
    if (!props.maxConcurrentSessions) props.sessions.grantReadProjectItems(this.function);
  }
}
