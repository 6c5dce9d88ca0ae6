// Errors as Step Functions names them for a Task state's Catch and Retry.

/** A Lambda error as Step Functions sees it: Error is the error's name, Cause a JSON document. */
export async function lambdaCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    throw namedError(error.name, JSON.stringify({ errorType: error.name, errorMessage: error.message }));
  }
}

export function namedError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}
