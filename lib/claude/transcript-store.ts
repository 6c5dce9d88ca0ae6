import { GetObjectCommand, NoSuchKey, PutObjectCommand, PutObjectTaggingCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import type { TranscriptPointer } from '../sessions/milestone-item.js';

/** The transcript a resumed task needs is missing or not the one recorded: the task fails, the milestone is marked broken. */
export class TranscriptUnusableError extends Error {
  override readonly name = 'TranscriptUnusableError';
}

/** Tag the bucket's lifecycle rule expires on (cdk/transcript-bucket.ts). */
export const CLOSED_TAG = { Key: 'milestone', Value: 'closed' } as const;

export function transcriptKey(milestoneId: string): string {
  return `milestones/${milestoneId}/transcript.jsonl`;
}

/** What the runner and the API need of the store (the local runtime starts its S3 lazily behind it). */
export interface TranscriptStorage {
  save(milestoneId: string, body: Buffer): Promise<TranscriptPointer>;
  load(milestoneId: string, pointer: TranscriptPointer): Promise<Buffer>;
  markClosed(key: string): Promise<void>;
}

/**
 * Milestone transcripts in S3, one object per milestone. The milestone item records the
 * SHA-256 (and version, where versioned) of what the last task wrote, so a resumed task
 * restores exactly that conversation or fails saying why.
 */
export class TranscriptStore implements TranscriptStorage {
  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
  ) {}

  /** From TRANSCRIPT_BUCKET (and AWS_ENDPOINT_URL_S3 for a local emulator, which wants path-style URLs). */
  /** A local S3 endpoint (AWS_ENDPOINT_URL_S3) is addressed path-style. */
  static forBucket(bucket: string | undefined, env: NodeJS.ProcessEnv = process.env, wrap: (client: S3Client) => S3Client = (c) => c): TranscriptStore | undefined {
    if (!bucket) return undefined;
    return new TranscriptStore(wrap(new S3Client({ forcePathStyle: Boolean(env.AWS_ENDPOINT_URL_S3) })), bucket);
  }

  /** A workspace's change that could not be pushed, kept under workspaces/ (the bucket expires it). */
  async savePatch(sessionId: string, patch: Buffer): Promise<string> {
    const key = `workspaces/${sessionId}.patch`;
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: patch, ContentType: 'text/x-patch', ServerSideEncryption: 'AES256' }));
    return `s3://${this.bucket}/${key}`;
  }

  async save(milestoneId: string, body: Buffer): Promise<TranscriptPointer> {
    const key = transcriptKey(milestoneId);
    const put = await this.s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/x-ndjson', ServerSideEncryption: 'AES256' }),
    );
    return { key, sha256: sha256(body), bytes: body.length, versionId: put.VersionId ?? null };
  }

  async load(milestoneId: string, pointer: TranscriptPointer): Promise<Buffer> {
    let body: Buffer;
    try {
      const got = await this.s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: pointer.key, ...(pointer.versionId ? { VersionId: pointer.versionId } : {}) }),
      );
      body = Buffer.from(await got.Body!.transformToByteArray());
    } catch (err) {
      if (err instanceof NoSuchKey || (err as Error).name === 'NoSuchKey' || (err as Error).name === 'NoSuchVersion') {
        throw new TranscriptUnusableError(`the transcript of milestone ${milestoneId} is missing (s3://${this.bucket}/${pointer.key})`);
      }
      throw err;
    }
    const actual = sha256(body);
    if (actual !== pointer.sha256) {
      throw new TranscriptUnusableError(
        `the transcript of milestone ${milestoneId} is not the one its last task left (sha256 ${actual.slice(0, 12)}…, expected ${pointer.sha256.slice(0, 12)}…)`,
      );
    }
    assertTranscript(milestoneId, body);
    return body;
  }

  /** Marks a closed milestone's transcript for the bucket's expiry rule. */
  async markClosed(key: string): Promise<void> {
    try {
      await this.s3.send(new PutObjectTaggingCommand({ Bucket: this.bucket, Key: key, Tagging: { TagSet: [CLOSED_TAG] } }));
    } catch (err) {
      if ((err as Error).name !== 'NoSuchKey') throw err; // nothing to expire
    }
  }
}

/** A transcript the CLI can resume: JSON lines, the last of which is in this conversation. */
function assertTranscript(milestoneId: string, body: Buffer): void {
  const lines = body.toString('utf8').split('\n').filter((l) => l.trim());
  if (!lines.length) throw new TranscriptUnusableError(`the transcript of milestone ${milestoneId} is empty`);
  lines.forEach((line, i) => {
    try {
      JSON.parse(line);
    } catch {
      throw new TranscriptUnusableError(`the transcript of milestone ${milestoneId} is corrupt: line ${i + 1} is not JSON`);
    }
  });
}

export function sha256(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}
