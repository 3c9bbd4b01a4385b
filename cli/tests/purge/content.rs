//! `--content` (SPEC §9): what the purge sends for a site's content, and
//! what its outcome says of it. This release does not compare images yet:
//! every content purge falls back to the base URLs as prefixes, or to
//! everything where a layer cannot purge prefixes.

use super::*;

#[tokio::test]
async fn a_content_purge_falls_back_to_the_base_urls_as_prefixes_and_says_why() {
    let setup = setup().await;
    let ran = setup
        .purge_cloudflare(&[
            "--url=https://www.example.com/feed.xml",
            "--content=/usr/share/nginx/html=https://www.example.com/",
            "--content-max-urls=500",
        ])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        bodies(&setup.cdn.requests("api.cloudflare.com")),
        [
            json!({"files": ["https://www.example.com/feed.xml"]}),
            json!({"prefixes": ["www.example.com/"]})
        ]
    );
    assert_eq!(ran.outcome["purged"], json!(["1 URL", "1 prefix"]));
    assert_eq!(
        ran.outcome["content"],
        "content: fell back to the prefixes www.example.com/ (the images were not compared: \
         this release does not read images from their registry yet)"
    );
}

#[tokio::test]
async fn a_layer_without_prefixes_makes_the_fallback_everything() {
    let setup = setup().await;
    let secret = setup.secret(
        "layers",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-1"),
            ("CLOUDFLARE_API_TOKEN", CLOUDFLARE_TOKEN),
            ("FASTLY_SERVICE_ID", "service-1"),
            ("FASTLY_API_TOKEN", "fastly-token"),
        ],
    );
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=fastly,cloudflare",
                "--content=/srv=https://www.example.com/",
                "--warm",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        bodies(&setup.cdn.requests("api.cloudflare.com")),
        [json!({"purge_everything": true})]
    );
    let fastly = setup.cdn.requests("api.fastly.com");
    assert_eq!(fastly.len(), 1, "{fastly:?}");
    assert!(fastly[0].path.ends_with("/purge_all"), "{}", fastly[0].path);
    assert_eq!(
        ran.outcome["content"],
        "content: fell back to everything (the images were not compared: this release does not \
         read images from their registry yet); no page warmed: this release does not fetch pages yet"
    );
}

#[tokio::test]
async fn a_malformed_content_pair_is_refused_before_anything_is_sent() {
    let setup = setup().await;
    let ran = setup
        .purge_cloudflare(&["--content=html=https://www.example.com/"])
        .await;
    assert!(!ran.success);
    assert!(
        ran.output.contains("has a directory that is not absolute"),
        "{}",
        ran.output
    );
    assert!(setup.cdn.requests("api.cloudflare.com").is_empty());
}
