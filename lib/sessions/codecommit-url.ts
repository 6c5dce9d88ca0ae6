// AWS CodeCommit's https URLs: https://git-codecommit[-fips].<region>.amazonaws.com/v1/repos/<name>.
// Any URL on one of its hosts is CodeCommit's: it never gets the git token, only a signature.
// Checked where an input is validated; signed for in lib/claude/codecommit-credentials.ts.

/** A repository named by its CodeCommit https URL. */
export interface CodeCommitRepository {
  host: string;
  region: string;
  name: string;
  /** What is signed: /v1/repos/<name>. */
  path: string;
}

// The CLI helper's hosts: FIPS, a VPC endpoint's (vpce-….git-codecommit.<region>.vpce.amazonaws.com), China's .com.cn.
const CODECOMMIT_HOST = /^(?:vpce-[a-z0-9-]+\.)?git-codecommit(?:-fips)?\.([^.]+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$/;
/** An AWS Region's name: us-east-1, us-gov-west-1, ap-southeast-2. */
export const AWS_REGION_NAME = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
/** CodeCommit's repository names: up to 100 letters, digits, . _ - */
export const CODECOMMIT_REPOSITORY_NAME = /^[A-Za-z0-9._-]{1,100}$/;
const REPOSITORY_PATH = new RegExp(`^/v1/repos/(${CODECOMMIT_REPOSITORY_NAME.source.slice(1, -1)})$`);
const URL_FORM = 'https://git-codecommit.<region>.amazonaws.com/v1/repos/<name>';

/** Whether git would reach CodeCommit at this URL: its host is a CodeCommit git endpoint. */
export function isCodeCommitUrl(repo: string): boolean {
  return URL.canParse(repo) && CODECOMMIT_HOST.test(new URL(repo).hostname);
}

/** What is wrong with a CodeCommit URL, or undefined when it names a region and a repository (or is not CodeCommit's). */
export function codeCommitUrlProblem(repo: string): string | undefined {
  if (!isCodeCommitUrl(repo)) return undefined;
  const url = new URL(repo);
  const region = CODECOMMIT_HOST.exec(url.hostname)![1]!;
  if (url.protocol !== 'https:' || url.port || url.search || url.hash || url.username || url.password) return `must be ${URL_FORM}, nothing more`;
  if (!AWS_REGION_NAME.test(region)) return `must name an AWS Region in its host (${URL_FORM}), not ${JSON.stringify(region)}`;
  if (!REPOSITORY_PATH.test(url.pathname)) return `must name the repository as ${URL_FORM} (a name of up to 100 letters, digits, . _ -)`;
  return undefined;
}

/** The repository a CodeCommit URL names; undefined for any other host. Throws for a malformed one. */
export function codeCommitRepository(repo: string): CodeCommitRepository | undefined {
  if (!isCodeCommitUrl(repo)) return undefined;
  const problem = codeCommitUrlProblem(repo);
  if (problem) throw new Error(`${repo} ${problem}`);
  const url = new URL(repo);
  return { host: url.hostname, region: CODECOMMIT_HOST.exec(url.hostname)![1]!, name: REPOSITORY_PATH.exec(url.pathname)![1]!, path: url.pathname };
}
