import type { TokenSource } from '../index.js';

/** `fetch` with `authorization: Bearer <token>` added to every request. */
export function authorizedFetch(token: TokenSource | undefined, fetchImpl?: typeof fetch): typeof fetch;
