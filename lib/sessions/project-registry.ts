/**
 * The project list without a scan (docs/ARCHITECTURE.md#data-model): one small item per project under
 * one partition key, written in the transaction that creates each of its sessions (a SET of the same
 * values, so the first session makes it and the others change nothing), read by one Query.
 */
export const PROJECT_REGISTRY_PK = 'PROJECTS';

export function projectRegistrySk(projectId: string): string {
  return `PROJECT#${projectId}`;
}

/** The registry item's write: idempotent, so it rides on every create without a condition. */
export const PROJECT_REGISTRY_UPDATE = 'SET projectId = :projectId, firstStartedAt = if_not_exists(firstStartedAt, :startedAt)';

export function projectRegistryUpdate(tableName: string, session: { projectId: string; startedAt: string }) {
  return {
    TableName: tableName,
    Key: { pk: PROJECT_REGISTRY_PK, sk: projectRegistrySk(session.projectId) },
    UpdateExpression: PROJECT_REGISTRY_UPDATE,
    ExpressionAttributeValues: { ':projectId': session.projectId, ':startedAt': session.startedAt },
  };
}
