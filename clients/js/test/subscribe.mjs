//! Subscribes with @pgherald/client itself and prints every event (see harness.mjs).
import { clientFromEnv, printer, query, variables } from './harness.mjs';

clientFromEnv().subscribe({ query, variables }, printer);
