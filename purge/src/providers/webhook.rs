//! Webhook: one `POST` of SPEC §5's payload to the URL in the Secret,
//! with a bearer token only when there is one.
use crate::catalog::Info;
use crate::flags::{Context, RenderFlags, Rendering};
use crate::targets::Target;

pub const INFO: Info = Info {
    name: "webhook",
    secret_keys: &["WEBHOOK_URL", "WEBHOOK_TOKEN"],
    optional_keys: &["WEBHOOK_TOKEN"],
    accepts: &[
        Target::Urls,
        Target::Prefixes,
        Target::Hosts,
        Target::Tags,
        Target::Everything,
    ],
    needs_no_target: true,
    reads_the_api: false,
    needs_job_uid: false,
    completion_seconds: 0,
    pod_labels: &[],
    pod_annotations: &[],
};

/// It is told the whole context of the Job (SPEC §5's payload) and has
/// no flag of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "client", derive(clap::Args), group(skip))]
pub struct Flags {}

impl RenderFlags for Flags {
    fn render(&self, to: &mut Rendering<'_>) {
        for field in Context::ALL {
            to.context(field);
        }
    }
}

#[cfg(feature = "client")]
pub use requests::Webhook;

#[cfg(feature = "client")]
mod requests {
    use crate::cdn::{Cdn, Layer};
    use crate::flags::JobContext;
    use crate::credentials::Credentials;
    use crate::options::WebhookPayload;
    use crate::request::{PlannedRequest, Purges, bearer, json_request};
    use crate::targets::PurgeTargets;

    pub struct Webhook;

    impl Cdn for Webhook {
        /// The receiver's `id`, if it answers one.
        fn purge_ids(&self, answer: &str) -> Vec<String> {
            crate::cdn::top_level_id(answer)
        }

        fn plan(&self, layer: &Layer<'_>) -> Vec<PlannedRequest> {
            vec![webhook_request(
                layer.targets,
                layer.credentials,
                &layer.options.context,
            )]
        }
    }

    fn webhook_request(
        targets: &PurgeTargets,
        credentials: &Credentials,
        context: &JobContext,
    ) -> PlannedRequest {
        let payload = WebhookPayload {
            site: &context.site,
            namespace: &context.namespace,
            deployment: &context.deployment,
            image: context.image.clone(),
            image_hash: &context.image_hash,
            job_name: &context.job_name,
            urls: &targets.urls,
            prefixes: &targets.prefixes,
            hosts: &targets.hosts,
            tags: &targets.tags,
            everything: targets.everything,
        };
        let mut headers = Vec::new();
        // No token, no Authorization header: never `Bearer ` with nothing after it.
        if let Some(token) = credentials.optional("WEBHOOK_TOKEN") {
            headers.push(bearer(token));
        }
        json_request(
            credentials.value("WEBHOOK_URL").to_owned(),
            headers,
            serde_json::to_value(&payload).unwrap_or_default(),
            Purges::whole("the webhook"),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::Webhook;
        use crate::cdn::Cdn;

        #[test]
        fn the_purge_id_is_the_receivers_id_if_any() {
            assert_eq!(Webhook.purge_ids(r#"{"id":"run-7"}"#), ["run-7"]);
            assert!(Webhook.purge_ids("accepted").is_empty());
        }

        use crate::flags::JobContext;
        use crate::testing::*;

        use crate::providers::Provider;
        use crate::request::header;
        use crate::targets::PurgeTargets;
        use serde_json::json;

        #[test]
        fn the_webhook_gets_the_spec_payload_and_a_token_only_when_there_is_one() {
            let targets = PurgeTargets {
                tags: vec!["shop".into()],
                ..PurgeTargets::default()
            };
            let context = JobContext {
                site: "shop".into(),
                namespace: "web".into(),
                deployment: "shop".into(),
                image: "ghcr.io/acme/shop:1.4.3".into(),
                image_hash: "b4612648a6".into(),
                job_name: "shop-cache-buster-b4612648a6".into(),
            };
            let without = credentials(&[("WEBHOOK_URL", "https://hooks.example.test/purge")]);
            let requests = plan(
                Provider::Webhook,
                &targets,
                &without,
                &options(30),
                &context,
            )
            .unwrap();
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].url, "https://hooks.example.test/purge");
            assert!(
                !requests[0]
                    .headers
                    .iter()
                    .any(|(name, _)| *name == "Authorization")
            );
            assert_eq!(
                bodies(&requests)[0],
                json!({
                    "site": "shop", "namespace": "web", "deployment": "shop",
                    "image": "ghcr.io/acme/shop:1.4.3", "imageHash": "b4612648a6",
                    "jobName": "shop-cache-buster-b4612648a6",
                    "urls": [], "prefixes": [], "hosts": [], "tags": ["shop"], "everything": false
                })
            );
            let with = credentials(&[
                ("WEBHOOK_URL", "https://hooks.example.test/purge"),
                ("WEBHOOK_TOKEN", "s3cret"),
            ]);
            let requests =
                plan(Provider::Webhook, &targets, &with, &options(30), &context).unwrap();
            assert!(
                requests[0]
                    .headers
                    .contains(&header("Authorization", "Bearer s3cret"))
            );
        }
    }
}
