import type { ApolloLink } from '@apollo/client';
import type { Client, TokenSource } from '../index.js';

export interface HeraldLinkOptions {
  /** A @pgherald/client client: subscriptions go through it. */
  client: Client;
  /** `http://…/graphql`: queries go there over HTTP; without it, the link is for subscriptions only. */
  httpUrl?: string;
  /** The token for HTTP requests (a function is called per request). */
  token?: TokenSource;
}

/** A terminating link: subscriptions through `client`, the rest over HTTP. */
export function heraldLink(options: HeraldLinkOptions): ApolloLink;
