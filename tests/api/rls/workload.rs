//! A mixed workload of inserts, updates, moves and deletes over four tenants,
//! checked against a model: each user receives exactly the versions of
//! documents in its tenants, in commit order.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{assert_only_tenants, watch};
use crate::helpers::{Protocol, spawn_app, title_of};

/// One write of the mixed workload below, on documents named by key.
enum Write {
    Insert(&'static str, &'static str, &'static str),
    /// Sets tenant and title (a move when the tenant changes).
    Update(&'static str, &'static str, &'static str),
    Delete(&'static str),
}

#[tokio::test]
async fn nobody_ever_receives_a_version_of_a_document_they_could_not_read() {
    use Write::{Delete, Insert, Update};

    let app = spawn_app().await;
    let mut tenant_ids: BTreeMap<&str, String> = BTreeMap::new();
    for name in ["Acme", "Globex", "Initech", "Lobby"] {
        tenant_ids.insert(name, app.tenant(name).await);
    }
    let tenant_name: BTreeMap<String, &str> =
        tenant_ids.iter().map(|(n, id)| (id.clone(), *n)).collect();
    // Everyone is in Lobby, where the last document is written.
    let users: [(&str, &[&str], Protocol); 5] = [
        ("alice", &["Acme", "Lobby"], Protocol::Transport),
        ("gina", &["Globex", "Lobby"], Protocol::Transport),
        ("mia", &["Acme", "Globex", "Lobby"], Protocol::Legacy),
        ("ivan", &["Initech", "Lobby"], Protocol::Legacy),
        ("nora", &["Lobby"], Protocol::Transport),
    ];
    let mut clients = Vec::new();
    for (who, tenants, protocol) in &users {
        let ids: Vec<&str> = tenants.iter().map(|t| tenant_ids[t].as_str()).collect();
        let id = app.user(&format!("{who}@test"), &ids).await;
        clients.push(watch(&app, &id, who, "documents", *protocol).await);
    }
    app.wait_for_subscriptions(users.len()).await;
    // Memberships are judged per batch: the listener reads them before the
    // documents are written, so no batch holds both a grant and a write the
    // model expects it to precede.
    app.wait_until_read_so_far().await;

    let transactions: Vec<Vec<Write>> = vec![
        vec![
            Insert("k1", "Acme", "a1"),
            Insert("k2", "Globex", "g1"),
            Insert("k3", "Initech", "i1"),
        ],
        vec![Update("k1", "Acme", "a1-v2")],
        vec![Update("k1", "Globex", "a1-in-globex")],
        vec![
            Update("k2", "Initech", "g1-in-initech"),
            Update("k3", "Initech", "i1-v2"),
        ],
        vec![Update("k3", "Acme", "i1-in-acme"), Delete("k1")],
        vec![Insert("k4", "Acme", "a2"), Delete("k2")],
        vec![
            Update("k4", "Initech", "a2-in-initech"),
            Update("k3", "Globex", "i1-in-globex"),
        ],
        vec![Update("k3", "Globex", "i1-v3"), Delete("k4")],
        vec![Delete("k3")],
        vec![Insert("end", "Lobby", "end")],
    ];

    // The model: each event as (op, new (tenant, title), old (tenant, title)).
    type Version = (&'static str, &'static str);
    let mut state: BTreeMap<&str, Version> = BTreeMap::new();
    let mut events: Vec<(&str, Option<Version>, Option<Version>)> = Vec::new();
    for tx in &transactions {
        let mut sql = String::from("begin;\n");
        for w in tx {
            match *w {
                Insert(key, tenant, title) => {
                    sql += &format!(
                        "insert into documents (id, tenant_id, title) values (md5('{key}')::uuid, '{}', '{title}');\n",
                        tenant_ids[tenant]
                    );
                    state.insert(key, (tenant, title));
                    events.push(("INSERT", Some((tenant, title)), None));
                }
                Update(key, tenant, title) => {
                    sql += &format!(
                        "update documents set tenant_id = '{}', title = '{title}' where id = md5('{key}')::uuid;\n",
                        tenant_ids[tenant]
                    );
                    let old = state.insert(key, (tenant, title));
                    events.push(("UPDATE", Some((tenant, title)), old));
                }
                Delete(key) => {
                    sql += &format!("delete from documents where id = md5('{key}')::uuid;\n");
                    let old = state.remove(key);
                    events.push(("DELETE", None, old));
                }
            }
        }
        sql += "commit;";
        app.sql(&sql).await;
    }

    type Seen = (String, Option<(String, String)>, Option<(String, String)>);
    for (c, (who, tenants, _)) in clients.iter_mut().zip(&users) {
        let got = c.events_until("c", |e| title_of(e) == "end").await;
        let allowed: Vec<&str> = tenants.iter().map(|t| tenant_ids[t].as_str()).collect();
        assert_only_tenants(who, &got, &allowed);

        let visible = |v: &Option<Version>| v.filter(|(t, _)| tenants.contains(t));
        let owned = |v: Option<Version>| v.map(|(t, n)| (t.to_owned(), n.to_owned()));
        let expected: Vec<Seen> = events
            .iter()
            .filter_map(|(op, new, old)| {
                let (new, old) = (visible(new), visible(old));
                (new.is_some() || old.is_some()).then(|| (op.to_string(), owned(new), owned(old)))
            })
            .collect();
        let image = |i: &Value| -> Option<(String, String)> {
            (!i.is_null()).then(|| {
                let tenant = i["tenant_id"].as_str().unwrap_or_default();
                (
                    tenant_name
                        .get(tenant)
                        .copied()
                        .unwrap_or(tenant)
                        .to_owned(),
                    i["title"].as_str().unwrap_or_default().to_owned(),
                )
            })
        };
        let seen: Vec<Seen> = got
            .iter()
            .map(|e| {
                (
                    e["op"].as_str().unwrap_or_default().to_owned(),
                    image(&e["row"]),
                    image(&e["old"]),
                )
            })
            .collect();
        assert_eq!(seen, expected, "{who} (in {tenants:?})");
    }
}
