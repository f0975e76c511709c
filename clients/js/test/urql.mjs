//! urql with the recipe's exchange (recipes/urql.js): runs READ over HTTP if set, then subscribes.
import { Client, cacheExchange, fetchExchange } from '@urql/core';
import { authorizedFetch, heraldExchange } from '@pgherald/client/recipes/urql';
import { clientFromEnv, describe, print, printer, query, token, variables } from './harness.mjs';

const urql = new Client({
  url: process.env.HTTP_URL ?? 'http://127.0.0.1:1/graphql',
  fetch: authorizedFetch(token),
  exchanges: [cacheExchange, fetchExchange, heraldExchange(clientFromEnv())],
});
if (process.env.READ) {
  const { data, error } = await urql.query(process.env.READ, {}).toPromise();
  print(error ? { event: 'error', error: describe(error) } : { event: 'read', data });
}
urql.subscription(query, variables).subscribe((result) => {
  if (result.error) printer.error(result.error);
  else printer.next({ data: result.data });
});
