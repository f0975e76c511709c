// PostGraphile 5 as a peer for `make bench-peers`: the same demo database as
// pgherald, the same login role (RLS applies), and listen-topic subscriptions
// equivalent to the bench workloads. Started by load.mjs; not a product.
//
// Environment:
//   DATABASE_URL   login role's connection string (non-superuser, e.g.
//                  herald_authenticator, which may SET ROLE app_user)
//   PORT           TCP port on 127.0.0.1
//   JWT_SECRET     HS256 secret (the bench's `bench-secret`)
//
// Authentication: the graphql-ws `connection_init` payload (or the HTTP
// Authorization header) carries `Bearer <jwt>`. The token is verified here
// and becomes, per subscription, pgSettings `role` = the `role` claim and
// `request.jwt.claims` = the claims as JSON: the PostgREST convention the
// demo schema's policies read (public.current_user_id()), as pgherald does.
//
// Subscriptions (topics are NOTIFYed by triggers load.mjs installs in the
// bench database only, each payload `{"id": <row id>}`):
//   notificationCreated(userId)   topic postgraphile:notif:<user_id>
//   documentCreated(tenantId)     topic postgraphile:docs:<tenant_id>
//   anyNotificationCreated        topic postgraphile:notif   (every row)
// Each event is turned into the row read by primary key in a transaction
// with the subscriber's pgSettings, so RLS decides what the subscriber gets
// (null where the policy hides the row).
import { createServer } from "node:http";
import jwt from "jsonwebtoken";
import { postgraphile } from "postgraphile";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { context, lambda, listen } from "postgraphile/grafast";
import { jsonParse } from "postgraphile/@dataplan/json";
import { extendSchema, gql } from "postgraphile/utils";

const { DATABASE_URL, PORT, JWT_SECRET } = process.env;
if (!DATABASE_URL || !PORT || !JWT_SECRET) {
  console.error("server.mjs needs DATABASE_URL, PORT and JWT_SECRET");
  process.exit(2);
}

const BenchSubscriptionsPlugin = extendSchema((build) => {
  const { notifications, documents } = build.input.pgRegistry.pgResources;
  if (!notifications || !documents) {
    throw new Error("public.notifications / public.documents not introspected");
  }
  const topicPlan = (prefix, $id) => lambda($id, (id) => `${prefix}:${id}`);
  const subscribe = (topic) => ({
    subscribePlan(_$root, fieldArgs) {
      const $topic = typeof topic === "string" ? topic : topic(fieldArgs);
      return listen(context().get("pgSubscriber"), $topic, jsonParse);
    },
    plan($event) {
      return $event;
    },
  });
  return {
    typeDefs: gql`
      type NotificationEvent {
        id: UUID
        notification: Notification
      }
      type DocumentEvent {
        id: UUID
        document: Document
      }
      extend type Subscription {
        notificationCreated(userId: UUID!): NotificationEvent
        documentCreated(tenantId: UUID!): DocumentEvent
        anyNotificationCreated: NotificationEvent
      }
    `,
    plans: {
      Subscription: {
        notificationCreated: subscribe((a) =>
          topicPlan("postgraphile:notif", a.getRaw("userId")),
        ),
        documentCreated: subscribe((a) =>
          topicPlan("postgraphile:docs", a.getRaw("tenantId")),
        ),
        anyNotificationCreated: subscribe("postgraphile:notif"),
      },
      NotificationEvent: {
        id($event) {
          return $event.get("id");
        },
        notification($event) {
          return notifications.get({ id: $event.get("id") });
        },
      },
      DocumentEvent: {
        id($event) {
          return $event.get("id");
        },
        document($event) {
          return documents.get({ id: $event.get("id") });
        },
      },
    },
  };
});

function claimsOf(requestContext) {
  const auth =
    requestContext.ws?.normalizedConnectionParams?.authorization ??
    requestContext.node?.req?.headers?.authorization;
  if (typeof auth !== "string") return null;
  const [scheme, token] = auth.split(" ");
  if (scheme?.toLowerCase() !== "bearer" || !token) return null;
  // Throws on a bad signature or an expired token: the operation fails.
  return jwt.verify(token, JWT_SECRET, { algorithms: ["HS256"] });
}

const preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [BenchSubscriptionsPlugin],
  pgServices: [
    makePgService({
      connectionString: DATABASE_URL,
      schemas: ["public"],
      pubsub: true,
    }),
  ],
  grafserv: { websockets: true, graphiql: false },
  grafast: {
    context(requestContext) {
      const claims = claimsOf(requestContext);
      if (!claims) return {};
      return {
        pgSettings: {
          role: typeof claims.role === "string" ? claims.role : "app_user",
          "request.jwt.claims": JSON.stringify(claims),
        },
      };
    },
  },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (e) => {
  console.error(e);
  process.exit(1);
});
await serv.addTo(server);
server.listen(Number(PORT), "127.0.0.1", () => {
  console.error(`postgraphile: listening on 127.0.0.1:${PORT}`);
});
const stop = () => {
  server.close();
  pgl.release().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
