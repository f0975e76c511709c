//! @pgherald/client: graphql-ws's client that resumes each pgherald subscription from its last cursor.
//
// graphql-ws re-sends a subscription's original payload after a reconnect,
// so on its own a reconnecting app starts again from no cursor (missing what
// was written while it was away) or from the stale one it began with. This
// client rewrites each subscription once, so that it selects `cursor` and
// passes `after` in a variable, remembers the cursor of the last change it
// delivered, and hands graphql-ws a payload whose `variables` are read at
// every (re)send: a resubscription asks for exactly what was missed.
import { createClient as createWsClient } from 'graphql-ws';
import { Kind, parse, print } from 'graphql';

/** Close codes after which the client connects again (4403 with a fresh token). */
export const RETRYABLE_CLOSE_CODES = Object.freeze([
  1001, // going away: the instance shuts down
  1005, // closed without a code
  1006, // connection lost, or refused while the instance is down
  1012, // service restart
  1013, // the instance has too many connections: another may not
  4403, // token expired or refused: retried once with a fresh token()
  4408, // connection_init too late
  4503, // the database could not be reached to check the token
]);

/** A subscription or option pgherald's client cannot work with. */
export class HeraldClientError extends Error {
  name = 'HeraldClientError';
}

/** An error thrown by the `token()` callback (not retried). */
class TokenError extends Error {
  name = 'TokenError';
}

/**
 * Like graphql-ws's `createClient`, plus `token` and a list of URLs; its
 * `subscribe` and `iterate` resume from the last delivered cursor.
 */
export function createClient(options) {
  const { url, token, connectionParams, on = {}, ...rest } = options ?? {};
  if (url == null || (Array.isArray(url) && url.length === 0)) {
    throw new HeraldClientError('createClient: `url` is required (a string, a list, or a function)');
  }
  const auth = tokenKeeper(token);
  let acknowledged = false;
  const client = createWsClient({
    retryAttempts: Infinity,
    retryWait: backoff,
    shouldRetry: (e) => isRetryable(e, auth),
    ...rest,
    url: urlPicker(url),
    connectionParams: async () => ({
      ...(typeof connectionParams === 'function' ? await connectionParams() : connectionParams),
      ...(await auth.params()),
    }),
    on: {
      ...on,
      connecting: (...args) => {
        acknowledged = false;
        on.connecting?.(...args);
      },
      connected: (...args) => {
        acknowledged = true;
        auth.accepted();
        on.connected?.(...args);
      },
      closed: (event) => {
        if (event?.code === 4403) auth.refused(acknowledged);
        on.closed?.(event);
      },
    },
  });

  function subscribe(payload, sink) {
    let resumable;
    try {
      resumable = resumablePayload(payload);
    } catch (e) {
      sink.error(e);
      return () => {};
    }
    if (!resumable) return client.subscribe(payload, sink);
    return client.subscribe(resumable.payload, {
      next: (result) => {
        resumable.delivered(result);
        sink.next(result);
      },
      error: (e) => sink.error(e),
      complete: () => sink.complete(),
    });
  }

  return { ...client, subscribe, iterate: (payload) => iterate(subscribe, payload) };
}

/**
 * How `subscribe` will send `query`: the operation rewritten to select
 * `cursor` (and `initial`, when the field takes `initial`) and to pass
 * `after` in a variable. Null for queries and mutations (sent unchanged).
 */
export function prepareSubscription(query, operationName) {
  const document = typeof query === 'string' ? parse(query) : query;
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operationName
    ? operations.find((o) => o.name?.value === operationName)
    : operations.length === 1 ? operations[0] : undefined;
  if (!operation) {
    throw new HeraldClientError(operationName
      ? `no operation named ${operationName}`
      : 'several operations: pass operationName');
  }
  if (operation.operation !== 'subscription') return null;
  const [field, ...others] = operation.selectionSet.selections;
  if (others.length > 0 || field.kind !== Kind.FIELD) {
    throw new HeraldClientError(
      'a pgherald subscription selects exactly one field, such as changes(table: ...) or notifications(...)');
  }
  const declared = new Set(operation.variableDefinitions?.map((v) => v.variable.name.value));
  const argument = (name) => field.arguments?.find((a) => a.name.value === name);

  // `after`: the user's variable, or a variable of ours holding the literal.
  let afterVariable, startCursor;
  const after = argument('after');
  if (after?.value.kind === Kind.VARIABLE) {
    afterVariable = after.value.name.value;
  } else if (declared.has('after')) {
    throw new HeraldClientError(`$after is declared but not passed as ${field.name.value}(after: $after)`);
  } else {
    afterVariable = 'after';
    startCursor = after?.value.kind === Kind.STRING ? after.value.value : undefined;
  }
  const variableDefinitions = declared.has(afterVariable)
    ? operation.variableDefinitions
    : [...(operation.variableDefinitions ?? []), variableDefinition(afterVariable)];
  const afterArgument = {
    kind: Kind.ARGUMENT,
    name: { kind: Kind.NAME, value: 'after' },
    value: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: afterVariable } },
  };

  // `initial: true` would re-read the rows after every reconnect, and the
  // server refuses it beside `after`: a resumed subscription leaves it out.
  const initial = argument('initial');
  const selections = withField(field.selectionSet?.selections, 'cursor');
  const base = {
    ...field,
    arguments: after
      ? field.arguments.map((a) => a === after ? afterArgument : a)
      : [...(field.arguments ?? []), afterArgument],
    selectionSet: {
      kind: Kind.SELECTION_SET,
      selections: initial ? withField(selections, 'initial') : selections,
    },
  };
  const resumed = {
    ...base,
    arguments: base.arguments.filter((a) => a !== initial || a.value.kind === Kind.VARIABLE),
  };
  const render = (root) => print({
    ...document,
    definitions: document.definitions.map((d) => d !== operation ? d : {
      ...operation,
      variableDefinitions,
      selectionSet: { kind: Kind.SELECTION_SET, selections: [root] },
    }),
  });
  return {
    field: field.alias?.value ?? field.name.value,
    query: render(base),
    resumeQuery: render(resumed),
    afterVariable,
    startCursor,
    initialVariable: initial?.value.kind === Kind.VARIABLE ? initial.value.name.value : undefined,
  };
}

/** The payload graphql-ws sends for `payload`, and what it learns from results. */
function resumablePayload(payload) {
  const plan = prepareSubscription(payload.query, payload.operationName);
  if (!plan) return null;
  const variables = payload.variables ?? {};
  let cursor; // of the last change delivered, initial rows excepted
  return {
    payload: {
      operationName: payload.operationName,
      extensions: payload.extensions,
      // Read by graphql-ws each time it sends the subscription.
      get query() {
        return cursor === undefined ? plan.query : plan.resumeQuery;
      },
      get variables() {
        if (cursor === undefined) {
          return { [plan.afterVariable]: plan.startCursor ?? null, ...variables };
        }
        const resumed = { ...variables, [plan.afterVariable]: cursor };
        if (plan.initialVariable) resumed[plan.initialVariable] = false;
        return resumed;
      },
    },
    delivered(result) {
      const change = result?.data?.[plan.field];
      // Initial rows all carry their snapshot's cursor: resuming from it
      // while they are still arriving would skip the rest of them.
      if (typeof change?.cursor === 'string' && change.initial !== true) cursor = change.cursor;
    },
  };
}

/** `selections` with the field `name` selected under its own name. */
function withField(selections = [], name) {
  const taken = selections.find((s) => s.kind === Kind.FIELD && (s.alias ?? s.name).value === name);
  if (taken && (taken.alias || taken.name.value !== name)) {
    throw new HeraldClientError(`the response key "${name}" is taken by another field; pgherald's client needs it for ${name}`);
  }
  if (taken) return selections;
  return [...selections, { kind: Kind.FIELD, name: { kind: Kind.NAME, value: name } }];
}

function variableDefinition(name) {
  return {
    kind: Kind.VARIABLE_DEFINITION,
    variable: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: name } },
    type: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: 'String' } },
  };
}

/** The URL of each connection: a list is walked round, one step per connection. */
function urlPicker(url) {
  if (typeof url === 'function') return url;
  if (typeof url === 'string') return url;
  const urls = [...url];
  let next = 0;
  return () => urls[next++ % urls.length];
}

/**
 * The token for each `connection_init`: asked of `token()` for the first
 * connection and after every 4403, reused otherwise. A token refused at
 * `connection_init` twice in a row (the fresh one too) ends the retries.
 */
function tokenKeeper(token) {
  let current; // a promise of the token in use
  let refusals = 0;
  return {
    async params() {
      if (token == null) return {};
      if (!current) {
        current = typeof token === 'function'
          ? Promise.resolve().then(token).catch((e) => {
            current = undefined;
            throw new TokenError(`token(): ${e?.message ?? e}`);
          })
          : Promise.resolve(token);
      }
      return { authorization: `Bearer ${await current}` };
    },
    accepted: () => { refusals = 0; },
    refused(afterAck) {
      current = undefined;
      refusals = afterAck ? 0 : refusals + 1;
    },
    get hopeless() {
      return refusals >= 2 || (refusals >= 1 && typeof token !== 'function');
    },
  };
}

function isRetryable(e, auth) {
  if (e instanceof TokenError) return false;
  if (e && typeof e === 'object' && 'code' in e && 'reason' in e) {
    if (e.code === 4403) return !auth.hopeless;
    return RETRYABLE_CLOSE_CODES.includes(e.code);
  }
  // A socket's `error` event (the network, a refused connection) comes
  // before its close event, and is the same trouble as a 1006.
  return e?.type === 'error';
}

/** Exponential backoff with jitter: 62-125 ms, then 125-250 ms, ... up to 5-10 s. */
function backoff(retries) {
  const ceiling = Math.min(10_000, 125 * 2 ** retries);
  return new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * ceiling / 2));
}

/** graphql-ws's `iterate`, over this client's `subscribe`. */
function iterate(subscribe, payload) {
  const pending = [];
  let wake = () => {};
  let finished = false, failure;
  const dispose = subscribe(payload, {
    next: (value) => { pending.push(value); wake(); },
    error: (e) => { finished = true; failure = e; wake(); },
    complete: () => { finished = true; wake(); },
  });
  return (async function* () {
    try {
      for (;;) {
        while (pending.length) yield pending.shift();
        if (failure) throw failure;
        if (finished) return;
        await new Promise((resolve) => { wake = resolve; });
      }
    } finally {
      dispose();
    }
  })();
}
