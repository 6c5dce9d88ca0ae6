import { Aws } from 'aws-cdk-lib';
import { CustomState } from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { DYNAMODB_RETRY, type HandledError, type Role } from './roles.js';

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

/** Builds an UpdateItem state with its retries and its role: a write cannot be built without one. */
export type WriteState = (id: string, spec: UpdateItemSpec, role: Role, ...handled: HandledError[]) => CustomState;

export function updateItemStates(scope: Construct, tableName: string): WriteState {
  return (id, spec, role, ...handled) =>
    role.assign(new CustomState(scope, id, { stateJson: updateItemState(tableName, spec) }).addRetry(DYNAMODB_RETRY), ...handled);
}
