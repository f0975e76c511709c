// graphql-http's server audits (the GraphQL over HTTP spec) against the URL
// given as the first argument: one JSON line per audit, in the package's
// order, with its id, name, status (ok, notice, warn or error) and, when not
// ok, the reason and the response's status and content type.
//
//   node audit.mjs http://127.0.0.1:8080/graphql
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}

// One at a time: the results then do not depend on how the server
// schedules concurrent requests, and a failure's response is easy to read.
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    const res = result.response;
    line.response = {
      status: res.status,
      contentType: res.headers.get('content-type'),
      body: (await res.text().catch((e) => `(unreadable: ${e})`)).slice(0, 500),
    };
  }
  console.log(JSON.stringify(line));
}
