//! Structure-aware: Deployments built from pieces of the real grammar
//! (labels, purge annotations, image references of every form, stale or
//! tampered stamps), through the same entry point as `validate`. Beyond "no
//! panic", every mutation must be idempotent and every job name at most 63
//! characters.
#![no_main]

use arbitrary::Arbitrary;
use cache_buster::admission::{Outcome, evaluate};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
struct Input {
    operation: Operation,
    name: Text,
    site: Option<Text>,
    provider: Option<Text>,
    urls: Option<Text>,
    tags: Option<Text>,
    everything: Option<Text>,
    counted: Option<Text>,
    containers: Vec<(Text, Image)>,
    stale_stamp: Option<(Text, Text)>,
    settings: Option<Settings>,
}

#[derive(Arbitrary, Debug)]
enum Operation {
    Create,
    Update,
    Delete,
}

/// Mostly plausible values, sometimes anything.
#[derive(Arbitrary, Debug)]
enum Text {
    Name(u8),
    Url(u8),
    Any(String),
}

impl Text {
    fn render(&self) -> String {
        match self {
            Text::Name(n) => format!("site-{n}"),
            Text::Url(n) => format!("https://www.example.com/{n}, https://cdn.example.com/a?b={n}"),
            Text::Any(text) => text.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Image {
    registry: Option<(String, Option<u16>)>,
    path: Vec<String>,
    tag: Option<String>,
    digest: Option<[u8; 32]>,
    raw: Option<String>,
}

impl Image {
    fn render(&self) -> String {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut image = String::new();
        if let Some((host, port)) = &self.registry {
            image.push_str(host);
            if let Some(port) = port {
                image.push_str(&format!(":{port}"));
            }
            image.push('/');
        }
        image.push_str(&self.path.join("/"));
        if let Some(tag) = &self.tag {
            image.push_str(&format!(":{tag}"));
        }
        if let Some(digest) = &self.digest {
            image.push_str("@sha256:");
            image.extend(digest.iter().map(|b| format!("{b:02x}")));
        }
        image
    }
}

#[derive(Arbitrary, Debug)]
struct Settings {
    provider: u8,
    batch: u16,
    prefix: bool,
}

fn provider_name(choice: u8) -> &'static str {
    match choice % 3 {
        0 => "cloudflare",
        1 => "fastly",
        _ => "webhook",
    }
}

fuzz_target!(|input: Input| {
    let mut labels = serde_json::Map::new();
    if let Some(site) = &input.site {
        labels.insert("cache-buster.io/site".into(), site.render().into());
    }
    let mut annotations = serde_json::Map::new();
    for (key, value) in [
        ("cache-buster.io/provider", &input.provider),
        ("cache-buster.io/urls", &input.urls),
        ("cache-buster.io/tags", &input.tags),
        ("cache-buster.io/everything", &input.everything),
        ("cache-buster.io/container", &input.counted),
    ] {
        if let Some(value) = value {
            annotations.insert(key.into(), value.render().into());
        }
    }
    if let Some((hash, job)) = &input.stale_stamp {
        annotations.insert("cache-buster.io/image-hash".into(), hash.render().into());
        annotations.insert("cache-buster.io/job".into(), job.render().into());
    }
    let containers: Vec<Value> = input
        .containers
        .iter()
        .map(|(name, image)| json!({"name": name.render(), "image": image.render()}))
        .collect();
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": input.name.render(), "namespace": "web", "labels": labels, "annotations": annotations},
        "spec": {"template": {"spec": {"containers": containers}}}
    });
    let settings = match &input.settings {
        None => json!({}),
        Some(s) => json!({
            "provider": provider_name(s.provider),
            "cloudflareBatchSize": 1 + i64::from(s.batch % 500),
            "annotationPrefix": if s.prefix { "cache-buster.io" } else { "purge.example.com" },
        }),
    };
    let operation = match input.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    };
    let payload = |object: &Value| {
        serde_json::to_vec(&json!({"settings": settings, "request": {
            "uid": "fuzz", "operation": operation, "namespace": "web",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "object": object, "oldObject": object}}))
        .expect("payload")
    };

    match evaluate(&payload(&object)) {
        Outcome::Reject(error) => assert!(!error.to_string().is_empty()),
        Outcome::Accept { .. } => {}
        Outcome::Mutate { object: mutated, .. } => {
            let mutated: Value = serde_json::from_str(&mutated).expect("the mutated object is JSON");
            for key in ["cache-buster.io/job-name", "purge.example.com/job-name"] {
                if let Some(name) = mutated["metadata"]["annotations"][key].as_str() {
                    assert!(name.len() <= 63, "job name {name:?} is longer than 63");
                }
            }
            match evaluate(&payload(&mutated)) {
                Outcome::Accept { .. } => {}
                other => panic!("not idempotent: evaluating the mutated object gave {other:?}"),
            }
        }
    }
});
