import { spawn } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** `git http-backend` as a CGI (RFC 3875) over the bare repositories under `root`: request meta-variables in, headers and body out. */
export async function gitHttpBackend(root: string, req: IncomingMessage, res: ServerResponse, pathInfo: string, query: string): Promise<void> {
  const cgi = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: pathInfo,
      QUERY_STRING: query,
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
      ...(req.headers['git-protocol'] ? { HTTP_GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
    },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  req.pipe(cgi.stdin);
  const chunks: Buffer[] = [];
  cgi.stdout.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((resolve, reject) => cgi.once('error', reject).once('close', resolve));
  const output = Buffer.concat(chunks);
  const end = output.indexOf('\r\n\r\n');
  const headers = output.subarray(0, end).toString().split('\r\n').map((line) => line.split(/:\s*(.*)/s) as [string, string]);
  const status = Number(headers.find(([key]) => key.toLowerCase() === 'status')?.[1]?.split(' ')[0] ?? 200);
  res.writeHead(status, Object.fromEntries(headers.filter(([key]) => key.toLowerCase() !== 'status')));
  res.end(output.subarray(end + 4));
}
