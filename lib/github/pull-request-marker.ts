// The hidden line in the body of a pull request the product opened (docs/GITHUB.md#a-pull-request-is-a-milestone):
// the issue whose milestone to look at. Written by the reporter, read by the webhook from the signed
// payload, so a comment needs no GitHub call to find it. It binds nothing alone (anyone can copy it):
// the milestone must record the pull request's number (docs/GITHUB.md#why-the-marker-alone-binds-nothing).

const MARKER = /<!-- claude-sessions:issue=(\d{1,9}) -->/;

/** The marker of a pull request opened from issue `issue`. */
export function pullRequestMarker(issue: number): string {
  return `<!-- claude-sessions:issue=${issue} -->`;
}

/** The issue a pull request's body marks as its origin; undefined for a pull request the product did not open. */
export function markedIssue(body: string | null | undefined): number | undefined {
  const match = MARKER.exec(body ?? '');
  return match ? Number(match[1]) : undefined;
}
