import { Duration, Validations } from 'aws-cdk-lib';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';

export interface DeadLetterQueueProps {
  /** What delivers its failures here, as the cdk-nag acknowledgement names it, e.g. 'the reaper rule'. */
  readonly deadLettersOf: string;
}

/**
 * Where undelivered events wait to be looked at: encrypted, TLS only, kept the 14 days SQS allows.
 * A Queue itself, not a wrapper around one, so the queue keeps the id and logical id its owner gives it.
 */
export class DeadLetterQueue extends Queue {
  constructor(scope: Construct, id: string, props: DeadLetterQueueProps) {
    super(scope, id, { encryption: QueueEncryption.SQS_MANAGED, enforceSSL: true, retentionPeriod: Duration.days(14) });
    Validations.of(this).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SQS3',
      reason: `This queue is the dead-letter queue of ${props.deadLettersOf}; it has none of its own.`,
    });
  }
}
