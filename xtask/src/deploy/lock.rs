//! The deploy lock: an SSM parameter created only if absent (PutParameter without Overwrite
//! is atomic), holding who took it and until when. A lock past its expiry (a deploy that was
//! killed) is taken over; `cargo xtask unlock` removes one by hand.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ssm::types::{ParameterType, Tag};
use serde::{Deserialize, Serialize};

use super::environment::{Environment, ENV_TAG};
use crate::aws::{code, explain, Aws};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub owner: String,
    /// Seconds since the Unix epoch.
    pub taken: u64,
    pub expires: u64,
}

/// A lock this process holds; [`Lock::release`] gives it back.
pub struct Lock {
    name: String,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `user@host pid N`, to tell who holds a lock.
pub fn whoami() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("GITHUB_ACTOR")).unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{user}@{host} pid {}", std::process::id())
}

fn parameter(environment: &Environment) -> String {
    environment.parameter("deploy/lock")
}

impl Lock {
    pub async fn take(aws: &Aws, environment: &Environment) -> anyhow::Result<Lock> {
        let name = parameter(environment);
        let holder =
            Holder { owner: whoami(), taken: now(), expires: now() + u64::from(environment.deploy.lock_minutes) * 60 };
        // Two tries: the second after removing an expired lock.
        for _ in 0..2 {
            if create(aws, environment, &name, &holder).await? {
                return Ok(Lock { name });
            }
            match read(aws, environment).await? {
                Some(other) if other.expires > now() => anyhow::bail!(
                    "environment {} is being deployed by {} (lock taken {} s ago, expires in {} s); wait, or if \
                     that deploy is dead: cargo xtask unlock --env {}",
                    environment.name,
                    other.owner,
                    now().saturating_sub(other.taken),
                    other.expires - now(),
                    environment.name
                ),
                Some(other) => {
                    eprintln!("xtask: taking over the expired deploy lock of {}", other.owner);
                    delete(aws, &name).await?;
                }
                None => {}
            }
        }
        anyhow::bail!("could not take the deploy lock {name}: another deploy keeps taking it")
    }

    pub async fn release(self, aws: &Aws) -> anyhow::Result<()> {
        delete(aws, &self.name).await
    }
}

/// Creates the parameter; false when it exists already.
async fn create(aws: &Aws, environment: &Environment, name: &str, holder: &Holder) -> anyhow::Result<bool> {
    let tag = Tag::builder().key(ENV_TAG).value(&environment.name).build()?;
    let created = aws
        .ssm
        .put_parameter()
        .name(name)
        .r#type(ParameterType::String)
        .value(serde_json::to_string(holder)?)
        .description("netsec deploy lock (cargo xtask unlock removes it)")
        .tags(tag)
        .send()
        .await;
    match created {
        Ok(_) => Ok(true),
        Err(e) if code(&e) == Some("ParameterAlreadyExists") => Ok(false),
        Err(e) => Err(explain(e, "ssm:PutParameter", name)),
    }
}

/// Who holds the environment's lock, if anyone.
pub async fn read(aws: &Aws, environment: &Environment) -> anyhow::Result<Option<Holder>> {
    let name = parameter(environment);
    let Some(value) = aws.parameter(&name).await? else {
        return Ok(None);
    };
    // Unreadable: someone else's parameter; treat it as held until a person looks.
    Ok(Some(serde_json::from_str(&value).unwrap_or(Holder {
        owner: format!("unknown ({value})"),
        taken: 0,
        expires: u64::MAX,
    })))
}

async fn delete(aws: &Aws, name: &str) -> anyhow::Result<()> {
    match aws.ssm.delete_parameter().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some("ParameterNotFound") => Ok(()),
        Err(e) => Err(explain(e, "ssm:DeleteParameter", name)),
    }
}

/// `cargo xtask unlock`: removes the lock whoever holds it; says whose it was.
pub async fn unlock(aws: &Aws, environment: &Environment) -> anyhow::Result<()> {
    match read(aws, environment).await? {
        Some(holder) => {
            delete(aws, &parameter(environment)).await?;
            println!(
                "removed the deploy lock of {} (taken {} s ago)",
                holder.owner,
                now().saturating_sub(holder.taken)
            );
        }
        None => println!("environment {} is not locked", environment.name),
    }
    Ok(())
}
