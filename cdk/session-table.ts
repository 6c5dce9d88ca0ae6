import { RemovalPolicy, Stack, type CfnElement } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, StreamViewType, Table, TableEncryption, type ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { EXPIRES_AT, LEGACY_PROJECT_INDEX, PROJECT_INDEX, RUNNING_INDEX, RUNNING_PROJECT, SESSION_SUMMARY_ATTRIBUTES, sessionPk } from '../lib/sessions/session-item.js';
import { totalsPk } from '../lib/sessions/project-totals.js';
import { PROJECT_REGISTRY_PK } from '../lib/sessions/project-registry.js';
import { LEGACY_MILESTONE_INDEX, MILESTONE_INDEX, RECORD_PULL_REQUEST_ATTRIBUTES, milestonePk } from '../lib/sessions/milestone-item.js';
import { slotsPk } from '../lib/sessions/project-slots.js';

export interface SessionTableProps {
  /** @default RemovalPolicy.RETAIN: session history outlives the stack */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Keep the index of every attribute (`byProject`) that tables deployed before `byProjectSummary`
   * have: CloudFormation adds or drops one index per update, so an upgrade deploys once with it,
   * then once without (docs/DEPLOYING.md#upgrading). Nothing reads it. @default false
   */
  readonly keepLegacyProjectIndex?: boolean;
  /**
   * Leave out the running index (`byProjectRunning`), for the first deploy of an upgrade that also
   * adds `byProjectSummary` (one index per update): until the next deploy adds it, the sweeper's
   * query fails and only the reaper closes what an execution left open. @default false
   */
  readonly withoutRunningIndex?: boolean;
  /**
   * Keep the milestone index of every attribute (`byMilestone`) that tables deployed before
   * `byMilestoneSummary` have, for the first of the two deploys an upgrade takes (one index per
   * update; docs/DEPLOYING.md#upgrading). Nothing reads it. @default false
   */
  readonly keepLegacyMilestoneIndex?: boolean;
  /**
   * Leave out the milestone index `byMilestoneSummary`, for the deploys of an upgrade that change
   * another index first (one index per update): until a deploy adds it, a milestone's view and a
   * GitHub task's report fail (its totals item is kept all the same). @default false
   */
  readonly withoutMilestoneSummaryIndex?: boolean;
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
      // Closed sessions past sessionRetentionDays; always on, so setting the days needs no table change.
      timeToLiveAttribute: EXPIRES_AT,
    });
    // A project's sessions, newest first, as `list` shows them (no reply: a page reads a few hundred
    // bytes an item, not ~3 KB); items without startedAt (milestones, totals) stay out.
    table.addGlobalSecondaryIndex({
      indexName: PROJECT_INDEX,
      partitionKey: { name: 'projectId', type: AttributeType.STRING },
      sortKey: { name: 'startedAt', type: AttributeType.STRING },
      projectionType: ProjectionType.INCLUDE,
      nonKeyAttributes: [...SESSION_SUMMARY_ATTRIBUTES],
    });
    // A project's RUNNING sessions only: sparse, as only a RUNNING session item carries its key (every
    // close REMOVEs it), so listRunning and the sweeper read what is running, not the history.
    if (!props.withoutRunningIndex) table.addGlobalSecondaryIndex({
      indexName: RUNNING_INDEX,
      partitionKey: { name: RUNNING_PROJECT, type: AttributeType.STRING },
      sortKey: { name: 'startedAt', type: AttributeType.STRING },
      projectionType: ProjectionType.INCLUDE,
      nonKeyAttributes: ['projectId', ...SESSION_SUMMARY_ATTRIBUTES],
    });
    if (props.keepLegacyProjectIndex) {
      table.addGlobalSecondaryIndex({
        indexName: LEGACY_PROJECT_INDEX,
        partitionKey: { name: 'projectId', type: AttributeType.STRING },
        sortKey: { name: 'startedAt', type: AttributeType.STRING },
      });
    }
    // A milestone's tasks in order; only milestone tasks carry milestoneId (a sparse index). What a
    // task row shows, not the reply: the view's totals are a totals item, so nothing here is summed.
    if (!props.withoutMilestoneSummaryIndex) table.addGlobalSecondaryIndex({
      indexName: MILESTONE_INDEX,
      partitionKey: { name: 'milestoneId', type: AttributeType.STRING },
      sortKey: { name: 'startedAt', type: AttributeType.STRING },
      projectionType: ProjectionType.INCLUDE,
      nonKeyAttributes: ['projectId', ...SESSION_SUMMARY_ATTRIBUTES.filter((a) => a !== 'milestoneId')],
    });
    if (props.keepLegacyMilestoneIndex) {
      table.addGlobalSecondaryIndex({
        indexName: LEGACY_MILESTONE_INDEX,
        partitionKey: { name: 'milestoneId', type: AttributeType.STRING },
        sortKey: { name: 'startedAt', type: AttributeType.STRING },
      });
    }
    this.table = table;
  }

  /**
   * Putting a session item RUNNING (CreateSession): PutItem, and GetItem to tell its own retried
   * put from another execution's session (SessionRepository.create). SESSION# items only; in the
   * same transaction its project's totals and its project's registry item (project-registry.ts).
   */
  grantCreateSessions(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:PutItem', 'dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [sessionPk('*')] } },
    }).combine(this.grantTotalsCounts(grantee, [PROJECT_REGISTRY_PK]));
  }

  /** The ADD to a project's totals items that a session's write makes in its transaction (project-totals.ts), and `alsoKeys`. */
  private grantTotalsCounts(grantee: IGrantable, alsoKeys: string[] = []): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:UpdateItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [totalsPk('*'), ...alsoKeys] } },
    });
  }

  /** The project list: a Query of the registry's one partition (SessionRepository.projectIds), nothing else. */
  private grantProjectListReads(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:Query'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [PROJECT_REGISTRY_PK] } },
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
   * index, the project ids from the registry. Not grantReadData: no stream reads, no scan.
   * The index wildcard is a cdk-nag finding: acknowledge `indexesFinding()` where this is called.
   */
  grantReadSessions(grantee: IGrantable): Grant {
    // Items by key on the table; lists only by query, so nothing can read every item.
    return Grant.addToPrincipal({ grantee, actions: ['dynamodb:GetItem'], resourceArns: [this.table.tableArn] }).combine(
      Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query'], resourceArns: [`${this.table.tableArn}/index/*`] }),
    ).combine(this.grantTotalsReads(grantee)).combine(this.grantProjectListReads(grantee));
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

  /** One milestone by its key (the GitHub webhook, before it closes a pull request's milestone): GetItem of MILESTONE# items only. */
  grantGetMilestone(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [milestonePk('*')] } },
    });
  }

  /**
   * A milestone, its totals and its tasks (MilestoneRepository.view: the GitHub reporter's running
   * total): GetItem of MILESTONE# items and of TOTALS# items (its totals item), and a Query of the
   * milestone index, whose key is a milestone id.
   */
  grantViewMilestones(grantee: IGrantable): Grant {
    return this.grantGetMilestone(grantee).combine(
      Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query'], resourceArns: [`${this.table.tableArn}/index/${MILESTONE_INDEX}`] }),
    ).combine(Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem'],
      resourceArns: [this.table.tableArn],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [totalsPk('*')] } },
    }));
  }

  /**
   * Recording a milestone's pull request (MilestoneRepository.recordPullRequest: the GitHub reporter
   * binds the pull request it opened to the milestone), nothing else: UpdateItem of MILESTONE#
   * items naming only the attributes of that write, and returning none (the lease, status,
   * transcript and workspace stay the workflow's).
   */
  grantRecordPullRequests(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:UpdateItem'],
      resourceArns: [this.table.tableArn],
      conditions: {
        'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [milestonePk('*')] },
        'ForAllValues:StringEquals': { 'dynamodb:Attributes': [...RECORD_PULL_REQUEST_ATTRIBUTES] },
        StringEqualsIfExists: { 'dynamodb:ReturnValues': 'NONE' },
      },
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
   * from the registry, then each project's running sessions by a query of the running index only.
   */
  grantRunningIndexReads(grantee: IGrantable): Grant {
    return Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query'], resourceArns: [`${this.table.tableArn}/index/${RUNNING_INDEX}`] })
      .combine(this.grantProjectListReads(grantee));
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
