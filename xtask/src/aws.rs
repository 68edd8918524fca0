//! The AWS clients an environment needs (deploy, bootstrap; image pushes to ECR), one configuration for all of them, and AWS errors
//! turned into messages that say what was refused and what to do.
//!
//! Configuration is the AWS default chain (environment, profile, SSO, web identity, instance
//! role) with `AWS_ENDPOINT_URL` honoured, which is how the tests point everything at moto.
//! Throttling, 5xx answers and transient network errors are retried with exponential backoff
//! by the SDK's standard retry mode.

use std::sync::{Arc, Mutex};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::deploy::environment::Environment;

/// Attempts per call (the first and four retries), unless AWS_MAX_ATTEMPTS says otherwise.
pub const MAX_ATTEMPTS: u32 = 5;

pub struct Aws {
    pub acm: aws_sdk_acm::Client,
    /// EC2 Auto Scaling (the fleet's group and its scaling policy).
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub ec2: aws_sdk_ec2::Client,
    /// Elastic Load Balancing (v2: Application Load Balancers).
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub iam: aws_sdk_iam::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub region: String,
    pub account: String,
    /// Every operation called, in order: `apply` with nothing to do must show no mutation.
    pub calls: CallLog,
}

impl Aws {
    /// Clients for `environment`'s region, after checking that there are credentials and
    /// finding whose they are (STS GetCallerIdentity).
    pub async fn connect(environment: &Environment) -> anyhow::Result<Aws> {
        let shared = load(environment.region.as_deref()).await?;
        let region = shared.region().map(ToString::to_string).ok_or_else(|| {
            anyhow::anyhow!(
                "no AWS region: set `region:` in the environment file, or AWS_REGION (or a profile's region)"
            )
        })?;
        check_credentials(&shared).await?;
        let calls = CallLog::default();
        // One configuration for every service, each call through the call log.
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf($sdk::config::Builder::from(&shared).interceptor(calls.clone()).build())
            };
        }
        let sts = client!(aws_sdk_sts);
        let identity = sts.get_caller_identity().send().await.map_err(|e| explain(e, "sts:GetCallerIdentity", "*"))?;
        let account = identity.account().unwrap_or_default().to_string();
        // A local stand-in has no per-bucket host names.
        let s3 = aws_sdk_s3::config::Builder::from(&shared).force_path_style(shared.endpoint_url().is_some());
        Ok(Aws {
            acm: client!(aws_sdk_acm),
            autoscaling: client!(aws_sdk_autoscaling),
            ecr: client!(aws_sdk_ecr),
            ec2: client!(aws_sdk_ec2),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            iam: client!(aws_sdk_iam),
            s3: aws_sdk_s3::Client::from_conf(s3.interceptor(calls.clone()).build()),
            ssm: client!(aws_sdk_ssm),
            region,
            account,
            calls,
        })
    }

    /// `arn:aws:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:aws:{service}:{}:{}:{resource}", self.region, self.account)
    }

    /// A Parameter Store value (SecureStrings decrypted), or None when there is no such parameter.
    pub async fn parameter(&self, name: &str) -> anyhow::Result<Option<String>> {
        match self.ssm.get_parameter().name(name).with_decryption(true).send().await {
            Ok(found) => Ok(found.parameter().and_then(|p| p.value()).map(str::to_string)),
            Err(e) if code(&e) == Some("ParameterNotFound") => Ok(None),
            Err(e) => Err(explain(e, "ssm:GetParameter", name)),
        }
    }
}

/// An ECR client for `region` alone (`cargo xtask image --push` to an ECR registry).
pub async fn ecr(region: &str) -> anyhow::Result<aws_sdk_ecr::Client> {
    let shared = load(Some(region)).await?;
    check_credentials(&shared).await?;
    Ok(aws_sdk_ecr::Client::new(&shared))
}

async fn load(region: Option<&str>) -> anyhow::Result<SdkConfig> {
    let https =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https);
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
        loader = loader.retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    }
    Ok(loader.load().await)
}

/// Fails early, and clearly, when the default chain finds no credentials at all.
async fn check_credentials(shared: &SdkConfig) -> anyhow::Result<()> {
    use aws_credential_types::provider::ProvideCredentials;
    let provider = shared.credentials_provider().ok_or_else(no_credentials)?;
    provider.provide_credentials().await.map_err(|e| no_credentials().context(DisplayErrorContext(e).to_string()))?;
    Ok(())
}

fn no_credentials() -> anyhow::Error {
    anyhow::anyhow!(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (then \
         `aws sso login` if it uses SSO); in GitHub Actions, configure-aws-credentials with role-to-assume"
    )
}

/// An SDK error as a message naming the action and the resource, with what to do.
pub fn explain<E>(error: SdkError<E, HttpResponse>, action: &str, resource: &str) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, message) = match (error.code(), error.raw_response()) {
        (Some(code), _) => (code.to_string(), error.message().unwrap_or_default().to_string()),
        // A refusal in a form the SDK could not parse (moto answers JSON services in XML).
        (None, Some(raw)) if raw.status().as_u16() == 403 => {
            let body = raw.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
            let between = |open: &str, close: &str| body.split(open).nth(1)?.split(close).next().map(str::to_string);
            (
                between("<Code>", "</Code>").unwrap_or("AccessDenied".into()),
                between("<Message>", "</Message>").unwrap_or_default(),
            )
        }
        (None, _) => (String::new(), String::new()),
    };
    match code.as_str() {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError" => anyhow::anyhow!(
            "access denied: {action} on {resource} ({code}: {message})\n  hint: the credentials in use need \
             {action} on {resource}; see the deploy role's policy"
        ),
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => anyhow::anyhow!(
            "the AWS credentials have expired ({action} on {resource}): renew them (`aws sso login`, a new role \
             session) and run again"
        ),
        "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch" | "AuthFailure" => {
            anyhow::anyhow!(
                "AWS refused the credentials ({code}) for {action} on {resource}: check AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or the profile"
            )
        }
        "" => anyhow::anyhow!(
            "{action} on {resource} failed after retries with backoff: {}\n  hint: check the network and \
             AWS_ENDPOINT_URL; AWS_MAX_ATTEMPTS sets the attempts",
            DisplayErrorContext(&error)
        ),
        _ => anyhow::anyhow!("{action} on {resource} failed: {code}: {message}"),
    }
}

/// Whether a failed call may succeed when tried again: no answer (a lost connection, a
/// timeout, an unreadable answer), a 5xx, or throttling. The SDK's standard retry mode decides
/// the same way; this is for the calls that must not be retried blindly.
pub fn may_be_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    const THROTTLING: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    ];
    match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error() || error.code().is_some_and(|code| THROTTLING.contains(&code))
        }
        _ => false,
    }
}

/// The error code of an SDK error, for callers that treat "not found" as an answer.
pub fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.code()
}

/// Runs `call` again, every five seconds for `within`, while its error is one `passing` says
/// goes away by itself (AWS's own state still spreading); any other outcome is returned.
pub async fn retry_while<T, E, Fut>(
    within: std::time::Duration,
    passing: impl Fn(&SdkError<E, HttpResponse>) -> bool,
    mut call: impl FnMut() -> Fut,
) -> Result<T, SdkError<E, HttpResponse>>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match call().await {
            Err(e) if passing(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            done => return done,
        }
    }
}

/// Runs `call` again for two minutes while AWS refuses an instance profile it does not know yet:
/// IAM is eventually consistent, and a profile made seconds before is refused by RunInstances
/// (InvalidParameterValue) and by Auto Scaling, which checks the launch template's
/// (ValidationError), until it has spread.
pub async fn while_profile_spreads<T, E, Fut>(call: impl FnMut() -> Fut) -> Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    retry_while(std::time::Duration::from_secs(120), profile_not_ready, call).await
}

fn profile_not_ready<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(error.code(), Some("InvalidParameterValue" | "ValidationError"))
        && error.message().is_some_and(|m| m.to_ascii_lowercase().contains("iaminstanceprofile"))
}

/// The operations called, as `service:Operation`, shared by every client.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    /// How many calls so far; `mutations_since` counts the ones after such a mark.
    pub fn mark(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    /// The calls after `mark` that change something (all but Describe, Get, List, Head).
    pub fn mutations_since(&self, mark: usize) -> Vec<String> {
        let calls = self.0.lock().expect("not poisoned");
        calls[mark.min(calls.len())..].iter().filter(|call| is_mutation(call)).cloned().collect()
    }
}

fn is_mutation(call: &str) -> bool {
    let operation = call.split_once(':').map_or(call, |(_, op)| op);
    !["Describe", "Get", "List", "Head"].iter().any(|read| operation.starts_with(read))
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            let call = format!("{}:{}", metadata.service().to_lowercase(), metadata.name());
            self.0.lock().expect("not poisoned").push(call);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutations() {
        for read in ["ec2:DescribeInstances", "ssm:GetParameter", "s3:ListObjectVersions", "s3:HeadBucket"] {
            assert!(!is_mutation(read), "{read}");
        }
        for write in ["ec2:RunInstances", "iam:PutRolePolicy", "s3:CreateBucket", "ec2:AuthorizeSecurityGroupIngress"] {
            assert!(is_mutation(write), "{write}");
        }
    }
}
