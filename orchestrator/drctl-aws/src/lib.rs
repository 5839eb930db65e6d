//! drctl's AWS providers, through the real `aws-sdk-*` crates.
//!
//! Clients come from the standard credential and region chain and honour
//! `AWS_ENDPOINT_URL` (and a per-datastore `endpoint`), so an AWS API
//! emulator on loopback is used exactly like AWS. Every AWS failure that an
//! operator can fix (no credentials, unknown bucket, missing permission,
//! unreachable endpoint) is turned into plain words by [`explain`].

pub mod discover;
pub mod iam;
pub mod rds;
pub mod rds_replace;
pub mod rds_restore;
pub mod route53;
pub mod s3;
pub mod s3_erasure;
pub mod s3_restore;
pub mod s3_versions;

use aws_config::SdkConfig;
use aws_sdk_s3::config::http::HttpResponse;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AWS API call failed; `why` is in plain words. `transient`: the
    /// network, throttling or a 5xx, worth another attempt.
    #[error("{what}: {why}")]
    Api { what: String, why: String, transient: bool },
    /// An object was copied but the copy does not match the source.
    #[error("{key}: the copy does not match the source ({why})")]
    Verify { key: String, why: String },
    /// The state store failed while recording progress.
    #[error(transparent)]
    State(#[from] drctl_state::Error),
    /// The topology does not give what the operation needs.
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an SDK error with what was being done.
pub fn api_error<E>(what: impl Into<String>, err: &aws_sdk_s3::error::SdkError<E, HttpResponse>) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    Error::Api { what: what.into(), why: explain(err), transient: retryable(err) }
}

/// Where AWS credentials come from.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// The standard chain: environment, profile, SSO, instance role.
    #[default]
    Chain,
    /// Fixed keys, for an endpoint with keys of its own (the lab's S3
    /// servers), without touching the process environment.
    Static { access_key: String, secret_key: String },
}

impl std::fmt::Debug for Credentials {
    // Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Chain => f.write_str("Chain"),
            Credentials::Static { access_key, .. } => write!(f, "Static({access_key}, ***)"),
        }
    }
}

/// The shared AWS configuration: default chain, region defaulting to
/// us-east-1 when none is configured (emulators accept any).
pub async fn sdk_config() -> SdkConfig {
    sdk_config_with(&Credentials::Chain).await
}

/// [`sdk_config`] with the credentials given.
pub async fn sdk_config_with(credentials: &Credentials) -> SdkConfig {
    let loader = || {
        let l = aws_config::defaults(aws_config::BehaviorVersion::latest());
        match credentials {
            Credentials::Chain => l,
            Credentials::Static { access_key, secret_key } => l.credentials_provider(
                aws_credential_types::Credentials::new(access_key, secret_key, None, None, "drctl"),
            ),
        }
    };
    let config = loader().load().await;
    if config.region().is_some() {
        config
    } else {
        loader().region(aws_config::Region::new("us-east-1")).load().await
    }
}

/// An AWS SDK error in words an operator can act on.
pub fn explain<E>(err: &aws_sdk_s3::error::SdkError<E, HttpResponse>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_s3::error::SdkError;
    match err {
        SdkError::DispatchFailure(d) => {
            let chain = drctl_core::error_chain(err);
            if chain.contains("credential") {
                "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance role)"
                    .into()
            } else if d.is_timeout() {
                "the endpoint did not answer in time".into()
            } else if d.is_io() {
                "cannot reach the endpoint (connection refused or reset)".into()
            } else {
                format!("cannot send the request: {chain}")
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".into(),
        SdkError::ConstructionFailure(_) => "the request could not be built (are credentials configured?)".into(),
        SdkError::ServiceError(s) => {
            let e = s.err();
            let code = e.code().unwrap_or("");
            let msg = e.message().unwrap_or("");
            let hint = match code {
                "NoSuchBucket" => " (the bucket does not exist: create it or fix `bucket:`)",
                "AccessDenied" | "AccessDeniedException" | "AccessDeniedFault" | "UnauthorizedOperation" => {
                    " (the credentials lack a permission for this call: see `drctl iam-policy`)"
                }
                // A HEAD answer has no body, so no code: a bare 403 is a refusal too.
                "" if s.raw().status().as_u16() == 403 => {
                    " (the credentials lack a permission for this call: see `drctl iam-policy`)"
                }
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId" => " (the credentials are not valid for this endpoint)",
                "DBInstanceNotFound" | "DBInstanceNotFoundFault" => {
                    " (no RDS instance by that identifier: fix `instance:`)"
                }
                "DBClusterNotFoundFault" => " (no RDS cluster by that identifier: fix `cluster:`)",
                "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                    " (throttled: will retry)"
                }
                _ => "",
            };
            if code.is_empty() {
                format!("the service answered HTTP {}{hint}", s.raw().status().as_u16())
            } else {
                format!("{code}: {msg}{hint}")
            }
        }
        SdkError::ResponseError(_) => "the service's answer could not be read".into(),
        _ => err.to_string(),
    }
}

/// Whether an SDK error is worth retrying (throttling, 5xx, the network).
pub fn retryable<E>(err: &aws_sdk_s3::error::SdkError<E, HttpResponse>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::SdkError;
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            s.raw().status().is_server_error()
                || matches!(
                    s.err().code(),
                    Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded")
                )
        }
        _ => false,
    }
}
