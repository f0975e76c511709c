//! What a schema cannot tell about deploy/k8s/: that the manifests agree with
//! each other (selectors and labels, ports, Secret and ConfigMap names), with
//! pgherald (probe paths, the listen port, how long shutdown takes) and with
//! the image (its user), and that they hold the settings deployment relies
//! on (replicas, non-root, read-only root). Each problem is one line.

use serde_json::Value;

/// The parsed manifests: (file name, document).
pub type Docs = [(String, Value)];

/// What pgherald's shutdown may take after SIGTERM: closing WebSockets
/// (each close write bounded by HERALD_WRITE_TIMEOUT, 10 s) while open HTTP
/// requests finish (a query bounded by HERALD_QUERY_TIMEOUT, 10 s, after up
/// to 10 s waiting for a pooled connection).
pub const SHUTDOWN_BOUND_SECS: i64 = 30;

/// The image's facts the manifests must match, read from the Dockerfile.
pub struct Image {
    /// The numeric `USER`.
    pub uid: i64,
    /// The port of its `HERALD_LISTEN`.
    pub port: i64,
}

/// Reads `USER` and `ENV HERALD_LISTEN` from the Dockerfile's text.
pub fn image_facts(dockerfile: &str) -> Image {
    let mut uid = None;
    let mut port = None;
    for line in dockerfile.lines().map(str::trim) {
        if let Some(user) = line.strip_prefix("USER ") {
            uid = user.split(':').next().and_then(|u| u.trim().parse().ok());
        }
        if let Some(listen) = line.strip_prefix("ENV HERALD_LISTEN=") {
            port = listen
                .rsplit(':')
                .next()
                .and_then(|p| p.trim().parse().ok());
        }
    }
    Image {
        uid: uid.expect("the Dockerfile sets a numeric USER"),
        port: port.expect("the Dockerfile sets ENV HERALD_LISTEN=host:port"),
    }
}

/// Every problem found, one line each (empty: all agree).
pub fn problems(docs: &Docs, image: &Image) -> Vec<String> {
    let mut out = Vec::new();
    let one = |kind: &str, out: &mut Vec<String>| -> Option<Value> {
        let found: Vec<&Value> = docs
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d["kind"] == kind)
            .collect();
        if found.len() != 1 {
            out.push(format!("expected one {kind}, found {}", found.len()));
            return None;
        }
        Some(found[0].clone())
    };
    let (Some(deployment), Some(service), Some(pdb), Some(job), Some(config)) = (
        one("Deployment", &mut out),
        one("Service", &mut out),
        one("PodDisruptionBudget", &mut out),
        one("Job", &mut out),
        one("ConfigMap", &mut out),
    ) else {
        return out;
    };
    let secrets: Vec<&str> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "Secret")
        .filter_map(|(_, d)| d["metadata"]["name"].as_str())
        .collect();

    // One namespace for everything namespaced.
    let namespaces: std::collections::BTreeSet<&str> = docs
        .iter()
        .filter(|(_, d)| d["kind"] != "Namespace")
        .map(|(_, d)| d["metadata"]["namespace"].as_str().unwrap_or("(none)"))
        .collect();
    if namespaces.len() != 1 {
        out.push(format!(
            "resources are in several namespaces: {namespaces:?}"
        ));
    }

    // The Deployment.
    let spec = &deployment["spec"];
    if spec["replicas"].as_i64().unwrap_or(1) < 2 {
        out.push("Deployment: fewer than 2 replicas".into());
    }
    let pod_labels = &spec["template"]["metadata"]["labels"];
    let selector = &spec["selector"]["matchLabels"];
    if !selects(selector, pod_labels) {
        out.push(format!(
            "Deployment: selector {selector} does not match its pods' labels {pod_labels}"
        ));
    }
    let pod = &spec["template"]["spec"];
    let Some(container) = pod["containers"].get(0) else {
        out.push("Deployment: no container".into());
        return out;
    };
    let listen_port = config["data"]["HERALD_LISTEN"]
        .as_str()
        .and_then(|l| l.rsplit(':').next()?.parse::<i64>().ok());
    if listen_port != Some(image.port) {
        out.push(format!(
            "ConfigMap: HERALD_LISTEN port {listen_port:?} is not the image's {}",
            image.port
        ));
    }
    let http_port = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "http");
    match http_port.and_then(|p| p["containerPort"].as_i64()) {
        Some(port) if Some(port) == listen_port => {}
        other => out.push(format!(
            "Deployment: the port named http ({other:?}) is not HERALD_LISTEN's ({listen_port:?})"
        )),
    }
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        if get["path"] != path {
            out.push(format!(
                "Deployment: {probe} path is {}, not {path}",
                get["path"]
            ));
        }
        if !names_port(&get["port"], http_port) {
            out.push(format!(
                "Deployment: {probe} port {} is not the container's http port",
                get["port"]
            ));
        }
    }
    let pre_stop = &container["lifecycle"]["preStop"];
    let sleep = pre_stop["sleep"]["seconds"].as_i64().or_else(|| {
        let command = pre_stop["exec"]["command"].as_array()?;
        match command.as_slice() {
            [cmd, secs] if cmd.as_str()?.ends_with("sleep") => secs.as_str()?.parse().ok(),
            _ => None,
        }
    });
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    match sleep {
        None => out.push("Deployment: no preStop sleep (new connections arrive until the endpoints update)".into()),
        Some(s) if s + SHUTDOWN_BOUND_SECS > grace => out.push(format!(
            "Deployment: terminationGracePeriodSeconds {grace} < preStop {s} s + shutdown {SHUTDOWN_BOUND_SECS} s"
        )),
        Some(_) => {}
    }
    check_security("Deployment", pod, container, image, &mut out);
    check_env_sources("Deployment", container, &config, &secrets, &mut out);

    // The Service reaches the Deployment's pods on the http port.
    if !selects(&service["spec"]["selector"], pod_labels) {
        out.push(format!(
            "Service: selector {} does not match the Deployment's pods {pod_labels}",
            service["spec"]["selector"]
        ));
    }
    if service["spec"]["sessionAffinity"]
        .as_str()
        .is_some_and(|a| a != "None")
    {
        out.push("Service: sessionAffinity set (no sticky sessions)".into());
    }
    for port in service["spec"]["ports"].as_array().into_iter().flatten() {
        if !names_port(&port["targetPort"], http_port) {
            out.push(format!(
                "Service: targetPort {} is not the container's http port",
                port["targetPort"]
            ));
        }
    }

    // The PDB covers exactly those pods.
    let pdb_selector = &pdb["spec"]["selector"]["matchLabels"];
    if pdb_selector != selector {
        out.push(format!(
            "PodDisruptionBudget: selector {pdb_selector} is not the Deployment's {selector}"
        ));
    }
    let budget_ok = match (&pdb["spec"]["minAvailable"], &pdb["spec"]["maxUnavailable"]) {
        (Value::Number(min), _) => min
            .as_i64()
            .is_some_and(|m| m >= 1 && m < spec["replicas"].as_i64().unwrap_or(1)),
        (_, Value::Number(max)) => max
            .as_i64()
            .is_some_and(|m| m >= 1 && m < spec["replicas"].as_i64().unwrap_or(1)),
        _ => true,
    };
    if !budget_ok {
        out.push(
            "PodDisruptionBudget: its budget blocks every drain or allows none to keep serving"
                .into(),
        );
    }

    // The migrate Job.
    let job_pod = &job["spec"]["template"]["spec"];
    let Some(migrate) = job_pod["containers"].get(0) else {
        out.push("Job: no container".into());
        return out;
    };
    if migrate["args"].get(0).and_then(Value::as_str) != Some("migrate") {
        out.push(format!(
            "Job: runs {}, not `pgherald migrate`",
            migrate["args"]
        ));
    }
    if !["Never", "OnFailure"].contains(&job_pod["restartPolicy"].as_str().unwrap_or("")) {
        out.push("Job: restartPolicy must be Never or OnFailure".into());
    }
    if migrate["image"] != container["image"] {
        out.push("Job: not the Deployment's image (migrations come with the binary)".into());
    }
    let env_names: Vec<&str> = migrate["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for needed in ["HERALD_ADMIN_DATABASE_URL", "DATABASE_URL"] {
        if !env_names.contains(&needed) {
            out.push(format!("Job: {needed} is not set"));
        }
    }
    check_security("Job", job_pod, migrate, image, &mut out);
    check_env_sources("Job", migrate, &config, &secrets, &mut out);
    out
}

/// Whether `selector` (matchLabels) selects pods labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

/// Whether `port` (a number or a name) is the container port `http`.
fn names_port(port: &Value, http: Option<&Value>) -> bool {
    http.is_some_and(|h| port == &h["name"] || port == &h["containerPort"])
}

fn check_security(
    what: &str,
    pod: &Value,
    container: &Value,
    image: &Image,
    out: &mut Vec<String>,
) {
    let pod_sc = &pod["securityContext"];
    let sc = &container["securityContext"];
    let non_root = sc["runAsNonRoot"]
        .as_bool()
        .or(pod_sc["runAsNonRoot"].as_bool());
    if non_root != Some(true) {
        out.push(format!("{what}: runAsNonRoot is not true"));
    }
    let uid = sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64());
    if uid.is_some_and(|u| u != image.uid) {
        out.push(format!(
            "{what}: runAsUser {uid:?} is not the image's user {}",
            image.uid
        ));
    }
    if sc["readOnlyRootFilesystem"] != true {
        out.push(format!("{what}: readOnlyRootFilesystem is not true"));
    }
    if sc["allowPrivilegeEscalation"] != false {
        out.push(format!("{what}: allowPrivilegeEscalation is not false"));
    }
}

/// Every ConfigMap and Secret a container reads exists in the manifests.
fn check_env_sources(
    what: &str,
    container: &Value,
    config: &Value,
    secrets: &[&str],
    out: &mut Vec<String>,
) {
    let config_name = config["metadata"]["name"].as_str().unwrap_or("");
    let mut refs = Vec::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        refs.push((&from["configMapRef"]["name"], &from["secretRef"]["name"]));
    }
    for env in container["env"].as_array().into_iter().flatten() {
        let source = &env["valueFrom"];
        refs.push((
            &source["configMapKeyRef"]["name"],
            &source["secretKeyRef"]["name"],
        ));
    }
    for (config_ref, secret_ref) in refs {
        if let Some(name) = config_ref.as_str() {
            if name != config_name {
                out.push(format!(
                    "{what}: reads ConfigMap {name}, which is not in the manifests"
                ));
            }
        }
        if let Some(name) = secret_ref.as_str() {
            if !secrets.contains(&name) {
                out.push(format!(
                    "{what}: reads Secret {name}, which is not in the manifests"
                ));
            }
        }
    }
}
