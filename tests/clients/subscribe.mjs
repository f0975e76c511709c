// Subscribes with a real third-party client and prints one JSON line per
// event on stdout: {"event":"connected"}, {"event":"next","data":...},
// {"event":"error","error":...}, {"event":"complete"}, {"event":"closed","code":...}.
// Driven by tests/api; configured by environment variables:
//   URL (ws://...), TOKEN, QUERY, VARIABLES (JSON), PROTOCOL (transport|legacy)
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import pkg from 'subscriptions-transport-ws';
const { SubscriptionClient } = pkg;

const url = process.env.URL;
const token = process.env.TOKEN;
const query = process.env.QUERY;
const variables = JSON.parse(process.env.VARIABLES || '{}');
const protocol = process.env.PROTOCOL || 'transport';
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

if (protocol === 'transport') {
  // Default settings on purpose: no client pings, default keep-alive, no retries
  // beyond the library defaults for a lazy client that is kept alive by one subscription.
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: 0,
    on: {
      connected: () => print({ event: 'connected' }),
      closed: (e) => print({ event: 'closed', code: e.code, reason: e.reason }),
    },
  });
  client.subscribe({ query, variables }, {
    next: (data) => print({ event: 'next', data }),
    error: (error) => print({ event: 'error', error: error && (error.message || error.reason || error) }),
    complete: () => print({ event: 'complete' }),
  });
} else {
  const client = new SubscriptionClient(url, {
    reconnect: false,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    connectionCallback: (err) => print(err ? { event: 'error', error: err } : { event: 'connected' }),
  }, WebSocket);
  client.onDisconnected(() => print({ event: 'closed' }));
  client.request({ query, variables }).subscribe({
    next: (data) => print({ event: 'next', data }),
    error: (error) => print({ event: 'error', error: String(error && error.message || error) }),
    complete: () => print({ event: 'complete' }),
  });
}
