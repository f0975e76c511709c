//! Shared by the test scripts: settings from the environment, JSON lines on stdout, the test's answers on stdin.
//
// Driven by tests/api/client_helper. Environment:
//   URLS        one ws:// URL, or several separated by spaces (walked round)
//   TOKEN       a JWT, or `ask`: token() prints {"event":"token"} and waits for one on stdin
//               (`throw:<message>` there: token() throws)
//   GATE_RETRY  set: before each retry, print {"event":"retry_wait"} and wait for a line on stdin
//   QUERY, VARIABLES (JSON)  the subscription
//   HTTP_URL    http://…/graphql, for the recipes' queries
import readline from 'node:readline';
import WebSocket from 'ws';
import { createClient } from '@pgherald/client';

/** Prints one JSON line. */
export const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Prints {"event": what, ...extra} and returns the test's next line on stdin. */
export async function ask(what, extra = {}) {
  print({ event: what, ...extra });
  const { value, done } = await answers.next();
  if (done) throw new Error(`stdin closed while waiting for ${what}`);
  return value;
}

export const query = process.env.QUERY;
export const variables = JSON.parse(process.env.VARIABLES || '{}');
// An answer `throw:<message>` makes token() throw.
export const token = process.env.TOKEN === 'ask'
  ? async () => {
    const answer = await ask('token');
    if (answer.startsWith('throw:')) throw new Error(answer.slice('throw:'.length));
    return answer;
  }
  : process.env.TOKEN;

/** A @pgherald/client client configured from the environment, printing its connection events. */
export function clientFromEnv() {
  const urls = process.env.URLS.split(' ');
  return createClient({
    url: urls.length === 1 ? urls[0] : urls,
    webSocketImpl: WebSocket,
    token,
    ...(process.env.GATE_RETRY ? { retryWait: (retries) => ask('retry_wait', { retries }) } : {}),
    on: {
      opened: (socket) => print({ event: 'opened', url: socket.url }),
      connected: () => print({ event: 'connected' }),
      closed: (e) => print({ event: 'closed', code: e.code, reason: e.reason }),
    },
  });
}

/** An error of any kind (GraphQL errors, a close event, an Error) as text. */
export function describe(error) {
  if (Array.isArray(error)) return error.map((e) => `${e.message} (${e.extensions?.code})`).join('; ');
  if (error && 'code' in error && 'reason' in error) return `closed ${error.code} ${error.reason}`;
  return `${error?.name}: ${error?.message ?? error}`;
}

/** A sink printing what it receives. */
export const printer = {
  next: (data) => print({ event: 'next', data }),
  error: (error) => print({ event: 'error', error: describe(error) }),
  complete: () => print({ event: 'complete' }),
};
