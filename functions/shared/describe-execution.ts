import { DescribeExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { DescribeExecution } from '../../lib/sessions/session-reaper.js';

/** DescribeExecution as the reaper and the sweeper ask it; ExecutionDoesNotExist is thrown by that name. */
export function describeExecution(sfn: SFNClient): DescribeExecution {
  return async (executionArn) => {
    const { status, input, error, cause } = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    return { status: status ?? 'RUNNING', input, error, cause };
  };
}
