//! deploy/k8s/, compose.yaml and deploy/nginx.conf, checked without a
//! cluster: the Kubernetes manifests against the API's JSON schemas
//! (kubernetes-validate, strict, installed by scripts/prereq-k8s-validate.sh
//! into .venv-k8s/), then against each other, pgherald and the image
//! ([`manifest_checks`]); compose.yaml and nginx.conf against each other
//! ([`compose_checks`]). Planted breaks show that each check refuses.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::compose_checks;
use super::manifest_checks::{self, Docs};
use super::{ScratchDir, repo_file};

/// The Kubernetes version the manifests are validated for (the oldest one
/// still supported upstream when they were written).
const KUBERNETES_VERSION: &str = "1.30.0";

/// A program of the venv scripts/prereq-k8s-validate.sh makes.
fn venv(program: &str) -> PathBuf {
    let path = repo_file(".venv-k8s/bin").join(program);
    assert!(
        path.exists(),
        "{} missing: run `make test` (scripts/prereq-k8s-validate.sh installs kubernetes-validate)",
        path.display()
    );
    path
}

/// The manifests of `dir` (the Kustomization aside: it is kubectl's, not the API's).
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("manifest directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// Validates the manifests of each of `dirs` against the schemas, in one
/// run of the validator (it starts slowly): per directory, its report (empty
/// when valid).
fn schema_reports(dirs: &[&Path]) -> Vec<String> {
    let output = std::process::Command::new(venv("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .args(dirs.iter().flat_map(|d| manifest_files(d)))
        .output()
        .expect("kubernetes-validate runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<String> = dirs
        .iter()
        .map(|dir| {
            let prefix = format!("{}/", dir.display());
            report
                .lines()
                .filter(|l| l.contains(&prefix))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    // A failure must be attributed to some directory.
    assert!(
        output.status.success() || reports.iter().any(|r| !r.is_empty()),
        "kubernetes-validate failed: {report}"
    );
    reports
}

/// Every YAML document of `files`, as JSON, with its file's name (PyYAML of
/// the same venv: YAML anchors and merge keys included).
fn load_yaml(files: &[PathBuf]) -> Vec<(String, Value)> {
    let output = std::process::Command::new(venv("python"))
        .arg("-c")
        .arg(
            "import json, os, sys, yaml\n\
             json.dump([[os.path.basename(f), d] for f in sys.argv[1:]\n\
                        for d in yaml.safe_load_all(open(f)) if d is not None], sys.stdout)",
        )
        .args(files)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "YAML does not parse: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs: Vec<(String, Value)> =
        serde_json::from_slice(&output.stdout).expect("JSON from python");
    docs
}

fn image() -> manifest_checks::Image {
    manifest_checks::image_facts(
        &std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile"),
    )
}

/// Schema and consistency problems of the manifests in each of `dirs`.
fn all_problems(dirs: &[&Path]) -> Vec<Vec<String>> {
    let image = image();
    let reports = schema_reports(dirs);
    dirs.iter()
        .zip(reports)
        .map(|(dir, report)| {
            let mut problems = Vec::new();
            if !report.is_empty() {
                problems.push(format!("schema: {report}"));
            }
            let docs: Vec<(String, Value)> = load_yaml(&manifest_files(dir));
            problems.extend(manifest_checks::problems(&docs as &Docs, &image));
            problems
        })
        .collect()
}

#[test]
fn the_kubernetes_manifests_pass_the_schemas_and_agree_with_each_other_pgherald_and_the_image() {
    let problems = all_problems(&[&repo_file("deploy/k8s")]).remove(0);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The Kustomization names files that exist, and leaves out what must not
    // be applied with the rest: the migrate Job (first) and the example Secrets.
    let kustomization = load_yaml(&[repo_file("deploy/k8s/kustomization.yaml")]);
    let resources = kustomization[0].1["resources"]
        .as_array()
        .expect("resources")
        .clone();
    for file in &resources {
        let file = file.as_str().unwrap();
        assert!(
            repo_file("deploy/k8s").join(file).exists(),
            "{file} listed but missing"
        );
        assert!(
            !file.contains("job") && !file.contains("secret"),
            "{file} must be applied on its own"
        );
    }
}

#[test]
fn compose_and_nginx_describe_the_same_cluster() {
    let compose = load_yaml(&[repo_file("compose.yaml")]);
    let nginx = std::fs::read_to_string(repo_file("deploy/nginx.conf")).unwrap();
    let problems = compose_checks::problems(&compose[0].1, &nginx, &image());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A break planted in one file: `from` (found exactly once) becomes `to`,
/// and a problem mentioning `reported` must come out.
struct Break {
    file: &'static str,
    from: &'static str,
    to: &'static str,
    reported: &'static str,
}

const K8S_BREAKS: &[Break] = &[
    Break {
        file: "deployment.yaml",
        from: "path: /readyz",
        to: "path: /ready",
        reported: "readinessProbe path",
    },
    Break {
        file: "deployment.yaml",
        from: "path: /healthz",
        to: "path: /health",
        reported: "livenessProbe path",
    },
    Break {
        file: "deployment.yaml",
        from: "  selector:\n    matchLabels:\n      app.kubernetes.io/name: pgherald\n      app.kubernetes.io/component: server\n",
        to: "",
        reported: "'selector' is a required property",
    },
    Break {
        file: "deployment.yaml",
        from: "containerPort: 8080",
        to: "containerPort: 8081",
        reported: "is not HERALD_LISTEN's",
    },
    Break {
        file: "deployment.yaml",
        from: "replicas: 2",
        to: "replicas: 1",
        reported: "fewer than 2 replicas",
    },
    Break {
        file: "deployment.yaml",
        from: "command: [\"sleep\", \"10\"]",
        to: "command: [\"sleep\", \"40\"]",
        reported: "terminationGracePeriodSeconds",
    },
    Break {
        file: "deployment.yaml",
        from: "runAsNonRoot: true",
        to: "runAsNonRoot: false",
        reported: "Deployment: runAsNonRoot",
    },
    Break {
        file: "deployment.yaml",
        from: "readOnlyRootFilesystem: true",
        to: "readOnlyRootFilesystem: false",
        reported: "Deployment: readOnlyRootFilesystem",
    },
    Break {
        file: "deployment.yaml",
        from: "readinessProbe:",
        to: "readinesProbe:",
        reported: "readinesProbe",
    },
    Break {
        file: "deployment.yaml",
        from: "name: pgherald\n            - secretRef:",
        to: "name: pgherald-config\n            - secretRef:",
        reported: "reads ConfigMap pgherald-config",
    },
    Break {
        file: "service.yaml",
        from: "targetPort: http",
        to: "targetPort: web",
        reported: "Service: targetPort",
    },
    Break {
        file: "service.yaml",
        from: "component: server",
        to: "component: serve",
        reported: "Service: selector",
    },
    Break {
        file: "pdb.yaml",
        from: "component: server",
        to: "component: migrate",
        reported: "PodDisruptionBudget: selector",
    },
    Break {
        file: "migrate-job.yaml",
        from: "args: [\"migrate\"]",
        to: "args: [\"serve\"]",
        reported: "not `pgherald migrate`",
    },
    Break {
        file: "configmap.yaml",
        from: "\"0.0.0.0:8080\"",
        to: "\"127.0.0.1:9090\"",
        reported: "HERALD_LISTEN port",
    },
];

/// `text` with `from` (which must occur exactly once) replaced by `to`.
fn plant(text: &str, b: &Break) -> String {
    assert_eq!(
        text.matches(b.from).count(),
        1,
        "{}: {:?} must occur once",
        b.file,
        b.from
    );
    text.replacen(b.from, b.to, 1)
}

#[test]
fn every_planted_break_of_a_kubernetes_manifest_is_refused() {
    let source = repo_file("deploy/k8s");
    let scratch = ScratchDir::new("k8s-breaks");
    let mut copies = Vec::new();
    for (i, b) in K8S_BREAKS.iter().enumerate() {
        let copy = scratch.path().join(i.to_string());
        std::fs::create_dir(&copy).unwrap();
        for file in manifest_files(&source) {
            std::fs::copy(&file, copy.join(file.file_name().unwrap())).unwrap();
        }
        let target = copy.join(b.file);
        let text = std::fs::read_to_string(&target).unwrap();
        std::fs::write(&target, plant(&text, b)).unwrap();
        copies.push(copy);
    }
    let dirs: Vec<&Path> = copies.iter().map(PathBuf::as_path).collect();
    for (b, problems) in K8S_BREAKS.iter().zip(all_problems(&dirs)) {
        assert_refused(b, &problems);
    }
}

#[test]
fn every_planted_break_of_compose_or_nginx_is_refused() {
    let compose_text = std::fs::read_to_string(repo_file("compose.yaml")).unwrap();
    let nginx_text = std::fs::read_to_string(repo_file("deploy/nginx.conf")).unwrap();
    let breaks = [
        Break {
            file: "compose.yaml",
            from: "command: [\"migrate\", \"--demo\"]",
            to: "command: [\"migrate\"]",
            reported: "--demo",
        },
        Break {
            file: "compose.yaml",
            from: "condition: service_completed_successfully",
            to: "condition: service_started",
            reported: "service_completed_successfully",
        },
        Break {
            file: "compose.yaml",
            from: "./deploy/nginx.conf:",
            to: "./nginx.conf:",
            reported: "deploy/nginx.conf",
        },
        Break {
            file: "compose.yaml",
            from: "  pgherald-2:\n    <<: *pgherald\n",
            to: "",
            reported: "at least two",
        },
        Break {
            file: "nginx.conf",
            from: "    server pgherald-2:8080",
            to: "    server pgherald-3:8080",
            reported: "upstream",
        },
        Break {
            file: "nginx.conf",
            from: "    zone pgherald 64k;\n",
            to: "    zone pgherald 64k;\n    ip_hash;\n",
            reported: "sticky",
        },
        Break {
            file: "nginx.conf",
            from: "proxy_set_header Upgrade $http_upgrade;",
            to: "",
            reported: "Upgrade",
        },
        Break {
            file: "nginx.conf",
            from: "proxy_read_timeout 1h;",
            to: "proxy_read_timeout 30s;",
            reported: "proxy_read_timeout",
        },
    ];
    for b in &breaks {
        let (compose, nginx) = if b.file == "compose.yaml" {
            let scratch = ScratchDir::new("compose-break");
            let file = scratch.path().join("compose.yaml");
            std::fs::write(&file, plant(&compose_text, b)).unwrap();
            (load_yaml(&[file]), nginx_text.clone())
        } else {
            (
                load_yaml(&[repo_file("compose.yaml")]),
                plant(&nginx_text, b),
            )
        };
        let problems = compose_checks::problems(&compose[0].1, &nginx, &image());
        assert_refused(b, &problems);
    }
}

/// Fails unless the checks reported the problem break `b` plants.
fn assert_refused(b: &Break, problems: &[String]) {
    assert!(
        problems.iter().any(|p| p.contains(b.reported)),
        "{} with {:?} -> {:?} passed (expected a problem with {:?}); found:\n{}",
        b.file,
        b.from,
        b.to,
        b.reported,
        problems.join("\n")
    );
}
