//! A `fetch` that sends pgherald's token with every HTTP request (queries go over HTTP).

/**
 * `fetch` with `authorization: Bearer <token>` added; `token` as for
 * `createClient` (a string, or a function called for each request).
 */
export function authorizedFetch(token, fetchImpl = globalThis.fetch) {
  return async (input, init = {}) => {
    const headers = new Headers(init.headers);
    if (token != null) {
      headers.set('authorization', `Bearer ${typeof token === 'function' ? await token() : token}`);
    }
    return fetchImpl(input, { ...init, headers });
  };
}
