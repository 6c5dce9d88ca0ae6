import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ServiceFunction } from './service-function.js';

export interface InputValidatorProps {
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * The workflow's first state: the shared zod schema applied to whatever started the
 * execution (console input too), the session UUID fixed, the prompt hashed. A Lambda
 * because States.Hash stops at 10,000 characters and prompts may have 100,000.
 */
export class InputValidator extends Construct {
  readonly function: IFunction;

  constructor(scope: Construct, id: string, props: InputValidatorProps = {}) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/validator/handler.ts',
      description: 'Validates a session input and prepares the session item',
      serviceName: 'claude-sessions-validator',
      logRetention: props.logRetention,
    }).function;
  }
}
