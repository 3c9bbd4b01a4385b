//! ECR's `GetAuthorizationToken`, as the double plays it (the AWS API's
//! JSON 1.1 protocol: `X-Amz-Target`, errors as `{"__type", "message"}`),
//! after the same SigV4 check as CloudFront's, scoped to the registry's
//! region and service `ecr`. Its token is base64 of `AWS:<password>`, the
//! password of the private test registry's account `AWS`.

use crate::aws::{Answer, verify_scoped};
use crate::recorded::Recorded;
use base64::Engine as _;
use serde_json::json;

pub const REGION: &str = "eu-west-1";
/// ECR's API in [`REGION`], which the CDN double answers for.
pub const API_HOST: &str = "api.ecr.eu-west-1.amazonaws.com";
/// The registry a test's images are named under (its address is the test
/// registry's).
pub const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
pub const USER: &str = "AWS";
pub const PASSWORD: &str = "ecr-registry-password-test-7d1e";

fn error(status: u16, kind: &str, message: &str) -> Answer {
    (
        status,
        json!({"__type": kind, "message": message}).to_string(),
    )
}

/// The answer to one request of ECR's API.
pub fn answer(request: &Recorded) -> Answer {
    if let Err(refusal) = verify_scoped(request, (REGION, "ecr"), |code, message| {
        error(403, code, message)
    }) {
        return refusal;
    }
    if request.header("x-amz-target")
        != Some("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
    {
        return error(400, "UnknownOperationException", "Unknown operation.");
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    (
        200,
        json!({"authorizationData": [{
            "authorizationToken": token,
            "expiresAt": 1.8e9,
            "proxyEndpoint": format!("https://{REGISTRY}"),
        }]})
        .to_string(),
    )
}
