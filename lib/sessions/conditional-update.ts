import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { TransactWriteCommand, UpdateCommand, type DynamoDBDocumentClient, type TransactWriteCommandInput, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';

/**
 * A conditional UpdateItem whose failed condition is an answer, not an error: false means
 * "nothing to do" (already closed, already freed, not this execution's).
 */
export async function conditionalUpdate(client: DynamoDBDocumentClient, input: UpdateCommandInput): Promise<boolean> {
  try {
    await client.send(new UpdateCommand(input));
    return true;
  } catch (err) {
    if (err instanceof ConditionalCheckFailedException) return false;
    throw err;
  }
}

/**
 * A TransactWriteItems whose refused condition is an answer, as `conditionalUpdate`'s: false when a
 * condition failed (nothing was written). A transaction cancelled only because another one held an
 * item (TransactionConflict: two closes counting into one project's totals) is tried again.
 */
export async function conditionalTransaction(client: DynamoDBDocumentClient, input: TransactWriteCommandInput, tries = 8): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.send(new TransactWriteCommand(input));
      return true;
    } catch (err) {
      if (!(err instanceof TransactionCanceledException)) throw err;
      const codes = (err.CancellationReasons ?? []).map((r) => r.Code);
      if (codes.includes('ConditionalCheckFailed')) return false;
      if (!codes.includes('TransactionConflict') || attempt >= tries) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 25 * 2 ** attempt));
    }
  }
}
