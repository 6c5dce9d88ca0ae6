import { RemovalPolicy, Stack, type CfnElement } from 'aws-cdk-lib';
import { AttributeType, BillingMode, StreamViewType, Table, TableEncryption, type ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { PROJECT_INDEX, sessionPk } from '../lib/sessions/session-item.js';
import { totalsPk } from '../lib/sessions/project-totals.js';
import { MILESTONE_INDEX, milestonePk } from '../lib/sessions/milestone-item.js';
import { slotsPk } from '../lib/sessions/project-slots.js';

export interface SessionTableProps {
  /** @default RemovalPolicy.RETAIN: session history outlives the stack */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The one table (docs/ARCHITECTURE.md#data-model): session and milestone items, a GSI by project and one by milestone.
 * Its grants are named for what the grantee does with it: least privilege on the table lives here only.
 */
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

  /**
   * Putting a session item RUNNING (CreateSession): PutItem, and GetItem to tell its own retried
   * put from another execution's session (SessionRepository.create). SESSION# items only.
   */
  grantCreateSessions(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:PutItem', 'dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [sessionPk('*')] } },
    }).combine(this.grantTotalsCounts(grantee));
  }

  /** The ADD to a project's totals items that a session's write makes in its transaction (project-totals.ts). */
  private grantTotalsCounts(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:UpdateItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [totalsPk('*')] } },
    });
  }

  /** A project's totals items by key and by query (the budget check, `usage`): TOTALS# items only. */
  private grantTotalsReads(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem', 'dynamodb:Query'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [totalsPk('*')] } },
    });
  }

  /**
   * A runner's own write, for a run its execution ended under (an abort, a timeout): the spend, and
   * the close if nothing closed it (SessionRepository.recordStoppedRun). UpdateItem on SESSION# items only.
   */
  grantStoppedRunWrites(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:UpdateItem', 'dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [sessionPk('*')] } },
    }).combine(this.grantTotalsCounts(grantee));
  }

  /** GetItem of the projects' items (PROJECT#<id>: the slots item holds a project's own concurrency limit). */
  grantReadProjectItems(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [slotsPk('*')] } },
    });
  }

  /** A project's month of day totals, nothing else (SessionRepository.costSince: the monthly budget). */
  grantProjectQuery(grantee: IGrantable): Grant {
    return this.grantTotalsReads(grantee);
  }

  /**
   * Reads as the API's routes make them: items by key, a project's or a milestone's sessions by
   * index, the project ids by a scan of the project index. Not grantReadData: no stream reads.
   * The index wildcard is a cdk-nag finding: acknowledge `indexesFinding()` where this is called.
   */
  grantReadSessions(grantee: IGrantable): Grant {
    // Items by key on the table; lists only through the indexes, so no scan can read every item.
    return Grant.addToPrincipal({ grantee, actions: ['dynamodb:GetItem'], resourceArns: [this.table.tableArn] }).combine(
      Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query', 'dynamodb:Scan'], resourceArns: [`${this.table.tableArn}/index/*`] }),
    ).combine(this.grantTotalsReads(grantee));
  }

  /** Opening and closing milestones (the API): writes to MILESTONE# items only, never to a session. */
  grantMilestoneWrites(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:PutItem', 'dynamodb:UpdateItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [milestonePk('*')] } },
    });
  }

  /** One session by its key, nothing else (the GitHub reporter reads Claude's reply): GetItem of SESSION# items only. */
  grantGetSession(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [sessionPk('*')] } },
    });
  }

  /**
   * Closing what an execution left open (the reaper, lib/sessions/session-reaper.ts): the
   * conditional close of the session (and a read of it when that close finds it closed already),
   * and the release of the project slot and milestone lease it held. GetItem and UpdateItem on
   * the table, not its indexes.
   */
  grantCloseSessions(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({ grantee, actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], resourceArns: [this.table.tableArn] });
  }

  /**
   * Finding the RUNNING sessions (the sweeper, lib/sessions/session-sweeper.ts): the project ids
   * by a scan of the project index, then each project's sessions by a query of it. That index only.
   */
  grantProjectIndexReads(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query', 'dynamodb:Scan'], resourceArns: [`${this.table.tableArn}/index/${PROJECT_INDEX}`] });
  }

  /**
   * The state machine's dynamodb:updateItem states (acquire, record, close, release): UpdateItem
   * on the table only, not its indexes; the workflow reads nothing (CreateSession's Lambda puts the item).
   */
  grantWorkflowWrites(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({ grantee, actions: ['dynamodb:UpdateItem'], resourceArns: [this.table.tableArn] });
  }

  /** The cdk-nag finding grantReadSessions raises (every index of this table), as cdk-nag spells it. */
  indexesFinding(): string {
    const logicalId = Stack.of(this).getLogicalId(this.table.node.defaultChild as CfnElement);
    return `IAM5[Resource::<${logicalId}.Arn>/index/*]`;
  }
}
