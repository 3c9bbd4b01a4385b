use super::*;
use serde_json::json;

/// A companion Job as the policy stamps it and the API server reports it.
fn job(name: &str, deployment: &str, image: &str, succeeded: bool, completed: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{
            "name": "purge",
            "args": ["purge", "--provider=cloudflare", "--content=/srv=https://shop.example.com/",
                     "--namespace=shop", format!("--deployment={deployment}"),
                     format!("--image={image}"), format!("--job-name={name}")]
        }]}}},
        "status": if succeeded {
            json!({"succeeded": 1, "completionTime": completed})
        } else {
            json!({"failed": 1})
        }
    }))
    .unwrap()
}

#[test]
fn the_newest_succeeded_job_of_the_deployment_names_the_image_last_purged() {
    let jobs = [
        job(
            "shop-cache-buster-aaaa",
            "shop",
            "registry.local/shop:a",
            true,
            "2026-12-01T10:00:00Z",
        ),
        job(
            "shop-cache-buster-cccc",
            "shop",
            "registry.local/shop:c",
            true,
            "2026-12-03T10:00:00Z",
        ),
        job(
            "shop-cache-buster-bbbb",
            "shop",
            "registry.local/shop:b",
            true,
            "2026-12-02T10:00:00Z",
        ),
    ];
    assert_eq!(
        newest_succeeded(&jobs, "shop", "shop-cache-buster-dddd").as_deref(),
        Some("registry.local/shop:c")
    );
}

#[test]
fn a_failed_job_is_passed_over_so_the_next_purge_covers_its_changes_too() {
    // A → B (B's purge failed) → C: C is compared with A.
    let jobs = [
        job(
            "shop-cache-buster-aaaa",
            "shop",
            "registry.local/shop:a",
            true,
            "2026-12-01T10:00:00Z",
        ),
        job(
            "shop-cache-buster-bbbb",
            "shop",
            "registry.local/shop:b",
            false,
            "",
        ),
    ];
    assert_eq!(
        newest_succeeded(&jobs, "shop", "shop-cache-buster-cccc").as_deref(),
        Some("registry.local/shop:a")
    );
}

#[test]
fn the_job_itself_and_another_deployments_jobs_do_not_count() {
    let jobs = [
        job(
            "shop-cache-buster-aaaa",
            "shop",
            "registry.local/shop:a",
            true,
            "2026-12-03T10:00:00Z",
        ),
        job(
            "blog-cache-buster-eeee",
            "blog",
            "registry.local/blog:e",
            true,
            "2026-12-04T10:00:00Z",
        ),
    ];
    assert_eq!(
        newest_succeeded(&jobs, "shop", "shop-cache-buster-aaaa"),
        None
    );
}

#[test]
fn the_first_rollout_has_nothing_to_compare_with() {
    assert_eq!(
        newest_succeeded(&[], "shop", "shop-cache-buster-aaaa"),
        None
    );
}
