//! compose.yaml and deploy/nginx.conf against each other and pgherald: the
//! one-shot migrate before the instances, at least two instances, nginx
//! mounting the file, whose upstream lists exactly those instances without
//! stickiness and passes WebSocket upgrades on with long timeouts. (No
//! Docker engine runs where the tests run; scripts/cluster-test.sh runs the
//! stack where one does.)

use serde_json::Value;

use super::manifest_checks::Image;

/// Every problem found, one line each.
pub fn problems(compose: &Value, nginx: &str, image: &Image) -> Vec<String> {
    let mut out = Vec::new();
    let Some(services) = compose["services"].as_object() else {
        return vec!["compose.yaml: no services".into()];
    };
    let command = |s: &Value| -> Vec<String> {
        s["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    };
    let condition =
        |s: &Value, on: &str| s["depends_on"][on]["condition"].as_str().map(str::to_owned);

    // Postgres, and the one-shot migrate after it.
    if !services.values().any(|s| {
        s["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("postgres:"))
    }) {
        out.push("compose.yaml: no service runs the postgres image".into());
    }
    let migrate = services
        .iter()
        .find(|(_, s)| command(s).first().is_some_and(|c| c == "migrate"));
    let migrate_name = match migrate {
        None => {
            out.push("compose.yaml: no service runs `pgherald migrate --demo`".into());
            String::new()
        }
        Some((name, s)) => {
            if !command(s).iter().any(|c| c == "--demo") {
                out.push(format!(
                    "compose.yaml: {name} runs {:?} without --demo",
                    command(s)
                ));
            }
            for needed in ["HERALD_ADMIN_DATABASE_URL", "DATABASE_URL"] {
                if s["environment"][needed].as_str().is_none() {
                    out.push(format!("compose.yaml: {name} does not set {needed}"));
                }
            }
            if condition(s, "postgres").as_deref() != Some("service_healthy") {
                out.push(format!(
                    "compose.yaml: {name} does not wait for postgres to be healthy"
                ));
            }
            name.clone()
        }
    };
    let migrate_login = migrate.map(|(_, s)| s["environment"]["DATABASE_URL"].clone());

    // The instances: after migrate, logging in as migrate set the password.
    let instances: Vec<&String> = services
        .iter()
        .filter(|(_, s)| command(s).first().is_some_and(|c| c == "serve"))
        .map(|(name, _)| name)
        .collect();
    if instances.len() < 2 {
        out.push(format!(
            "compose.yaml: at least two pgherald instances are needed, found {}",
            instances.len()
        ));
    }
    for name in &instances {
        let s = &services[name.as_str()];
        if condition(s, &migrate_name).as_deref() != Some("service_completed_successfully") {
            out.push(format!(
                "compose.yaml: {name} does not wait for {migrate_name} (condition service_completed_successfully)"
            ));
        }
        if Some(&s["environment"]["DATABASE_URL"]) != migrate_login.as_ref() {
            out.push(format!(
                "compose.yaml: {name}'s DATABASE_URL is not the one migrate set the password from"
            ));
        }
        if s["environment"]["HERALD_JWT_SECRET"].as_str().is_none() {
            out.push(format!("compose.yaml: {name} has no HERALD_JWT_SECRET"));
        }
    }

    // nginx mounts deploy/nginx.conf, which lists exactly the instances.
    let proxy = services
        .iter()
        .find(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nginx")));
    match proxy {
        None => out.push("compose.yaml: no nginx service".into()),
        Some((name, s)) => {
            let mounted = s["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|v| v.starts_with("./deploy/nginx.conf:"));
            if !mounted {
                out.push(format!(
                    "compose.yaml: {name} does not mount ./deploy/nginx.conf"
                ));
            }
        }
    }
    let mut upstream = upstream_servers(nginx);
    upstream.sort();
    let mut expected: Vec<String> = instances
        .iter()
        .map(|n| format!("{n}:{}", image.port))
        .collect();
    expected.sort();
    if upstream != expected {
        out.push(format!(
            "nginx.conf: upstream servers {upstream:?} are not the instances {expected:?}"
        ));
    }

    // How nginx proxies.
    let code: Vec<&str> = nginx
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    let has = |prefix: &str| code.iter().any(|l| l.starts_with(prefix));
    for sticky in ["ip_hash", "hash ", "sticky"] {
        if has(sticky) {
            out.push(format!("nginx.conf: `{sticky}` makes sessions sticky"));
        }
    }
    for needed in [
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
    ] {
        if !has(needed) {
            out.push(format!(
                "nginx.conf: `{needed}` missing (WebSocket Upgrade)"
            ));
        }
    }
    for timeout in ["proxy_read_timeout", "proxy_send_timeout"] {
        let secs = code
            .iter()
            .find_map(|l| l.strip_prefix(timeout))
            .and_then(|v| nginx_seconds(v.trim().trim_end_matches(';')));
        // nginx's default is 60 s; pings (12 s by default) keep a socket
        // busy, but a longer HERALD_PING_INTERVAL must not be cut off.
        if secs.is_none_or(|s| s < 600) {
            out.push(format!(
                "nginx.conf: {timeout} is missing or under 10 minutes ({secs:?} s)"
            ));
        }
    }
    out
}

/// The `host:port` of each `server` line of `upstream pgherald`.
fn upstream_servers(nginx: &str) -> Vec<String> {
    let mut inside = false;
    let mut servers = Vec::new();
    for line in nginx.lines() {
        let code = line.split('#').next().unwrap_or_default().trim();
        if code.starts_with("upstream pgherald") {
            inside = true;
        } else if inside && code == "}" {
            inside = false;
        } else if inside && code.starts_with("server ") {
            if let Some(addr) = code.split_whitespace().nth(1) {
                servers.push(addr.trim_end_matches(';').to_owned());
            }
        }
    }
    servers
}

/// An nginx time (`90`, `30s`, `10m`, `1h`, `1d`) in seconds.
fn nginx_seconds(value: &str) -> Option<u64> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    let unit = match &value[digits.len()..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(n * unit)
}
