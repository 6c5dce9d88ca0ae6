// Which repositories the deployment trusts with what: its git token (GIT_TOKEN_SCOPES, URL
// prefixes) and their own Claude Code settings (TRUSTED_SETTINGS_REPOSITORIES, whole URLs).
// Both are the deployment's settings, never a session's input. URLs are compared as parsed
// (host lower-cased, `..` resolved, no user or password), so a spelling cannot slip past.

/** A repository URL or path as compared here: parsed, no credentials, no trailing `/` or `.git`. */
export function normalizedRepository(repo: string): string {
  let text = repo;
  if (!repo.startsWith('/')) {
    const url = new URL(repo);
    url.username = '';
    url.password = '';
    url.search = '';
    url.hash = '';
    text = url.href;
  }
  return text.replace(/\/+$/, '').replace(/\.git$/, '');
}

/** Whether `repo` is one of `repositories` (URLs or absolute paths, each compared whole). */
export function isListedRepository(repo: string, repositories: readonly string[] | undefined): boolean {
  if (!repositories?.length) return false;
  const wanted = normalizedRepository(repo);
  return repositories.some((r) => normalizedRepository(r) === wanted);
}

/**
 * A scope for the git token: an https URL of a host, or of an owner (organization) or a
 * repository on it, e.g. `https://github.com/acme/`. Returned ending in `/`, so
 * `https://github.com/acme/` never covers `https://github.com/acme-evil/`. Throws naming `field`.
 */
export function checkedTokenScope(scope: string, field: string): string {
  let url: URL | undefined;
  try {
    url = new URL(scope);
  } catch {
    // named below
  }
  if (!url || url.protocol !== 'https:' || url.username || url.password || url.search || url.hash) {
    throw new Error(`${field} must be https URLs of a host or an owner on it, such as https://github.com/acme/, without credentials, query or fragment; not ${JSON.stringify(scope)}`);
  }
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}

export function checkedTokenScopes(scopes: readonly string[] | undefined, field: string): string[] | undefined {
  return scopes?.map((s) => checkedTokenScope(s, field));
}

/** Whether the git token may go to `repo`: an https URL under one of the scopes. */
export function tokenScopeOf(repo: string, scopes: readonly string[] | undefined): string | undefined {
  if (!repo.startsWith('https:') || !scopes?.length) return undefined;
  const url = `${normalizedRepository(repo)}/`;
  return scopes.find((scope) => url.startsWith(checkedTokenScope(scope, 'GIT_TOKEN_SCOPES')));
}
