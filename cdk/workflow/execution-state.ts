import { Condition } from 'aws-cdk-lib/aws-stepfunctions';
import { MILESTONE_SK } from '../../lib/sessions/milestone-item.js';
import { SLOTS_SK } from '../../lib/sessions/project-slots.js';
import { SESSION_SK } from '../../lib/sessions/session-item.js';

// What the states read of the execution state: the session CreateSession put ($.session) and
// the run's result ($.run).

export const sessionKey = {
  pk: { 'S.$': "States.Format('SESSION#{}', $.session.sessionId)" },
  sk: { S: SESSION_SK },
};
export const milestoneKey = {
  pk: { 'S.$': "States.Format('MILESTONE#{}', $.session.milestoneId)" },
  sk: { S: MILESTONE_SK },
};
export const slotsKey = {
  pk: { 'S.$': "States.Format('PROJECT#{}', $.session.projectId)" },
  sk: { S: SLOTS_SK },
};
export const thisExecution = { 'S.$': '$$.Execution.Id' };
/** The session as a member of its project's `running` set, and as the id a condition checks. */
export const thisSession = { ':session': { 'SS.$': 'States.Array($.session.sessionId)' }, ':sessionId': { 'S.$': '$.session.sessionId' } };

// Routes test presence only, and fall through to Default for absence: aws-local-stepfunctions 3
// evaluates IsPresent false as false whatever the input.
export const isMilestoneTask = Condition.isPresent('$.session.milestoneId');
export const isLimited = Condition.isPresent('$.session.concurrencyLimit');
export const completed = Condition.stringEquals('$.run.record.status', 'COMPLETED');
