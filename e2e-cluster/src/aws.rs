//! AWS as the CDN double plays it: CloudFront's invalidations API, which
//! **verifies** every SigV4 signature, STS's `AssumeRoleWithWebIdentity`
//! (IRSA) and EKS Pod Identity's agent, each with test credentials.
//!
//! Invalidations are `InProgress` for [`PROCESSING`] after their creation,
//! then `Completed`; while in progress they count against the
//! distribution's limits (3,000 paths, 15 wildcard paths), and a batch
//! past them gets `TooManyInvalidationsInProgress`, as CloudFront answers.
//!
//! The verifier is written from AWS's description of SigV4, not from the
//! purge program's signer, so that a shared mistake cannot pass.

use crate::recorded::Recorded;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const CLOUDFRONT_HOST: &str = "cloudfront.amazonaws.com";
pub const STS_HOST: &str = "sts.amazonaws.com";
/// How long an invalidation stays `InProgress`.
pub const PROCESSING: Duration = Duration::from_secs(2);

/// A key pair of the Secret (static credentials).
pub const ACCESS_KEY_ID: &str = "AKIACACHEBUSTERTEST1";
pub const SECRET_ACCESS_KEY: &str = "cache-buster/test+Secret/KEY0123456789abcd";
/// IRSA: the role and the token the pod's projected file holds.
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/cache-buster";
pub const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.web-identity.test";
/// EKS Pod Identity: the agent's token file's content.
pub const POD_IDENTITY_TOKEN: &str = "eks-pod-identity-token-test";

/// The temporary credentials STS and the agent hand out: (key id,
/// secret, session token).
pub const FROM_STS: (&str, &str, &str) = (
    "ASIASTSCACHEBUSTER01",
    "sts/issued+secret",
    "sts-session-token-test",
);
pub const FROM_AGENT: (&str, &str, &str) = (
    "ASIAPODIDENTITYTEST1",
    "pod-identity/issued+secret",
    "pod-identity-session-token-test",
);

struct Invalidation {
    id: String,
    distribution: String,
    paths: Vec<String>,
    created: Instant,
}

impl Invalidation {
    fn status(&self) -> &'static str {
        if self.created.elapsed() < PROCESSING {
            "InProgress"
        } else {
            "Completed"
        }
    }
}

/// CloudFront's invalidations, by CallerReference.
#[derive(Default)]
pub struct CloudFront {
    invalidations: BTreeMap<String, Invalidation>,
}

impl CloudFront {
    /// How many invalidations it made (a repeated CallerReference makes none).
    pub fn invalidations(&self) -> usize {
        self.invalidations.len()
    }

    /// How many invalidations it made of one distribution.
    pub fn invalidations_of(&self, distribution: &str) -> usize {
        self.invalidations
            .values()
            .filter(|invalidation| invalidation.distribution == distribution)
            .count()
    }
}

pub(crate) type Answer = (u16, String);

fn error_response(namespace: &str, status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        format!(
            "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{namespace}\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>b2ae4e8a-ed1a-4b94-9d1b-3c5a0c0e1d2f</RequestId></ErrorResponse>"
        ),
    )
}

fn cloudfront_error(status: u16, code: &str, message: &str) -> Answer {
    error_response(
        "http://cloudfront.amazonaws.com/doc/2020-05-31/",
        status,
        code,
        message,
    )
}

fn text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    Some(&xml[start..start + xml[start..].find(&format!("</{tag}>"))?])
}

fn all_texts<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|part| part.split(&close).next())
        .collect()
}

fn unescaped(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl CloudFront {
    /// CloudFront's answer to `request`, once its signature is verified.
    pub fn answer(&mut self, request: &Recorded) -> Answer {
        if let Err(refusal) = verify(request) {
            return refusal;
        }
        let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["2020-05-31", "distribution", distribution, "invalidation"]) => {
                self.create(distribution, &request.body)
            }
            (
                "GET",
                [
                    "2020-05-31",
                    "distribution",
                    distribution,
                    "invalidation",
                    id,
                ],
            ) => self
                .invalidations
                .values()
                .find(|found| found.id == *id && found.distribution == *distribution)
                .map_or_else(
                    || {
                        cloudfront_error(
                            404,
                            "NoSuchInvalidation",
                            "The specified invalidation does not exist.",
                        )
                    },
                    |found| (200, invalidation_xml(found)),
                ),
            _ => cloudfront_error(404, "NotFound", "No such operation."),
        }
    }

    fn create(&mut self, distribution: &str, body: &str) -> Answer {
        let Some(reference) = text(body, "CallerReference") else {
            return cloudfront_error(400, "MalformedInput", "CallerReference is required.");
        };
        let paths: Vec<String> = all_texts(body, "Path").into_iter().map(unescaped).collect();
        if text(body, "Quantity").and_then(|q| q.parse::<usize>().ok()) != Some(paths.len()) {
            return cloudfront_error(
                400,
                "InconsistentQuantities",
                "Quantity does not match the number of Items.",
            );
        }
        if paths.is_empty() || paths.iter().any(|path| !path.starts_with('/')) {
            return cloudfront_error(
                400,
                "InvalidArgument",
                "Each invalidation path must begin with /.",
            );
        }
        if let Some(existing) = self.invalidations.get(reference) {
            // The same batch again: the same invalidation.
            return if existing.paths == paths {
                (201, invalidation_xml(existing))
            } else {
                cloudfront_error(
                    409,
                    "InvalidationBatchAlreadyExists",
                    "The CallerReference you attempted to use is already in use for a different batch.",
                )
            };
        }
        let in_progress = self
            .invalidations
            .values()
            .filter(|found| found.distribution == distribution && found.status() == "InProgress");
        let (mut busy_paths, mut busy_wildcards) = (0, 0);
        for found in in_progress {
            busy_paths += found.paths.len();
            busy_wildcards += found
                .paths
                .iter()
                .filter(|path| path.ends_with('*'))
                .count();
        }
        let wildcards = paths.iter().filter(|path| path.ends_with('*')).count();
        if busy_paths + paths.len() > 3000 || busy_wildcards + wildcards > 15 {
            return cloudfront_error(
                400,
                "TooManyInvalidationsInProgress",
                "Processing your request will cause you to exceed the maximum number of in-progress wildcard invalidations.",
            );
        }
        let id = format!(
            "I{:013X}",
            fingerprint(&format!("{distribution}/{reference}")) >> 12
        );
        let invalidation = Invalidation {
            id,
            distribution: distribution.to_owned(),
            paths,
            created: Instant::now(),
        };
        let xml = invalidation_xml(&invalidation);
        self.invalidations
            .insert(reference.to_owned(), invalidation);
        (201, xml)
    }
}

fn invalidation_xml(invalidation: &Invalidation) -> String {
    let items: String = invalidation
        .paths
        .iter()
        .map(|path| format!("<Path>{}</Path>", path.replace('&', "&amp;")))
        .collect();
    format!(
        "<?xml version=\"1.0\"?><Invalidation xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
         <Id>{}</Id><Status>{}</Status><CreateTime>2026-12-04T12:00:00.000Z</CreateTime>\
         <InvalidationBatch><Paths><Quantity>{}</Quantity><Items>{items}</Items></Paths></InvalidationBatch>\
         </Invalidation>",
        invalidation.id,
        invalidation.status(),
        invalidation.paths.len()
    )
}

fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// STS: `AssumeRoleWithWebIdentity` for [`ROLE_ARN`] with
/// [`WEB_IDENTITY_TOKEN`] (an unsigned request, as the real one is).
pub fn sts_answer(request: &Recorded) -> Answer {
    let namespace = "https://sts.amazonaws.com/doc/2011-06-15/";
    let form: BTreeMap<String, String> = request
        .body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (decoded(name), decoded(value)))
        .collect();
    let field = |name: &str| form.get(name).map_or("", String::as_str);
    if request.method != "POST" || field("Action") != "AssumeRoleWithWebIdentity" {
        return error_response(namespace, 400, "InvalidAction", "Could not find operation.");
    }
    if field("WebIdentityToken") != WEB_IDENTITY_TOKEN {
        return error_response(
            namespace,
            400,
            "InvalidIdentityToken",
            "Couldn't retrieve verification key from your identity provider.",
        );
    }
    if field("RoleArn") != ROLE_ARN {
        return error_response(
            namespace,
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        );
    }
    let (id, secret, session) = FROM_STS;
    (
        200,
        format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"{namespace}\"><AssumeRoleWithWebIdentityResult>\
             <Credentials><AccessKeyId>{id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
             <SessionToken>{session}</SessionToken><Expiration>2026-12-04T13:00:00Z</Expiration></Credentials>\
             <AssumedRoleUser><Arn>arn:aws:sts::111122223333:assumed-role/cache-buster/{}</Arn></AssumedRoleUser>\
             </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            field("RoleSessionName")
        ),
    )
}

fn decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The EKS Pod Identity agent's answer (`GET` with the token as
/// `Authorization`), as JSON.
pub fn agent_answer(request: &Recorded) -> Answer {
    if request.header("authorization") != Some(POD_IDENTITY_TOKEN) {
        return (
            400,
            json!({"Message": "Service account token cannot be empty or is invalid"}).to_string(),
        );
    }
    let (id, secret, session) = FROM_AGENT;
    (
        200,
        json!({"AccessKeyId": id, "SecretAccessKey": secret, "Token": session,
               "AccountId": "111122223333", "Expiration": "2026-12-04T13:00:00Z"})
        .to_string(),
    )
}

/// The SigV4 check: a known access key (with its session token when it
/// is a temporary one), and the signature over the signed headers.
fn verify(request: &Recorded) -> Result<(), Answer> {
    verify_scoped(request, ("us-east-1", "cloudfront"), |code, message| {
        cloudfront_error(403, code, message)
    })
}

/// [`verify`] for a request scoped to `(region, service)`, refused in the
/// service's own words (`denied(code, message)`).
pub(crate) fn verify_scoped(
    request: &Recorded,
    (expected_region, expected_service): (&str, &str),
    denied: impl Fn(&str, &str) -> Answer,
) -> Result<(), Answer> {
    let header = request.header("authorization").ok_or_else(|| {
        denied(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
    })?;
    let fields = header.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        denied(
            "IncompleteSignature",
            "Authorization header requires AWS4-HMAC-SHA256.",
        )
    })?;
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(credential), Some(signed_headers), Some(signature)) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    ) else {
        return Err(denied(
            "IncompleteSignature",
            "The request signature is incomplete.",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(denied("IncompleteSignature", "Credential is malformed."));
    };
    if (*region, *service) != (expected_region, expected_service) {
        return Err(denied(
            "SignatureDoesNotMatch",
            "Credential should be scoped to a valid region and service.",
        ));
    }
    let known = [
        (ACCESS_KEY_ID, SECRET_ACCESS_KEY, None),
        (FROM_STS.0, FROM_STS.1, Some(FROM_STS.2)),
        (FROM_AGENT.0, FROM_AGENT.1, Some(FROM_AGENT.2)),
    ];
    let Some((_, secret, session)) = known.iter().find(|(id, _, _)| id == key_id) else {
        return Err(denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    };
    if session.is_some() && request.header("x-amz-security-token") != *session {
        return Err(denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(denied(
            "IncompleteSignature",
            "Host and X-Amz-Date must be signed.",
        ));
    }
    let scope = Scope {
        date,
        region,
        service,
    };
    if expected_signature(request, secret, &scope, signed_headers) == signature {
        Ok(())
    } else {
        Err(denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    }
}

struct Scope<'a> {
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

/// The signature of `request` over `signed_headers` with `secret`.
fn expected_signature(
    request: &Recorded,
    secret: &str,
    scope: &Scope<'_>,
    signed_headers: &str,
) -> String {
    let amz_date = request.header("x-amz-date").unwrap_or_default();
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = match name {
            "host" => request.host.as_str(),
            other => request.header(other).unwrap_or_default(),
        };
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let mut query: Vec<&str> = query.split('&').filter(|pair| !pair.is_empty()).collect();
    query.sort_unstable();
    let canonical_request = [
        request.method.clone(),
        path.to_owned(),
        query.join("&"),
        canonical_headers,
        signed_headers.to_owned(),
        hex(&Sha256::digest(request.body.as_bytes())),
    ]
    .join("\n");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        scope.date,
        scope.region,
        scope.service,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = mac(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
    for part in [scope.region, scope.service, "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    hex(&mac(&key, string_to_sign.as_bytes()))
}

fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The EKS Pod Identity agent on loopback (plain HTTP, as the real one at
/// 169.254.170.23 is); its URL goes in `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
pub struct PodIdentityAgent {
    pub url: String,
    server: tokio::task::JoinHandle<()>,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl PodIdentityAgent {
    pub async fn start() -> anyhow::Result<PodIdentityAgent> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address: SocketAddr = listener.local_addr()?;
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&asked);
        let server = crate::caches::serve(listener, move |request, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, body) = agent_answer(&request);
            crate::caches::respond(
                hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST),
                "application/json",
                body,
            )
        });
        Ok(PodIdentityAgent {
            url: format!("http://{address}/v1/credentials"),
            server,
            asked,
        })
    }

    /// How many requests the agent has answered.
    pub fn requests(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for PodIdentityAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Recorded {
        Recorded {
            at: Instant::now(),
            method: method.into(),
            host: host.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            body: body.into(),
        }
    }

    /// AWS's get-vanilla, checked with the suite's own key: the verifier
    /// accepts exactly that signature (scoped to CloudFront here, so the
    /// scope check is what refuses the suite's `service`).
    #[test]
    fn a_suite_signature_is_checked_for_its_scope() {
        let request = recorded(
            "GET",
            "example.amazonaws.com",
            "/",
            &[
                ("x-amz-date", "20150830T123600Z"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                ),
            ],
            "",
        );
        let (status, body) = verify(&request).unwrap_err();
        assert_eq!(status, 403);
        assert!(
            body.contains("<Code>SignatureDoesNotMatch</Code>"),
            "{body}"
        );
    }

    /// AWS's test suite (get-vanilla, post-vanilla-query): the double
    /// computes the published signatures.
    #[test]
    fn the_double_computes_aws_suite_signatures() {
        let scope = Scope {
            date: "20150830",
            region: "us-east-1",
            service: "service",
        };
        for (method, path, signature) in [
            (
                "GET",
                "/",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "/?Param1=value1",
                "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
            ),
        ] {
            let request = recorded(
                method,
                "example.amazonaws.com",
                path,
                &[("x-amz-date", "20150830T123600Z")],
                "",
            );
            assert_eq!(
                expected_signature(
                    &request,
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    &scope,
                    "host;x-amz-date"
                ),
                signature
            );
        }
    }

    #[test]
    fn an_unknown_key_or_a_missing_token_is_refused() {
        let unknown = recorded(
            "POST",
            CLOUDFRONT_HOST,
            "/2020-05-31/distribution/E1/invalidation",
            &[
                ("x-amz-date", "20261204T120000Z"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN/20261204/us-east-1/cloudfront/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature=00",
                ),
            ],
            "",
        );
        assert!(
            verify(&unknown)
                .unwrap_err()
                .1
                .contains("<Code>InvalidClientTokenId</Code>")
        );
        let without_token = recorded(
            "POST",
            CLOUDFRONT_HOST,
            "/",
            &[(
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential={}/20261204/us-east-1/cloudfront/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature=00",
                    FROM_STS.0
                ),
            )],
            "",
        );
        assert!(
            verify(&without_token)
                .unwrap_err()
                .1
                .contains("<Code>InvalidClientTokenId</Code>")
        );
    }

    #[test]
    fn sts_checks_the_token_and_the_role() {
        let form = |token: &str| {
            format!(
                "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fcache-buster\
                 &RoleSessionName=shop&WebIdentityToken={token}"
            )
        };
        let (status, body) = sts_answer(&recorded(
            "POST",
            STS_HOST,
            "/",
            &[],
            &form(WEB_IDENTITY_TOKEN),
        ));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<SessionToken>sts-session-token-test</SessionToken>"));
        let (status, body) = sts_answer(&recorded("POST", STS_HOST, "/", &[], &form("forged")));
        assert_eq!(status, 400);
        assert!(body.contains("<Code>InvalidIdentityToken</Code>"));
    }
}
