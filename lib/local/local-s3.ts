import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { TranscriptStore } from '../claude/transcript-store.js';

export const LOCAL_TRANSCRIPT_BUCKET = 'claude-sessions-transcripts';

/**
 * S3 on this machine: s3rver on 127.0.0.1 (files under the state directory, or a temporary
 * one), so the runner's transcript code is the same SDK code that runs on AWS.
 */
export class LocalS3 {
  readonly client: S3Client;
  readonly store: TranscriptStore;

  private constructor(
    private readonly server: S3rver,
    readonly endpoint: string,
    private readonly ownDirectory: string | undefined,
  ) {
    this.client = new S3Client({
      endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    this.store = new TranscriptStore(this.client, LOCAL_TRANSCRIPT_BUCKET);
  }

  static async start(options: { path?: string } = {}): Promise<LocalS3> {
    const ownDirectory = options.path ? undefined : await mkdtemp(join(tmpdir(), 'claude-sessions-s3-'));
    const server = new S3rver({ address: '127.0.0.1', port: 0, directory: options.path ?? ownDirectory!, silent: true });
    const { port } = await server.run();
    const s3 = new LocalS3(server, `http://127.0.0.1:${port}`, ownDirectory);
    try {
      await s3.client.send(new CreateBucketCommand({ Bucket: LOCAL_TRANSCRIPT_BUCKET }));
    } catch (err) {
      const name = (err as Error).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') {
        await s3.close();
        throw err;
      }
    }
    return s3;
  }

  async close(): Promise<void> {
    this.client.destroy();
    await this.server.close();
    if (this.ownDirectory) await rm(this.ownDirectory, { recursive: true, force: true });
  }
}
