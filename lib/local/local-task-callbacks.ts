import { randomBytes } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { admitOwnClientsOnly, refuseAsAwsJson } from './loopback-guard.js';
import { invokedFunction, lambdaRefusal, LocalTaskCredentials, stepFunctionsRefusal } from './task-credentials.js';

const AWS_JSON = 'application/x-amz-json-1.0';

interface Waiter {
  resolve(output: unknown): void;
  reject(error: Error): void;
  beat(): void;
}

/**
 * The part of Step Functions a task process talks to, on 127.0.0.1: SendTaskSuccess,
 * SendTaskFailure and SendTaskHeartbeat, and DescribeExecution (where the task reads its
 * prompt), in the service's own JSON protocol, so a task reports with the real SDK exactly
 * as it does on ECS. It answers only the task processes this runtime started, each for its own
 * task: a task's requests carry the session token of its own credentials (`tasks.issue`; the
 * SDK sends AWS_SESSION_TOKEN as x-amz-security-token), which may answer that task's token and
 * describe its execution, nothing else. Another process on this machine, a page, or another
 * task cannot read a running session's prompt here or answer its token.
 */
export class LocalTaskCallbacks {
  private readonly waiters = new Map<string, Waiter>();
  private server?: Server;

  /**
   * @param describe an execution by ARN as DescribeExecution answers it (status, input), undefined when there is none.
   * @param tasks the credentials of the task processes, by the grant each was issued with
   * @param gitTokens the git token minter (LOCAL_GIT_TOKEN_MINTER_ARN) a task invokes for its repository's token, as a deployed one invokes GitTokenMinter; none without a git credential
   */
  constructor(
    private readonly describe: (executionArn: string) => Promise<{ status: string; input: string } | undefined> = async () => undefined,
    readonly tasks = new LocalTaskCredentials(),
    readonly gitTokens?: (repo: string) => Promise<string>,
  ) {}

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const target = String(req.headers['x-amz-target'] ?? '').replace('AWSStepFunctions.', '');
        const reply = (status: number, body: object) => {
          res.writeHead(status, { 'content-type': AWS_JSON }).end(JSON.stringify(body));
        };
        let body: { taskToken?: string; output?: string; error?: string; cause?: string; executionArn?: string; repo?: unknown };
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        } catch {
          return reply(400, { __type: 'SerializationException', message: 'body is not JSON' });
        }
        if (invokedFunction({ method: req.method ?? '', url: req.url ?? '' }) !== undefined) return this.invokeMinter(body.repo, res);
        if (target === 'DescribeExecution') {
          // How it ended, too: a task learns from it that nobody waits for it any more.
          void (body.executionArn ? this.describe(body.executionArn) : Promise.resolve(undefined)).catch(() => undefined).then((execution) => {
            if (!execution) return reply(400, { __type: 'ExecutionDoesNotExist', message: `no execution ${body.executionArn}` });
            reply(200, { executionArn: body.executionArn, status: execution.status, input: execution.input, startDate: Date.now() / 1000 });
          });
          return;
        }
        const waiter = body.taskToken ? this.waiters.get(body.taskToken) : undefined;
        if (!waiter) return reply(400, { __type: 'TaskDoesNotExist', message: 'no task waits on this token' });
        if (target === 'SendTaskHeartbeat') {
          waiter.beat();
        } else if (target === 'SendTaskSuccess') {
          this.waiters.delete(body.taskToken!);
          try {
            waiter.resolve(JSON.parse(body.output ?? 'null'));
          } catch {
            return reply(400, { __type: 'InvalidOutput', message: 'output is not JSON' });
          }
        } else if (target === 'SendTaskFailure') {
          this.waiters.delete(body.taskToken!);
          const error = new Error(body.cause ?? '');
          error.name = body.error ?? 'TaskFailed';
          waiter.reject(error);
        } else {
          return reply(400, { __type: 'UnknownOperationException', message: `unknown operation ${target}` });
        }
        reply(200, {});
      });
    });
    admitOwnClientsOnly(server, {
      // Nothing but the tasks calls here: the owner's token is one no client holds.
      sessionToken: randomBytes(32).toString('base64url'),
      foreign: 'AccessDeniedException', stranger: { status: 403, code: 'UnrecognizedClientException' }, refuse: refuseAsAwsJson,
      scoped: {
        readsBody: true,
        scopeOf: (token) => {
          const grant = this.tasks.grantOf(token);
          return grant && ((request) => (invokedFunction(request) !== undefined ? lambdaRefusal(grant, request) : stepFunctionsRefusal(grant, request)));
        },
      },
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return this;
  }

  /**
   * Lambda's Invoke of the git token minter, answered as Lambda does: the minter's answer, or its
   * error with X-Amz-Function-Error (invokeGitTokenMinter reads both). The token goes to the task only.
   */
  private invokeMinter(repo: unknown, res: ServerResponse): void {
    const answer = (payload: object, functionError?: string): void => {
      res.writeHead(200, { 'content-type': 'application/json', ...(functionError ? { 'x-amz-function-error': functionError } : {}) }).end(JSON.stringify(payload));
    };
    const mint = this.gitTokens;
    if (!mint) return answer({ errorType: 'GitHubAppError', errorMessage: 'this runtime has no git credential (CLAUDE_SESSIONS_GIT_TOKEN or a GitHub App)' }, 'Unhandled');
    if (typeof repo !== 'string' || !repo) return answer({ errorType: 'GitHubAppError', errorMessage: 'the request names no repository: {"repo": "<its https URL>"}' }, 'Unhandled');
    void mint(repo).then(
      (token) => answer({ token }),
      (err: Error) => answer({ errorType: err.name, errorMessage: err.message }, 'Unhandled'),
    );
  }

  /** SendTaskFailure from outside the task (the watch of stopped tasks), as the service answers it. */
  async failTask(taskToken: string, error: string, cause: string): Promise<void> {
    const waiter = this.waiters.get(taskToken);
    if (!waiter) throw Object.assign(new Error('no task waits on this token'), { name: 'TaskDoesNotExist' });
    this.waiters.delete(taskToken);
    waiter.reject(Object.assign(new Error(cause), { name: error }));
  }

  /** Waits for the task holding this token, failing as Step Functions does when its heartbeats stop. */
  wait(taskToken: string, heartbeatMs: number | undefined, signal: AbortSignal, timeoutSeconds?: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = timeoutSeconds
        ? setTimeout(() => {
            done();
            reject(Object.assign(new Error(`the task ran past its ${timeoutSeconds} s limit`), { name: 'States.Timeout' }));
          }, timeoutSeconds * 1000)
        : undefined;
      const done = () => {
        clearTimeout(timer);
        clearTimeout(deadline);
        this.waiters.delete(taskToken);
        signal.removeEventListener('abort', onAbort);
      };
      const arm = () => {
        if (!heartbeatMs) return;
        clearTimeout(timer);
        timer = setTimeout(() => {
          done();
          const error = new Error(`no heartbeat for ${heartbeatMs / 1000} s`);
          error.name = 'States.HeartbeatTimeout';
          reject(error);
        }, heartbeatMs);
      };
      const onAbort = () => {
        done();
        reject(Object.assign(new Error('the execution was aborted'), { name: 'States.Aborted' }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(taskToken, {
        resolve: (output) => {
          done();
          resolve(output);
        },
        reject: (error) => {
          done();
          reject(error);
        },
        beat: arm,
      });
      arm();
    });
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}
