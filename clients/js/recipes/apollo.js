//! Apollo Client over pgherald: subscriptions through @pgherald/client (resumed by cursor), the rest over HTTP.
import { ApolloLink, HttpLink } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { authorizedFetch } from './fetch.js';

/**
 * A terminating link: subscriptions go to `client` (a @pgherald/client
 * client, which GraphQLWsLink drives like graphql-ws's); with `httpUrl`,
 * queries go to `httpUrl` over HTTP with the same `token`.
 */
export function heraldLink({ client, httpUrl, token }) {
  const ws = new GraphQLWsLink(client);
  if (!httpUrl) return ws;
  const http = new HttpLink({ uri: httpUrl, fetch: authorizedFetch(token) });
  return ApolloLink.split(({ operationType }) => operationType === 'subscription', ws, http);
}
