import { generateKeyPairSync } from 'node:crypto';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GitHubAppTokens, appGitToken, parseGitHubApp } from '../lib/github/app-token.js';
import { invokeGitTokenMinter } from '../lib/github/git-token-minter.js';
import { localGitTokenMinter } from '../lib/local/local-fargate.js';
import { LocalTaskCallbacks } from '../lib/local/local-task-callbacks.js';
import { LOCAL_GIT_TOKEN_MINTER_ARN } from '../lib/local/task-credentials.js';
import { git } from './support/git-remote.js';
import { GitHubStandIn } from './support/github-stand-in.js';
import { HttpsGitRemote } from './support/https-git-remote.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

// A local Fargate session gets its repository's git token as a deployed task does: by Lambda's
// Invoke of the git token minter (here the runtime's own, on its task endpoint, with the task's
// own credential), so the runtime's credential, the App's key here, never enters the task process.

const APP_ID = '535353';
const app = generateKeyPairSync('rsa', { modulusLength: 2048 });
const appPem = app.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();

// Started here, not in beforeAll: the runtime's settings below name them.
const github = await new GitHubStandIn().start();
const remote = await new HttpsGitRemote().start();
const repoUrl = `https://127.0.0.1:${remote.port}/acme/widgets`;

beforeAll(() => {
  remote.repository('acme', 'widgets');
  github.installApp({ appId: APP_ID, publicKey: app.publicKey, installationId: 88, repositories: ['acme/widgets'], permissions: { contents: 'write' } });
  remote.authorize = github.gitAccess(); // only a token the stand-in minted for the repository clones or pushes it
  process.env.GIT_SSL_CAINFO = remote.caFile; // git trusts the remote, as a runner would a private CA
});

afterAll(async () => {
  delete process.env.GIT_SSL_CAINFO;
  await Promise.all([github.close(), remote.close()]);
});

beforeEach(() => {
  remote.requests.length = 0;
});

const basic = (token: string) => `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;

describe('a local Fargate session\'s git credential', () => {
  let env: TestRuntime;
  useTestRuntime((started) => (env = started), {
    gitToken: appGitToken(new GitHubAppTokens(github.url, async () => parseGitHubApp(JSON.stringify({ appId: APP_ID, privateKey: appPem }), 'githubAppSecretName'), 'githubAppSecretName')),
    gitTokenScopes: [`https://127.0.0.1:${remote.port}/acme/`],
  });

  it('clones and pushes its repository with a token of that repository that the task got from the minter, as a Lambda session does', async () => {
    // Prepare
    env.anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'FARGATE.md', content: 'written by a Fargate task\n' } },
      { kind: 'text', text: 'Wrote FARGATE.md.' },
    );
    const mintedBefore = github.minted.length;

    // Act
    const { session } = await env.runtime.run({ prompt: 'Write FARGATE.md', projectId: 'fargate-git', runtime: 'fargate', workspace: { repo: `${repoUrl}.git`, branch: 'fargate/notes' } });

    // Assess: pushed, with the minted token only
    expect(session, `${session?.error}: ${session?.cause}`).toMatchObject({ status: 'COMPLETED', runtime: 'fargate', workspace: { branch: 'fargate/notes', filesChanged: 1 } });
    expect(git(remote.barePath(`${repoUrl}.git`), 'rev-parse', 'fargate/notes')).toBe(session!.workspace!.commit);
    const minted = github.minted.slice(mintedBefore);
    expect(minted.map((m) => m.repositories)).toEqual(minted.map(() => ['acme/widgets']));
    expect(minted.length).toBeGreaterThan(0);
    expect(remote.requests.length).toBeGreaterThan(0);
    expect(new Set(remote.requests.map((r) => r.authorization))).toEqual(new Set(minted.map((m) => basic(m.token))));
    expect(JSON.stringify(session)).not.toContain(minted[0]!.token);
  });
});

describe('the local minter on the task endpoint: a task\'s own credential, the minter only, its scopes only', () => {
  const scope = 'https://git.example/acme/';
  let callbacks: LocalTaskCallbacks;
  beforeAll(async () => {
    callbacks = await new LocalTaskCallbacks(undefined, undefined, localGitTokenMinter({ gitToken: async (repo) => `ghs_for_${new URL(repo).pathname}`, gitTokenScopes: [scope] })).start();
  });
  afterAll(async () => {
    await callbacks?.close();
  });

  /** A Lambda client as a task's SDK is: the task endpoint, signed with these credentials. */
  const lambda = (sessionToken?: string) => new LambdaClient({
    endpoint: callbacks.endpoint, region: 'us-east-1', maxAttempts: 1, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', sessionToken },
  });
  const taskCredential = () => callbacks.tasks.issue({ sessionId: 's', projectId: 'p', executionArn: 'arn:e', taskToken: 't' });

  it('answers the runner\'s own Invoke (invokeGitTokenMinter) with the token of a repository under the scopes, and with the minter\'s error for one outside them', async () => {
    // Act
    const client = lambda(taskCredential());
    const token = await invokeGitTokenMinter(client, LOCAL_GIT_TOKEN_MINTER_ARN)(`${scope}widgets.git`);
    const outside = await invokeGitTokenMinter(client, LOCAL_GIT_TOKEN_MINTER_ARN)('https://git.example/mallory/widgets.git').catch((err: Error) => err);
    // Assess
    expect(token).toBe('ghs_for_/acme/widgets.git');
    expect(outside).toMatchObject({ name: 'GitHubAppError', message: expect.stringMatching(/the git token minter failed: https:\/\/git\.example\/mallory\/widgets\.git is under none of gitTokenScopes/) });
  });

  it('refuses another function to a task\'s credential, and the minter to no credential or a guessed one', async () => {
    // Act
    const invoke = (sessionToken: string | undefined, FunctionName: string) => lambda(sessionToken)
      .send(new InvokeCommand({ FunctionName, Payload: JSON.stringify({ repo: `${scope}widgets` }) })).catch((err: unknown) => err);
    const other = await invoke(taskCredential(), 'arn:aws:lambda:us-east-1:000000000000:function:claude-sessions-api-local');
    const guessed = await invoke('guessed', LOCAL_GIT_TOKEN_MINTER_ARN);
    const none = await invoke(undefined, LOCAL_GIT_TOKEN_MINTER_ARN);
    // Assess
    expect(other).toMatchObject({ $metadata: { httpStatusCode: 403 }, message: expect.stringMatching(/not authorized to perform lambda:InvokeFunction on .*claude-sessions-api-local: only the git token minter/) });
    for (const refused of [guessed, none]) expect(refused).toMatchObject({ $metadata: { httpStatusCode: 403 } });
    expect(JSON.stringify([other, guessed, none])).not.toContain('ghs_');
  });
});
