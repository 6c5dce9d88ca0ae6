import { Aws } from 'aws-cdk-lib';
import { CustomState } from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { TOTALS_ALL_SK } from '../../lib/sessions/project-totals.js';
import { DYNAMODB_RETRY, TRANSACTION_RETRY, type HandledError, type CatchPolicy } from './error-handling.js';

/** One conditional UpdateItem, as every write of the workflow after CreateSession is. */
export interface UpdateItemSpec {
  readonly key: Record<string, unknown>;
  readonly update: string;
  readonly condition: string;
  readonly names?: Record<string, string>;
  /** The values, or a JSONPath to values the runner marshalled. */
  readonly values: Record<string, unknown> | string;
  /** Answer with the item as written (ReturnValues ALL_NEW). */
  readonly returnItem?: boolean;
  /** What of the answer to keep at resultPath. */
  readonly select?: Record<string, unknown>;
  /** @default null: the state's input passes on unchanged */
  readonly resultPath?: string;
  /** End the execution with this part of the state as its output. */
  readonly endWith?: string;
}

/**
 * The state's ASL. A CustomState, not aws-cdk-lib's DynamoUpdateItem: that task renders
 * ExpressionAttributeValues key by key from DynamoAttributeValue objects, so it cannot take the
 * whole map from a JSONPath (`ExpressionAttributeValues.$`: the values the runner marshalled at
 * $.run.values); and each one adds its own dynamodb:UpdateItem statement to the role, beside the
 * workflow's single grant on the table.
 */
export function updateItemState(tableName: string, spec: UpdateItemSpec) {
  return {
    Type: 'Task',
    Resource: `arn:${Aws.PARTITION}:states:::dynamodb:updateItem`,
    Parameters: {
      TableName: tableName,
      Key: spec.key,
      UpdateExpression: spec.update,
      ConditionExpression: spec.condition,
      ...(spec.names ? { ExpressionAttributeNames: spec.names } : {}),
      ...(typeof spec.values === 'string' ? { 'ExpressionAttributeValues.$': spec.values } : { ExpressionAttributeValues: spec.values }),
      ...(spec.returnItem ? { ReturnValues: 'ALL_NEW' } : {}),
    },
    ...(spec.select ? { ResultSelector: spec.select } : {}),
    ResultPath: spec.resultPath ?? null,
    ...(spec.endWith ? { OutputPath: spec.endWith, End: true } : {}),
  };
}

/** Builds an UpdateItem state with its retries and its catch policy: a write cannot be built without one. */
export type WriteState = (id: string, spec: UpdateItemSpec, catchPolicy: CatchPolicy, ...handled: HandledError[]) => CustomState;

export function updateItemStates(scope: Construct, tableName: string): WriteState {
  return (id, spec, catchPolicy, ...handled) =>
    catchPolicy.assign(new CustomState(scope, id, { stateJson: updateItemState(tableName, spec) }).addRetry(DYNAMODB_RETRY), ...handled);
}

/** The project's totals' change, as the runner marshalled it ($.run.totals) or fixed in the definition. */
export type TotalsDeltaSpec = string | { update: string; names: Record<string, string>; values: Record<string, unknown> };

/** A session write and the same ADD on the project's three totals items, in one transaction (docs/ARCHITECTURE.md#project-totals). */
export interface TransactSpec {
  readonly session: Pick<UpdateItemSpec, 'key' | 'update' | 'condition' | 'names' | 'values'>;
  readonly totals: TotalsDeltaSpec;
  /** End the execution with this part of the state as its output. */
  readonly endWith?: string;
}

/**
 * Where the three totals items are: CreateSession put their keys at $.totals (PreparedSession). The
 * third is the milestone's (or the project's sessions of no milestone, so the transaction has one shape).
 */
const TOTALS_KEYS = [
  { pk: { 'S.$': '$.totals.pk' }, sk: { S: TOTALS_ALL_SK } },
  { pk: { 'S.$': '$.totals.pk' }, sk: { 'S.$': '$.totals.day' } },
  { pk: { 'S.$': '$.totals.pk' }, sk: { 'S.$': '$.totals.milestone' } },
];

/**
 * The state's ASL: TransactWriteItems through the AWS SDK integration (Step Functions has no
 * optimized one). The session's condition guards the whole: refused, nothing is counted.
 */
export function transactState(tableName: string, spec: TransactSpec) {
  const { session, totals } = spec;
  const totalsParameters = typeof totals === 'string'
    ? { 'UpdateExpression.$': `${totals}.update`, 'ExpressionAttributeNames.$': `${totals}.names`, 'ExpressionAttributeValues.$': `${totals}.values` }
    : { UpdateExpression: totals.update, ExpressionAttributeNames: totals.names, ExpressionAttributeValues: totals.values };
  return {
    Type: 'Task',
    Resource: `arn:${Aws.PARTITION}:states:::aws-sdk:dynamodb:transactWriteItems`,
    Parameters: {
      TransactItems: [
        {
          Update: {
            TableName: tableName,
            Key: session.key,
            UpdateExpression: session.update,
            ConditionExpression: session.condition,
            ...(session.names ? { ExpressionAttributeNames: session.names } : {}),
            ...(typeof session.values === 'string' ? { 'ExpressionAttributeValues.$': session.values } : { ExpressionAttributeValues: session.values }),
          },
        },
        ...TOTALS_KEYS.map((key) => ({ Update: { TableName: tableName, Key: key, ...totalsParameters } })),
      ],
    },
    ResultPath: null,
    ...(spec.endWith ? { OutputPath: spec.endWith, End: true } : {}),
  };
}

export type TransactState = (id: string, spec: TransactSpec, catchPolicy: CatchPolicy, ...handled: HandledError[]) => CustomState;

export function transactStates(scope: Construct, tableName: string): TransactState {
  return (id, spec, catchPolicy, ...handled) =>
    catchPolicy.assign(new CustomState(scope, id, { stateJson: transactState(tableName, spec) }).addRetry(TRANSACTION_RETRY), ...handled);
}
