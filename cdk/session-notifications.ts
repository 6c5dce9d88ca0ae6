import { Rule, type IEventBus, type IRuleTarget } from 'aws-cdk-lib/aws-events';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { SESSION_STATUSES } from '../lib/sessions/session-item.js';
import { DeadLetterQueue } from './dead-letter-queue.js';
import { SessionEvents } from './session-events.js';

/** A session's final status, as "Session Closed" carries it in `detail.status`. */
export type ClosedStatus = Exclude<(typeof SESSION_STATUSES)[number], 'RUNNING'>;
const CLOSED_STATUSES = SESSION_STATUSES.filter((s): s is ClosedStatus => s !== 'RUNNING');

export interface SessionNotificationsProps {
  /** The bus "Session Closed" is put on (SessionEvents.eventBus). */
  readonly eventBus: IEventBus;
  /** The closes that notify, e.g. FAILED and TIMED_OUT. */
  readonly statuses: readonly ClosedStatus[];
}

/**
 * "Session Closed" events of the chosen statuses, sent to an SNS topic of the stack's own that
 * people subscribe to (email, chat). The topic's policy lets EventBridge publish for this one rule
 * only: without a policy a target set by hand (`aws events put-targets`) never delivers.
 */
export class SessionNotifications extends Construct {
  readonly topic: Topic;
  readonly rule: Rule;
  readonly deadLetterQueue: DeadLetterQueue;

  constructor(scope: Construct, id: string, props: SessionNotificationsProps) {
    super(scope, id);
    const statuses = checkedNotifyStatuses(props.statuses, 'notifyStatuses');
    // Not encrypted at rest: EventBridge publishes to an encrypted topic only under a customer-managed
    // key whose policy admits it; the message is the session record without prompt or reply.
    this.topic = new Topic(this, 'Topic', { displayName: 'claude-sessions: sessions closed', enforceSSL: true });
    this.rule = new Rule(this, 'Rule', {
      description: `Sends "Session Closed" events with status ${statuses.join(', ')} to the notification topic`,
      eventBus: props.eventBus,
      eventPattern: { ...SessionEvents.sessionClosedPattern, detail: { status: [...statuses] } },
    });
    this.deadLetterQueue = new DeadLetterQueue(this, 'DeadLetters', { deadLettersOf: 'the notification rule' });
    const events = new ServicePrincipal('events.amazonaws.com');
    const fromThisRule = { ArnEquals: { 'aws:SourceArn': this.rule.ruleArn } };
    this.topic.addToResourcePolicy(new PolicyStatement({
      principals: [events], actions: ['sns:Publish'], resources: [this.topic.topicArn], conditions: fromThisRule,
    }));
    this.deadLetterQueue.addToResourcePolicy(new PolicyStatement({
      principals: [events], actions: ['sqs:SendMessage'], resources: [this.deadLetterQueue.queueArn], conditions: fromThisRule,
    }));
    // Not events-targets' SnsTopic: its topic policy lets EventBridge publish for any rule at all.
    const target: IRuleTarget = { bind: () => ({ arn: this.topic.topicArn, deadLetterConfig: { arn: this.deadLetterQueue.queueArn } }) };
    this.rule.addTarget(target);
  }
}

/** The statuses that notify: final ones, at least one; a bad one fails the synth, naming the setting. */
export function checkedNotifyStatuses(value: readonly string[], name: string): ClosedStatus[] {
  const bad = value.filter((s) => !CLOSED_STATUSES.includes(s as ClosedStatus));
  if (bad.length || !value.length) {
    throw new Error(`${name} must name statuses a session closes with (${CLOSED_STATUSES.join(', ')}), not ${JSON.stringify(value)}`);
  }
  return [...new Set(value as ClosedStatus[])];
}
