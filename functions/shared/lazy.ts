/**
 * A value made at its first use and kept for the container's life: a handler reads its
 * environment at its first invocation, not at import, so its bundle loads anywhere (tools,
 * tests, a smoke import in the image build), and a missing variable fails that invocation, naming it.
 */
export function lazy<T>(make: () => T): () => T {
  let made: { value: T } | undefined;
  return () => (made ??= { value: make() }).value;
}
