//! Observability: `/metrics` as Prometheus reads it (families, labels,
//! histograms, the outbox gauges, the listener's reconnects), JSON logs that
//! never show a token or a row, OTLP traces, and the Grafana dashboard's
//! queries against what an instance exports.

mod dashboard;
mod logs;
mod metrics;
mod process;
#[cfg(feature = "otlp")]
mod traces;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::helpers::{TestApp, WAIT};

/// One scrape of `/metrics`, read line by line.
pub struct Scrape {
    /// The text as served.
    pub text: String,
    /// `# HELP` text per family.
    pub help: BTreeMap<String, String>,
    /// `# TYPE` per family.
    pub types: BTreeMap<String, String>,
    /// Every sample: name, labels as written (without braces), value.
    pub samples: Vec<(String, String, f64)>,
}

impl Scrape {
    /// Scrapes `app`.
    pub async fn of(app: &TestApp) -> Scrape {
        Scrape::url(&app.http_url).await
    }

    /// Scrapes the instance at `http_url`.
    pub async fn url(http_url: &str) -> Scrape {
        let response = reqwest::get(format!("{http_url}/metrics")).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        Scrape::parse(response.text().await.unwrap())
    }

    fn parse(text: String) -> Scrape {
        let mut help = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap();
                help.insert(name.to_owned(), text.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_owned(), kind.to_owned());
            } else if !line.is_empty() && !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.strip_suffix('}').unwrap()),
                    None => (series, ""),
                };
                let value = value.parse().unwrap_or_else(|_| panic!("{line}"));
                samples.push((name.to_owned(), labels.to_owned(), value));
            }
        }
        Scrape {
            text,
            help,
            types,
            samples,
        }
    }

    /// The value of the sample `name` with exactly `labels` (as written,
    /// e.g. `reason="slow_consumer"`; "" for none).
    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
    }

    /// [`Scrape::value`], which must exist.
    pub fn get(&self, name: &str, labels: &str) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{}", self.text))
    }

    /// The names of every sample.
    pub fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    /// The family a sample name belongs to (histogram samples carry a
    /// suffix).
    pub fn family_of<'a>(&self, name: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self.types.get(base).is_some_and(|t| t == "histogram") {
                    return base;
                }
            }
        }
        name
    }
}

/// Scrapes `app` until `check` holds (bounded by [`WAIT`]); returns that
/// scrape. Values read at scrape from the database are refreshed at most
/// once a second, hence polling.
pub async fn scrape_until(app: &TestApp, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    Scrape::until(&app.http_url, what, check).await
}

impl Scrape {
    /// Scrapes the instance at `http_url` until `check` holds (bounded).
    pub async fn until(http_url: &str, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        loop {
            let scrape = Scrape::url(http_url).await;
            if check(&scrape) {
                return scrape;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what} in\n{}",
                scrape.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
