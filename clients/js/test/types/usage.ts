// Compiled by `tsc -p test/types` (tests/api/client_helper/package.rs): the
// types accept what the docs show and refuse what they must
// (`@ts-expect-error` fails the compilation when the line compiles).
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { ApolloClient, InMemoryCache } from '@apollo/client';
import { Client as UrqlClient, fetchExchange } from '@urql/core';
import type { Client as WsClient } from 'graphql-ws';
import {
  createClient,
  prepareSubscription,
  RETRYABLE_CLOSE_CODES,
  type Change,
  type ChangeResult,
} from '@pgherald/client';
import { heraldLink } from '@pgherald/client/recipes/apollo';
import { authorizedFetch, heraldExchange } from '@pgherald/client/recipes/urql';

interface Notification {
  id: string;
  title: string;
}

const client = createClient({
  url: ['ws://a.example/graphql', 'ws://b.example/graphql'],
  token: async () => 'jwt',
  retryAttempts: 10,
});
createClient({ url: () => 'ws://a.example/graphql', token: 'jwt' });
// @ts-expect-error: a URL is required
createClient({ token: 'jwt' });
// @ts-expect-error: a token is a string or a function returning one
createClient({ url: 'ws://a.example/graphql', token: 42 });

const stop: () => void = client.subscribe<Notification, 'notifications'>(
  { query: 'subscription { notifications { op row { id title } old { title } } }' },
  {
    next(result: ChangeResult<Notification, 'notifications'>) {
      const change = result.data?.notifications;
      const title: string | undefined = change?.row?.title;
      const cursor: string | undefined = change?.cursor;
      // After a resume, `old` may hold only the key: its fields are optional.
      const oldTitle: string | undefined = change?.old?.title;
      // @ts-expect-error: not a column of Notification
      change?.row?.body;
      // @ts-expect-error: the field is named `notifications`
      result.data?.documents;
      void [title, cursor, oldTitle];
    },
    error() {},
    complete() {},
  },
);
stop();

async function iterate() {
  for await (const result of client.iterate<Notification>({ query: 'subscription { changes(table: "notifications") { row } }' })) {
    const change: Change<Notification> | undefined = result.data?.changes;
    // @ts-expect-error: op is an enum of operations
    const op: 'MERGE' | undefined = change?.op;
    void op;
  }
}
void iterate;

// The client fits where graphql-ws's client goes.
const asWs: WsClient = client;
new GraphQLWsLink(client);
new ApolloClient({ link: heraldLink({ client, httpUrl: 'http://a.example/graphql', token: 'jwt' }), cache: new InMemoryCache() });
new UrqlClient({ url: 'http://a.example/graphql', fetch: authorizedFetch(() => 'jwt'), exchanges: [fetchExchange, heraldExchange(client)] });

const prepared = prepareSubscription('subscription { notifications { row { id } } }');
const variable: string | undefined = prepared?.afterVariable;
const codes: readonly number[] = RETRYABLE_CLOSE_CODES;
void [asWs, variable, codes];
