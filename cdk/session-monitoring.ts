import { Duration } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  MathExpression,
  Metric,
  Stats,
  TextWidget,
  TreatMissingData,
  type IAlarmAction,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { METRICS, METRIC_NAMESPACE, METRIC_SERVICE } from '../lib/sessions/session-events.js';

export interface SessionMonitoringProps {
  readonly stateMachine: StateMachine;
  readonly reaper: IFunction;
  /** The runner Lambda: a throttled RunClaude is a session that may close FAILED without running. */
  readonly runner: IFunction;
  /** Dead-letter queues that must stay empty (schedules, stream consumer). */
  readonly deadLetterQueues: readonly IQueue[];
  /** Where alarms notify. @default none: alarms show in the console only */
  readonly alarmTopic?: ITopic;
  /** Share of closed sessions that may fail in an hour before the alarm. @default 0.2 */
  readonly failureRateThreshold?: number;
  /** @default 'claude-sessions' */
  readonly dashboardName?: string;
}

const SERVICE = { service: METRIC_SERVICE };

/** The dashboard and alarms of the session metrics the stream consumer publishes (functions/events). */
export class SessionMonitoring extends Construct {
  readonly dashboard: Dashboard;
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: SessionMonitoringProps) {
    super(scope, id);
    const metric = (metricName: string, statistic: string = Stats.SUM, period = Duration.minutes(5)) =>
      new Metric({ namespace: METRIC_NAMESPACE, metricName, dimensionsMap: SERVICE, statistic, period });
    const byStatus = [METRICS.started, METRICS.completed, METRICS.failed, METRICS.timedOut, METRICS.aborted].map((m) => metric(m));
    const hour = Duration.hours(1);
    const failureRate = new MathExpression({
      expression: '(failed + timedOut) / MAX([completed + failed + timedOut, 1])',
      usingMetrics: {
        failed: metric(METRICS.failed, Stats.SUM, hour),
        timedOut: metric(METRICS.timedOut, Stats.SUM, hour),
        completed: metric(METRICS.completed, Stats.SUM, hour),
      },
      period: hour,
      label: 'failure rate (failed + timed out) / closed',
    });

    this.dashboard = new Dashboard(this, 'Dashboard', { dashboardName: props.dashboardName ?? 'claude-sessions' });
    this.dashboard.addWidgets(
      new TextWidget({ markdown: '# claude-sessions\nSessions, spend and failures, from the session table\'s stream.', width: 24, height: 2 }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Sessions by status', left: byStatus, width: 12, stacked: false }),
      new GraphWidget({ title: 'Cost (USD)', left: [metric(METRICS.costUsd)], width: 6 }),
      new GraphWidget({
        title: 'Executions in flight',
        left: [
          new MathExpression({
            // Started minus ended, summed over the range shown: an estimate, exact from an empty start.
            expression: 'RUNNING_SUM(started - succeeded - failed - aborted - timedOut)',
            usingMetrics: {
              started: props.stateMachine.metricStarted(),
              succeeded: props.stateMachine.metricSucceeded(),
              failed: props.stateMachine.metricFailed(),
              aborted: props.stateMachine.metricAborted(),
              timedOut: props.stateMachine.metricTimedOut(),
            },
            label: 'in flight',
            period: Duration.minutes(5),
          }),
        ],
        width: 6,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: 'Tokens', left: [METRICS.inputTokens, METRICS.outputTokens, METRICS.cacheReadTokens, METRICS.cacheWriteTokens].map((m) => metric(m)), width: 12 }),
      new GraphWidget({
        title: 'Session duration p50 / p95 (ms)',
        left: [metric(METRICS.durationMs, Stats.percentile(50)), metric(METRICS.durationMs, Stats.percentile(95))],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: 'Failures by error class',
        left: [new MathExpression({ expression: `SEARCH('{${METRIC_NAMESPACE},errorClass} MetricName="${METRICS.failuresByErrorClass}"', 'Sum', 300)`, label: '', period: Duration.minutes(5) })],
        width: 12,
      }),
      new GraphWidget({
        title: 'Executions',
        left: [props.stateMachine.metricStarted(), props.stateMachine.metricSucceeded(), props.stateMachine.metricFailed(), props.stateMachine.metricAborted(), props.stateMachine.metricTimedOut()],
        width: 12,
      }),
    );

    const action: IAlarmAction | undefined = props.alarmTopic ? new SnsAction(props.alarmTopic) : undefined;
    const alarm = (make: () => Alarm) => {
      const a = make();
      if (action) {
        a.addAlarmAction(action);
        a.addOkAction(action);
      }
      this.alarms.push(a);
    };
    alarm(() =>
      failureRate.createAlarm(this, 'FailureRateAlarm', {
        alarmDescription: `More than ${(props.failureRateThreshold ?? 0.2) * 100}% of the sessions closed in an hour failed or timed out`,
        threshold: props.failureRateThreshold ?? 0.2,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
    alarm(() =>
      props.stateMachine.metricTimedOut({ period: Duration.minutes(5) }).createAlarm(this, 'OverdueAlarm', {
        // The runners stop Claude at timeoutSeconds and report; an execution reaching the state
        // machine's own limit means a session stayed RUNNING past its timeout and every margin.
        alarmDescription: 'An execution ran past the state machine timeout: its session outlived its timeout (the reaper closes it TIMED_OUT)',
        threshold: 0,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
    props.deadLetterQueues.forEach((queue, i) =>
      alarm(() =>
        queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: Stats.MAXIMUM }).createAlarm(this, `DeadLettersAlarm${i}`, {
          alarmDescription: `Dead-letter queue ${queue.node.path} holds messages: a scheduled run or a session event was not delivered`,
          threshold: 0,
          evaluationPeriods: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
          treatMissingData: TreatMissingData.NOT_BREACHING,
        }),
      ),
    );
    alarm(() =>
      props.reaper.metricErrors({ period: Duration.minutes(5) }).createAlarm(this, 'ReaperErrorsAlarm', {
        alarmDescription: 'The reaper failed to close a session: it may stay RUNNING until a retry succeeds',
        threshold: 0,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
    alarm(() =>
      // RunClaude retries a throttle, then closes the session FAILED: throttles mean sessions past
      // runnerConcurrency or the account's concurrency quota (issue 23), before they fail.
      props.runner.metricThrottles({ period: Duration.minutes(5), statistic: Stats.SUM }).createAlarm(this, 'RunnerThrottlesAlarm', {
        alarmDescription: 'The runner Lambda was throttled: sessions wait for concurrency (runnerConcurrency or the account quota), and fail once RunClaude\'s retries run out',
        threshold: 0,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
  }
}
