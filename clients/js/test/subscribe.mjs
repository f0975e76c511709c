//! Subscribes with @pgherald/client itself and prints every event (see harness.mjs);
//! with ITERATE set, through `client.iterate` instead of `client.subscribe`.
import { clientFromEnv, printer, query, variables } from './harness.mjs';

const client = clientFromEnv();
if (process.env.ITERATE) {
  try {
    for await (const result of client.iterate({ query, variables })) printer.next(result);
    printer.complete();
  } catch (error) {
    printer.error(error);
  }
} else {
  client.subscribe({ query, variables }, printer);
}
