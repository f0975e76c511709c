//! The topology of compose.yaml from local binaries: one database, the
//! one-shot `pgherald migrate --demo`, three `pgherald serve` processes and
//! nginx in front of them, configured by deploy/nginx.conf. Subscribers use
//! the real `graphql-ws` client through nginx, land on every instance, and
//! each receives exactly the notifications row-level security lets it see.

use std::collections::BTreeMap;
use std::str::FromStr;

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use super::nginx::{self, Nginx};
use super::processes::{self, Instance};
use super::subscribers::Subscribers;
use crate::helpers::{SECRET, WAIT, app_url_for, connect, empty_database, token_with};

/// Instances behind nginx.
const INSTANCES: usize = 3;

/// The caller's new notifications; the demo's policy shows a notification to
/// its recipient only.
const NOTIFICATIONS: &str =
    "subscription { notifications(ops: [INSERT]) { row { id title user_id } } }";

/// Users, and how many connections each opens (9 in all: 3 per instance
/// under round-robin).
const USERS: [(&str, usize); 6] = [
    ("alice", 2),
    ("bob", 2),
    ("carol", 2),
    ("dave", 1),
    ("erin", 1),
    ("frank", 1),
];

/// The users notifications are written for; carol and frank get none (but
/// the final marker, which ends every subscriber's reading).
const RECIPIENTS: [&str; 4] = ["alice", "bob", "dave", "erin"];

/// Notifications written per recipient.
const PER_RECIPIENT: usize = 5;

#[tokio::test]
async fn subscribers_through_nginx_spread_over_three_instances_and_each_receives_exactly_its_own_notifications_once()
 {
    let Some(nginx_binary) = nginx::binary() else {
        eprintln!(
            "SKIPPED deploy::cluster: nginx is not installed and scripts/prereq-nginx.sh \
             (run by `make test`) could not install it; see its message"
        );
        return;
    };

    // compose.yaml's `migrate` service: the binary, on an empty database.
    let admin_url = empty_database().await;
    let db = tokio_postgres::Config::from_str(&admin_url)
        .unwrap()
        .get_dbname()
        .unwrap()
        .to_owned();
    let app_url = app_url_for(&db);
    processes::migrate(
        &["--demo"],
        &[
            ("HERALD_ADMIN_DATABASE_URL", admin_url.clone()),
            ("DATABASE_URL", app_url.clone()),
        ],
    )
    .await;

    // The `pgherald-N` services, with compose.yaml's settings.
    let env = [
        ("DATABASE_URL", app_url),
        ("HERALD_JWT_SECRET", SECRET.to_owned()),
        ("HERALD_LISTEN", "127.0.0.1:0".to_owned()),
        ("HERALD_MAX_CONNECTIONS_PER_IP", "0".to_owned()),
    ];
    let instances = join_all((0..INSTANCES).map(|_| Instance::serve(&env))).await;
    join_all(instances.iter().map(Instance::wait_ready)).await;
    let upstreams: Vec<_> = instances.iter().map(|i| i.addr).collect();
    let nginx = Nginx::start(&nginx_binary, &upstreams).await;
    let url = format!("ws://{}/graphql", nginx.addr);

    let admin = connect(&admin_url).await;
    let tenant: String = admin
        .query_one(
            "insert into tenants (name) values ('Acme') returning id::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut ids = BTreeMap::new();
    for (name, _) in USERS {
        let id: String = admin
            .query_one(
                "with u as (insert into users (email) values ($1) returning id)
                 insert into memberships (tenant_id, user_id)
                 select $2::text::uuid, id from u returning user_id::text",
                &[&format!("{name}@acme.test"), &tenant],
            )
            .await
            .unwrap()
            .get(0);
        ids.insert(name, id);
    }

    // Every connection a client of its own: one graphql-ws client each, all
    // in one node process.
    let mut who = Vec::new();
    let mut tokens = Vec::new();
    for (name, connections) in USERS {
        for n in 0..connections {
            who.push((format!("{name}#{n}"), name));
            tokens.push(token_with(&ids[name], "app_user", 3600));
        }
    }
    let total = tokens.len() as u64;
    let mut clients = Subscribers::spawn(&url, &tokens, NOTIFICATIONS);
    let logs = Logs {
        instances: &instances,
        nginx: &nginx,
    };
    for (client, (name, _)) in who.iter().enumerate() {
        // (A generous bound: on a loaded machine node starts slowly.)
        let event = logs.event(&mut clients, client, name, WAIT * 3).await;
        assert_eq!(event["event"], "connected", "{name}: {event}");
    }
    wait_for_subscriptions(&instances, total).await;

    // Spread: every instance holds some of the connections nginx passed on.
    let mut spread = Vec::new();
    for instance in &instances {
        spread.push(instance.metric("pgherald_websocket_connections").await);
    }
    eprintln!("websocket connections per instance: {spread:?}");
    assert_eq!(spread.iter().sum::<u64>(), total, "{spread:?}");
    assert!(
        spread.iter().all(|&n| n >= 1),
        "nginx left an instance without connections: {spread:?}\n{}",
        nginx.error_log()
    );

    // Writes: one transaction per notification, recipients interleaved, then
    // one transaction with a final marker for every user, which each
    // subscriber receives last (an instance delivers in commit order).
    for i in 0..PER_RECIPIENT {
        for name in RECIPIENTS {
            notify(&admin, &tenant, &ids[name], &format!("{name} {i}")).await;
        }
    }
    admin.batch_execute("begin").await.unwrap();
    for (name, _) in USERS {
        notify(&admin, &tenant, &ids[name], &format!("last for {name}")).await;
    }
    admin.batch_execute("commit").await.unwrap();

    for (client, (who, name)) in who.iter().enumerate() {
        let mut titles = Vec::new();
        loop {
            let event = logs.event(&mut clients, client, who, WAIT).await;
            assert_eq!(event["event"], "next", "{who}: {event}");
            let row = &event["data"]["data"]["notifications"]["row"];
            assert_eq!(
                row["user_id"],
                json!(ids[*name]),
                "{who} got another user's row: {event}"
            );
            let title = row["title"].as_str().expect("a title").to_owned();
            if title == format!("last for {name}") {
                break;
            }
            titles.push(title);
        }
        let expected: Vec<String> = if RECIPIENTS.contains(name) {
            (0..PER_RECIPIENT).map(|i| format!("{name} {i}")).collect()
        } else {
            Vec::new()
        };
        assert_eq!(
            titles, expected,
            "{who}: every own event once, in order, nothing else"
        );
    }

    let mut deliveries = Vec::new();
    for instance in &instances {
        deliveries.push(instance.metric("pgherald_deliveries_total").await);
    }
    eprintln!("deliveries per instance: {deliveries:?}");

    // The connection budget of docs/deployment.md: per instance one
    // listener, one relay connection (campaigning or holding the lock), at
    // most two snapshot holders, and the pools (16 + 4 at most).
    let rows = admin
        .query(
            "select coalesce(application_name, ''), count(*) from pg_stat_activity
              where datname = current_database() and usename = 'herald_authenticator'
              group by 1",
            &[],
        )
        .await
        .unwrap();
    let count = |name: &str| -> i64 {
        rows.iter()
            .filter(|r| r.get::<_, &str>(0) == name)
            .map(|r| r.get::<_, i64>(1))
            .sum()
    };
    let all: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    let n = INSTANCES as i64;
    eprintln!(
        "connections: listener {}, relay {}, snapshots {}, pools {}",
        count("pgherald-listener"),
        count("pgherald-relay"),
        count("pgherald-snapshots"),
        count("pgherald")
    );
    assert_eq!(count("pgherald-listener"), n);
    assert_eq!(count("pgherald-relay"), n);
    assert!(count("pgherald-snapshots") <= 2 * n);
    assert!(count("pgherald") <= (16 + 4) * n);
    assert!(all <= (16 + 8) * n, "{all} connections");
    clients.kill().await;
}

/// Where to look when something does not arrive.
struct Logs<'a> {
    instances: &'a [Instance],
    nginx: &'a Nginx,
}

impl Logs<'_> {
    /// Client `client`'s next event, within `timeout`; when none comes, the
    /// panic shows the instances' and nginx's logs.
    async fn event(
        &self,
        clients: &mut Subscribers,
        client: usize,
        who: &str,
        timeout: Duration,
    ) -> Value {
        match clients.next_event(client, timeout).await {
            Some(event) => event,
            None => {
                let logs: Vec<String> = self.instances.iter().map(Instance::log).collect();
                panic!(
                    "{who}: no event within {timeout:?}\ninstances:\n{}\nnginx:\n{}",
                    logs.join("\n---\n"),
                    self.nginx.error_log()
                );
            }
        }
    }
}

/// Inserts a notification for `user`.
async fn notify(admin: &tokio_postgres::Client, tenant: &str, user: &str, title: &str) {
    admin
        .execute(
            "insert into notifications (tenant_id, user_id, title)
             values ($1::text::uuid, $2::text::uuid, $3)",
            &[&tenant, &user, &title],
        )
        .await
        .unwrap();
}

/// Waits (bounded) until the instances have registered `n` subscriptions
/// between them (each logs every registration): only then are the writes
/// certain to reach every subscriber.
async fn wait_for_subscriptions(instances: &[Instance], n: u64) {
    let mut lines: Vec<_> = instances.iter().map(Instance::log_lines).collect();
    let registered = async {
        loop {
            let sum: usize = instances.iter().map(Instance::registered).sum();
            if sum as u64 == n {
                return;
            }
            let next = lines.iter_mut().map(|l| Box::pin(l.changed()));
            let (line, _, _) = futures::future::select_all(next).await;
            if line.is_err() {
                let logs: Vec<String> = instances.iter().map(Instance::log).collect();
                panic!("an instance exited:\n{}", logs.join("\n---\n"));
            }
        }
    };
    if tokio::time::timeout(WAIT, registered).await.is_err() {
        let logs: Vec<String> = instances.iter().map(Instance::log).collect();
        panic!(
            "{n} subscriptions not registered within {WAIT:?}:\n{}",
            logs.join("\n---\n")
        );
    }
}
