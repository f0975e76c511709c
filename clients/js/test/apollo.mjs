//! Apollo Client with the recipe's link (recipes/apollo.js): runs READ over HTTP if set, then subscribes.
import { ApolloClient, InMemoryCache, gql } from '@apollo/client';
import { heraldLink } from '@pgherald/client/recipes/apollo';
import { clientFromEnv, describe, print, printer, query, token, variables } from './harness.mjs';

const apollo = new ApolloClient({
  link: heraldLink({ client: clientFromEnv(), httpUrl: process.env.HTTP_URL, token }),
  cache: new InMemoryCache(),
});
if (process.env.READ) {
  const { data, error } = await apollo.query({ query: gql(process.env.READ), fetchPolicy: 'no-cache' });
  print(error ? { event: 'error', error: describe(error) } : { event: 'read', data });
}
apollo.subscribe({ query: gql(query), variables }).subscribe({
  next: ({ data, error }) => error ? printer.error(error) : printer.next({ data }),
  error: printer.error,
  complete: printer.complete,
});
