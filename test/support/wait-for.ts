/** Polls `probe` every 50 ms until it returns a value, for 15 s (or `timeoutMs`) at most, then fails naming `what`. */
export async function waitFor<T>(probe: () => Promise<T | undefined | null | false>, what = 'condition', timeoutMs = 15_000): Promise<T> {
  for (let i = 0; i < timeoutMs / 50; i++) {
    const value = await probe();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} not reached`);
}
