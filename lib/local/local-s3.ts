import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { AwsCredentialIdentity } from '@smithy/types';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { TranscriptStore } from '../claude/transcript-store.js';
import { admitOwnClientsOnly, type Refuse } from './loopback-guard.js';
import { s3Refusal, type LocalTaskCredentials } from './task-credentials.js';

export const LOCAL_TRANSCRIPT_BUCKET = 'claude-sessions-transcripts';

/** A refusal as S3 words one, in XML, so the SDK throws an error of its Code. */
const refuseAsS3: Refuse = (res, { status, code, message }) => {
  const escaped = message.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
  res.writeHead(status, { 'content-type': 'application/xml' })
    .end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escaped}</Message></Error>`);
};

/**
 * S3 on this machine: s3rver on 127.0.0.1 (files under the state directory, or a temporary
 * one), so the runner's transcript code is the same SDK code that runs on AWS. It answers only
 * clients with its credentials: s3rver checks no SigV4 signature, so their session token admits them.
 */
export class LocalS3 {
  readonly client: S3Client;
  readonly store: TranscriptStore;

  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
    /** s3rver's own key pair, and the session token that admits a client. */
    readonly credentials: AwsCredentialIdentity,
    private readonly ownDirectory: string | undefined,
  ) {
    this.client = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials });
    this.store = new TranscriptStore(this.client, LOCAL_TRANSCRIPT_BUCKET);
  }

  /**
   * @param options.sessionToken what admits a client to everything (the runtime's own, in-process); @default a fresh one
   * @param options.tasks the local Fargate tasks' own credentials, each admitted to its milestone's transcript and its patch only
   */
  static async start(options: { path?: string; sessionToken?: string; tasks?: LocalTaskCredentials } = {}): Promise<LocalS3> {
    const tasks = options.tasks;
    const ownDirectory = options.path ? undefined : await mkdtemp(join(tmpdir(), 'claude-sessions-s3-'));
    const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', sessionToken: options.sessionToken ?? randomBytes(32).toString('base64url') };
    // s3rver's own Koa app on a server of ours, so the guard stands before it from the first request.
    const s3rver = new S3rver({ directory: options.path ?? ownDirectory!, silent: true });
    const server = admitOwnClientsOnly(createServer(s3rver.callback()), {
      sessionToken: credentials.sessionToken, foreign: 'AccessDenied', stranger: { status: 403, code: 'AccessDenied' }, refuse: refuseAsS3,
      scoped: tasks && {
        readsBody: false, // an object's body says nothing of where it goes
        scopeOf: (token) => {
          const grant = tasks.grantOf(token);
          return grant && ((request) => s3Refusal(grant, LOCAL_TRANSCRIPT_BUCKET, request));
        },
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const s3 = new LocalS3(server, `http://127.0.0.1:${port}`, credentials, ownDirectory);
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
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.ownDirectory) await rm(this.ownDirectory, { recursive: true, force: true });
  }
}
