// Many subscribers in one process (one node start-up for all of them, which
// matters on a loaded machine): one real graphql-ws client per token, each
// with its own WebSocket, all running QUERY. Prints one JSON line per event,
// tagged with the client's index in TOKENS: {"client":0,"event":"connected"},
// {"client":0,"event":"next","data":...}, {"client":0,"event":"error",...},
// {"client":0,"event":"complete"}, {"client":0,"event":"closed","code":...}.
// Driven by tests/api/deploy/; configured by environment variables:
//   URL (ws://...), TOKENS (JSON array of JWTs), QUERY, VARIABLES (JSON)
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

const url = process.env.URL;
const tokens = JSON.parse(process.env.TOKENS || '[]');
const query = process.env.QUERY;
const variables = JSON.parse(process.env.VARIABLES || '{}');
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

tokens.forEach((token, client) => {
  const graphql = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    on: {
      connected: () => print({ client, event: 'connected' }),
      closed: (e) => print({ client, event: 'closed', code: e.code, reason: e.reason }),
    },
  });
  graphql.subscribe({ query, variables }, {
    next: (data) => print({ client, event: 'next', data }),
    error: (error) => print({ client, event: 'error', error: error && (error.message || error.reason || error) }),
    complete: () => print({ client, event: 'complete' }),
  });
});
