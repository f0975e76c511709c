//! urql over pgherald: an exchange that forwards subscriptions to @pgherald/client (resumed by cursor).
import { subscriptionExchange } from '@urql/core';

/**
 * urql's `subscriptionExchange` forwarding each subscription to `client`
 * (a @pgherald/client client). Put it after `fetchExchange` in `exchanges`.
 */
export function heraldExchange(client) {
  return subscriptionExchange({
    forwardSubscription: (request) => ({
      subscribe: (sink) => ({
        unsubscribe: client.subscribe({ ...request, query: request.query ?? '' }, sink),
      }),
    }),
  });
}

export { authorizedFetch } from './fetch.js';
