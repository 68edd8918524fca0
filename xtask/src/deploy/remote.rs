//! Commands on the runner through SSM Run Command (AWS-RunShellScript, as root): no SSH, no
//! open port, every command recorded by SSM. Each command carries the current on-host update
//! script (infra/host/netsec-update.sh), so the host never runs an older copy of it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::operation::send_command::{SendCommandError, SendCommandOutput};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::environment::Environment;
use crate::aws::{code, explain, may_be_transient, Aws, MAX_ATTEMPTS};

const UPDATE_SCRIPT: &str = include_str!("../../../infra/host/netsec-update.sh");
const SCRIPT_PATH: &str = "/opt/netsec/netsec-update.sh";
const SERVICE_ENV: &str = "/etc/netsec/service.env";

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn succeeded(&self) -> bool {
        self.status == "Success"
    }
}

/// Which of the environment's machines a command goes to: they are given different settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The single runner, which also trains: it gets the admin token (`/train`).
    Runner,
    /// An instance of the fleet: it serves the store's `current` model and has no `/train`.
    Fleet,
}

/// Runs `netsec-update.sh ARGS…` on `instance` and waits for it.
pub async fn update_script(
    aws: &Aws,
    environment: &Environment,
    host: Host,
    instance: &str,
    args: &[&str],
) -> anyhow::Result<Output> {
    let commands = vec![
        "set -euo pipefail".to_string(),
        install_script(),
        service_env(aws, environment, host),
        invocation(aws, environment, args),
    ];
    let comment = format!("netsec {}: {}", environment.name, args.first().copied().unwrap_or("update"));
    run(aws, environment, instance, commands, &comment).await
}

/// Writes the update script where the next commands find it (a quoted heredoc: no expansion).
fn install_script() -> String {
    format!(
        "install -d -m 700 /opt/netsec && cat > {SCRIPT_PATH}.new <<'NETSEC_UPDATE_SCRIPT'\n{UPDATE_SCRIPT}\nNETSEC_UPDATE_SCRIPT\n\
         chmod 700 {SCRIPT_PATH}.new && mv {SCRIPT_PATH}.new {SCRIPT_PATH}"
    )
}

/// The service's settings (the model store, the region) and, on the runner, its admin token,
/// which the host reads from Parameter Store with its own role: the token never passes through
/// SSM's command history or this machine. A fleet instance gets no token (its role may not
/// read it either), so it has no `/train`. Readable by root only.
fn service_env(aws: &Aws, environment: &Environment, host: Host) -> String {
    let bucket = &environment.bucket;
    let token = match host {
        Host::Runner => format!(
            "  token=$(aws ssm get-parameter --region {} --name {} --with-decryption --query Parameter.Value \
             --output text 2>/dev/null || true)\n  if [ -n \"$token\" ]; then echo \"NETSEC_ADMIN_TOKEN=$token\"; fi\n",
            aws.region,
            environment.parameter("service/admin-token")
        ),
        Host::Fleet => String::new(),
    };
    format!(
        "install -d -m 700 /etc/netsec && umask 077 && {{\n  echo 'NETSEC_TRAIN_STORE=s3://{}/{}'\n  echo 'AWS_REGION={}'\n\
         {token}}} > {SERVICE_ENV}.new && mv {SERVICE_ENV}.new {SERVICE_ENV}",
        bucket.name, bucket.models_prefix, aws.region
    )
}

fn invocation(aws: &Aws, environment: &Environment, args: &[&str]) -> String {
    let service = &environment.service;
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    format!(
        "NETSEC_PORT={} NETSEC_READY_TIMEOUT={} NETSEC_ENV_FILE={SERVICE_ENV} NETSEC_ECR_REGION={} {SCRIPT_PATH} {}",
        service.port,
        service.ready_timeout_seconds,
        aws.region,
        quoted.join(" ")
    )
}

/// `'…'` with every `'` closed, escaped and reopened.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Sends `commands` to the instance and polls until they end (or the configured timeout).
pub async fn run(
    aws: &Aws,
    environment: &Environment,
    instance: &str,
    commands: Vec<String>,
    comment: &str,
) -> anyhow::Result<Output> {
    let timeout = environment.deploy.command_timeout_seconds;
    let marker = Marker::new();
    let request = aws
        .ssm
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(instance)
        .comment(marker.comment(comment))
        .timeout_seconds(60)
        .parameters("commands", commands)
        .parameters("executionTimeout", vec![timeout.to_string()]);
    // Our own retry (send_once): the SDK's would resend a command whose answer was lost.
    let no_retry = || aws_sdk_ssm::config::Builder::default().retry_config(RetryConfig::disabled());
    let id =
        send_once(aws, instance, &marker, || request.clone().customize().config_override(no_retry()).send()).await?;
    eprintln!("xtask: SSM command {id} on {instance}: {comment}");
    wait(aws, &id, instance, Duration::from_secs(u64::from(timeout) + 120)).await
}

/// SendCommand has no idempotency token: when its answer is lost (a reset connection, a 5xx
/// after the command was queued) the command may be running already, and sending it again
/// would run an update twice. So before every resend the instance's commands are searched for
/// this one's marker, and a command found there is the one sent.
async fn send_once<F, Fut>(aws: &Aws, instance: &str, marker: &Marker, send: F) -> anyhow::Result<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<SendCommandOutput, SdkError<SendCommandError, HttpResponse>>>,
{
    let mut backoff = Duration::from_millis(500);
    for attempt in 1.. {
        match send().await {
            Ok(sent) => return Ok(sent.command().and_then(|c| c.command_id()).unwrap_or_default().to_string()),
            Err(e) if attempt < MAX_ATTEMPTS && may_be_transient(&e) => {
                eprintln!(
                    "xtask: ssm:SendCommand to {instance} got no answer (attempt {attempt}: {}); looking for it \
                     before sending it again",
                    DisplayErrorContext(&e)
                );
                if let Some(id) = marker.find_within(aws, instance, backoff).await? {
                    eprintln!("xtask: SSM received the command as {id}: not sending it again");
                    return Ok(id);
                }
                backoff *= 2;
            }
            Err(e) => return Err(explain(e, "ssm:SendCommand", instance)),
        }
    }
    unreachable!("the loop returns by its last attempt")
}

/// A unique tag in a command's comment, by which a command sent without an answer is found.
struct Marker(String);

impl Marker {
    fn new() -> Marker {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        Marker(format!("[{:x}.{:x}]", std::process::id(), nanos))
    }

    /// `comment` shortened to fit SSM's 100 characters with the marker at its end.
    fn comment(&self, comment: &str) -> String {
        let room = 100 - self.0.len() - 1;
        format!("{} {}", comment.chars().take(room).collect::<String>(), self.0)
    }

    /// Looks for the command a few times over about ten seconds (the first look after
    /// `first_wait`): a call that timed out may still be on its way through the server, and a
    /// resend before it lands would run the command twice.
    async fn find_within(&self, aws: &Aws, instance: &str, first_wait: Duration) -> anyhow::Result<Option<String>> {
        let mut wait = first_wait;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(wait).await;
            if let Some(id) = self.find(aws, instance).await? {
                return Ok(Some(id));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            wait = (wait * 2).min(Duration::from_secs(4));
        }
    }

    async fn find(&self, aws: &Aws, instance: &str) -> anyhow::Result<Option<String>> {
        let listed = aws
            .ssm
            .list_commands()
            .instance_id(instance)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| explain(e, "ssm:ListCommands", instance))?;
        let ours = listed.iter().find(|c| c.comment().is_some_and(|comment| comment.ends_with(&self.0)));
        Ok(ours.and_then(|c| c.command_id()).map(str::to_string))
    }
}

async fn wait(aws: &Aws, id: &str, instance: &str, timeout: Duration) -> anyhow::Result<Output> {
    let deadline = Instant::now() + timeout;
    loop {
        match aws.ssm.get_command_invocation().command_id(id).instance_id(instance).send().await {
            Ok(found) => {
                let status = found.status().map(|s| s.as_str().to_string()).unwrap_or_default();
                if !matches!(status.as_str(), "Pending" | "InProgress" | "Delayed" | "") {
                    return Ok(Output {
                        status,
                        stdout: found.standard_output_content().unwrap_or_default().to_string(),
                        stderr: found.standard_error_content().unwrap_or_default().to_string(),
                    });
                }
            }
            // Asked too soon after sending: the invocation is not registered yet.
            Err(e) if code(&e) == Some("InvocationDoesNotExist") => {}
            Err(e) => return Err(explain(e, "ssm:GetCommandInvocation", id)),
        }
        anyhow::ensure!(Instant::now() < deadline, "SSM command {id} on {instance} did not finish within {timeout:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_ends_every_comment_within_ssms_limit() {
        let marker = Marker::new();
        for comment in ["netsec dev: deploy", &"x".repeat(300)] {
            let marked = marker.comment(comment);
            assert!(marked.chars().count() <= 100 && marked.ends_with(&marker.0), "{marked}");
        }
        assert_ne!(Marker::new().0, marker.0, "two commands, two markers");
    }

    #[test]
    fn arguments_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("r@sha256:abc"), "'r@sha256:abc'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
