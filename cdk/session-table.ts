import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, StreamViewType, Table, TableEncryption, type ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { PROJECT_INDEX } from '../lib/sessions/session-item.js';
import { MILESTONE_INDEX } from '../lib/sessions/milestone-item.js';

export interface SessionTableProps {
  /** @default RemovalPolicy.RETAIN: session history outlives the stack */
  readonly removalPolicy?: RemovalPolicy;
}

/** The one table (docs/ARCHITECTURE.md#data-model): session and milestone items, a GSI by project and one by milestone. */
export class SessionTable extends Construct {
  readonly table: ITable;

  constructor(scope: Construct, id: string, props: SessionTableProps = {}) {
    super(scope, id);
    const table = new Table(this, 'Table', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: TableEncryption.AWS_MANAGED,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      // Before and after each write: a close is the write out of RUNNING (cdk/session-events.ts).
      stream: StreamViewType.NEW_AND_OLD_IMAGES,
    });
    // A project's sessions, newest first; items without startedAt (milestones) stay out.
    table.addGlobalSecondaryIndex({
      indexName: PROJECT_INDEX,
      partitionKey: { name: 'projectId', type: AttributeType.STRING },
      sortKey: { name: 'startedAt', type: AttributeType.STRING },
    });
    // A milestone's tasks in order; only milestone tasks carry milestoneId (a sparse index).
    table.addGlobalSecondaryIndex({
      indexName: MILESTONE_INDEX,
      partitionKey: { name: 'milestoneId', type: AttributeType.STRING },
      sortKey: { name: 'startedAt', type: AttributeType.STRING },
    });
    this.table = table;
  }
}
