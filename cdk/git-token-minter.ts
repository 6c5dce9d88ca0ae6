import { Duration } from 'aws-cdk-lib';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { DEFAULT_GITHUB_API_URL } from '../lib/github/github-client.js';
import { ServiceFunction } from './service-function.js';

export interface GitTokenMinterProps {
  /** The GitHub App's secret: JSON `{appId, privateKey}` (githubAppSecretName). */
  readonly appSecret: ISecret;
  /** The repositories a token may be minted for (gitTokenScopes). */
  readonly gitTokenScopes: readonly string[];
  /** GitHub's REST API. @default https://api.github.com */
  readonly apiUrl?: string;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * Git's token from a GitHub App, for the runners: the one function that reads the App's private
 * key, minting an installation token of one repository under gitTokenScopes with contents write,
 * for a runner that asks (lambda:InvokeFunction, `grantMint`). The runners never hold the key, and
 * a token they get opens one repository for an hour at most.
 */
export class GitTokenMinter extends Construct {
  readonly function: NodejsFunction;

  constructor(scope: Construct, id: string, props: GitTokenMinterProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/git-token-minter/handler.ts',
      description: 'claude-sessions: a GitHub App installation token of one repository, for a runner\'s git',
      serviceName: 'claude-sessions-git-token-minter',
      // Two REST calls of 20 s at most each.
      timeout: Duration.seconds(45),
      logRetention: props.logRetention,
      environment: {
        GITHUB_APP_SECRET_ARN: props.appSecret.secretArn,
        GITHUB_API_URL: props.apiUrl ?? DEFAULT_GITHUB_API_URL,
        GIT_TOKEN_SCOPES: props.gitTokenScopes.join(','),
      },
    }).function;
    props.appSecret.grantRead(this.function);
  }

  /** A runner may ask for git's token (and so for nothing but a token of a repository under the scopes). */
  grantMint(grantee: IGrantable): Grant {
    // The function itself, unqualified (what the runner invokes): grantInvoke would add every version and alias (`:*`).
    return Grant.addToPrincipal({ grantee, actions: ['lambda:InvokeFunction'], resourceArns: [this.function.functionArn] });
  }
}
