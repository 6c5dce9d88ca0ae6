import { describe, expect, it } from 'vitest';
import { InvalidInputError, parseExecutionInput, prepareSessionStart } from '../lib/sessions/execution-input.js';

function errorsOf(raw: unknown) {
  try {
    parseExecutionInput(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    return (err as InvalidInputError).errors;
  }
  throw new Error('expected the input to be refused');
}

describe('the one execution input schema', () => {
  it('applies the documented defaults', () => {
    expect(parseExecutionInput({ prompt: 'hi', projectId: 'demo' })).toEqual({
      prompt: 'hi', projectId: 'demo', mode: 'fresh', runtime: 'lambda', trigger: 'console',
    });
  });

  it('names every bad field and says why', () => {
    expect(errorsOf({ projectId: 'a b', sessionId: 'x', maxTurns: 'many', extra: 1 })).toEqual(
      expect.arrayContaining([
        { field: 'extra', message: 'is not a known field' },
        { field: 'prompt', message: 'is required' },
        { field: 'projectId', message: expect.stringMatching(/A-Z a-z 0-9/) },
        { field: 'sessionId', message: 'must be a UUID' },
        { field: 'maxTurns', message: expect.stringMatching(/must be a number/) },
      ]),
    );
  });

  it('requires milestoneId in milestone mode and bounds timeoutSeconds by runtime', () => {
    expect(errorsOf({ prompt: 'p', projectId: 'p', mode: 'milestone' })).toEqual([
      { field: 'milestoneId', message: 'is required when mode is milestone' },
    ]);
    expect(errorsOf({ prompt: 'p', projectId: 'p', timeoutSeconds: 841 })).toEqual([
      { field: 'timeoutSeconds', message: 'must be at most 840 on the lambda runtime' },
    ]);
  });

  it('refuses a non-object input as a whole', () => {
    expect(errorsOf('just a string')).toEqual([{ field: '(input)', message: 'must be a JSON object' }]);
  });

  it('keeps a given session id and stores the prompt as a hash and a length', () => {
    const { session: start, prompt } = prepareSessionStart(
      { prompt: 'hello', projectId: 'p', sessionId: '6a2fe0ee-6684-4d70-bd8f-d08e873e2f22' },
      { executionArn: 'arn' },
    );
    expect(prompt).toBe('hello');
    expect(start).not.toHaveProperty('prompt');
    expect(start).toMatchObject({
      sessionId: '6a2fe0ee-6684-4d70-bd8f-d08e873e2f22',
      promptChars: 5,
      promptSha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
    });
  });
});
