// Types of @pgherald/client (hand-written; the package has no build step).
import type {
  Client as WsClient,
  ClientOptions as WsClientOptions,
  FormattedExecutionResult,
  Sink,
  SubscribePayload,
} from 'graphql-ws';
import type { DocumentNode } from 'graphql';

/** A committed operation, as pgherald's `ChangeOp` enum. */
export type ChangeOp = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';

/**
 * One change of a pgherald subscription (`Change` of `changes(table:)`, or a
 * table's `<Type>Change`). `cursor` is always there (the client selects it);
 * the other fields are there when the subscription selects them.
 */
export interface Change<Row = Record<string, unknown>> {
  /** Resume point just after this change. */
  cursor: string;
  op?: ChangeOp;
  /** Typed subscriptions only: true for the rows of an `initial: true` read. */
  initial?: boolean;
  /** When the change was captured (ISO 8601). */
  committedAt?: string;
  /** `changes(table:)` only: `schema.table`. */
  table?: string;
  /** The new version; null for deletes and rows that left the caller's view. */
  row?: Row | null;
  /**
   * The previous version; null for inserts and rows that entered the view.
   * After a resume, a removal's `old` holds only the primary key.
   */
  old?: Partial<Row> | null;
}

/**
 * What a subscription's sink receives: graphql-ws's result, whose `data`
 * holds the change under the subscription's field name (or alias).
 */
export type ChangeResult<Row = Record<string, unknown>, Field extends string = string> =
  FormattedExecutionResult<Record<Field, Change<Row>>, unknown>;

/** A token, or a function returning one (called again after a 4403). */
export type TokenSource = string | (() => string | Promise<string>);

export interface ClientOptions extends Omit<WsClientOptions, 'url'> {
  /**
   * Where to connect: a URL; a list of URLs, walked round, one step per
   * connection (so after a close the next instance is tried); or a function
   * called for every connection.
   */
  url: string | readonly string[] | (() => string | Promise<string>);
  /**
   * The JWT, sent as `authorization: Bearer <token>` in `connection_init`.
   * A function is called for the first connection and again after the
   * server closes with 4403 (token expired or refused), and must then
   * return a token valid now. Its result is merged over `connectionParams`.
   */
  token?: TokenSource;
}

/**
 * graphql-ws's client whose subscriptions resume from their last cursor.
 * `subscribe<Row>` types the change's `row` and `old`.
 */
export interface Client extends WsClient {
  subscribe<Row = Record<string, unknown>, Field extends string = string>(
    payload: SubscribePayload,
    sink: Sink<ChangeResult<Row, Field>>,
  ): () => void;
  // graphql-ws's own signature, so that the client goes where graphql-ws's does.
  subscribe<Data = Record<string, unknown>, Extensions = unknown>(
    payload: SubscribePayload,
    sink: Sink<FormattedExecutionResult<Data, Extensions>>,
  ): () => void;
  iterate<Row = Record<string, unknown>, Field extends string = string>(
    payload: SubscribePayload,
  ): AsyncIterableIterator<ChangeResult<Row, Field>>;
  iterate<Data = Record<string, unknown>, Extensions = unknown>(
    payload: SubscribePayload,
  ): AsyncIterableIterator<FormattedExecutionResult<Data, Extensions>>;
}

/** Creates a client: graphql-ws's `createClient` options plus `token` and URL lists. */
export function createClient(options: ClientOptions): Client;

/** How `subscribe` sends a subscription (null for other operations). */
export interface PreparedSubscription {
  /** The response key of the subscription's field. */
  field: string;
  /** The operation as first sent: `cursor` selected, `after` in a variable. */
  query: string;
  /** The operation as sent after a reconnect (`initial` left out). */
  resumeQuery: string;
  /** The variable carrying `after`. */
  afterVariable: string;
  /** A cursor written inline as `after: "..."`, moved into the variable. */
  startCursor?: string;
  /** The variable carrying `initial`, set to false on resume. */
  initialVariable?: string;
}

/** Rewrites `query` as `subscribe` does; throws `HeraldClientError` on what it cannot resume. */
export function prepareSubscription(
  query: string | DocumentNode,
  operationName?: string | null,
): PreparedSubscription | null;

/** Close codes after which the client connects again. */
export const RETRYABLE_CLOSE_CODES: readonly number[];

/** A subscription or option the client cannot work with. */
export class HeraldClientError extends Error {}
