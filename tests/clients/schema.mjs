// Checks the server's schema with graphql-js, the reference implementation:
// fetches it with the standard introspection query over HTTP, builds it with
// buildClientSchema, validates it, and validates the operations it is given.
// Prints one JSON line on stdout:
//   {"schemaErrors": [...], "types": {Type: {field: {type, args: {arg: {type, default}}}}},
//    "operations": [[...errors of operation 1], ...], "sdl": "..."}
// or {"fatal": "..."} when the schema cannot even be built.
// Driven by tests/api; configured by environment variables:
//   URL (http://.../graphql), TOKEN, OPERATIONS (JSON list of GraphQL documents)
import {
  assertValidSchema,
  buildClientSchema,
  getIntrospectionQuery,
  isInputObjectType,
  isObjectType,
  parse,
  printSchema,
  validate,
  validateSchema,
} from 'graphql';

const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

try {
  const response = await fetch(process.env.URL, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${process.env.TOKEN}`,
    },
    body: JSON.stringify({ query: getIntrospectionQuery() }),
  });
  const body = await response.json();
  if (!body.data || body.errors) {
    print({ fatal: `introspection failed (${response.status}): ${JSON.stringify(body)}` });
    process.exit(0);
  }
  const schema = buildClientSchema(body.data);
  const schemaErrors = validateSchema(schema).map((e) => e.message);
  if (schemaErrors.length === 0) {
    assertValidSchema(schema);
  }
  const types = {};
  for (const type of Object.values(schema.getTypeMap())) {
    if (type.name.startsWith('__') || !(isObjectType(type) || isInputObjectType(type))) {
      continue;
    }
    const fields = {};
    for (const field of Object.values(type.getFields())) {
      const args = {};
      for (const arg of field.args || []) {
        args[arg.name] = { type: String(arg.type), default: arg.defaultValue ?? null };
      }
      fields[field.name] = { type: String(field.type), args };
    }
    types[type.name] = fields;
  }
  const operations = JSON.parse(process.env.OPERATIONS || '[]').map((text) => {
    try {
      return validate(schema, parse(text)).map((e) => e.message);
    } catch (e) {
      return [`parse: ${e.message}`];
    }
  });
  print({ schemaErrors, types, operations, sdl: printSchema(schema) });
} catch (e) {
  print({ fatal: String(e && e.stack || e) });
}
