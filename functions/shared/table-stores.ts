import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { MilestoneRepository } from '../../lib/sessions/milestone-repository.js';
import { ProjectSlots } from '../../lib/sessions/project-slots.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { lazy } from './lazy.js';

/** What closes a session and frees what it held (the reaper, the sweeper), on TABLE_NAME, read at first invocation. */
export function tableStores(documents: DynamoDBDocumentClient) {
  return lazy(() => {
    const tableName = getStringFromEnv({ key: 'TABLE_NAME' });
    return { repository: new SessionRepository(documents, tableName), milestones: new MilestoneRepository(documents, tableName), slots: new ProjectSlots(documents, tableName) };
  });
}
