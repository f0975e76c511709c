import type { Exchange } from '@urql/core';
import type { Client } from '../index.js';

/** urql's `subscriptionExchange` forwarding subscriptions to `client`. */
export function heraldExchange(client: Client): Exchange;

export { authorizedFetch } from './fetch.js';
