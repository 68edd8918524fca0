//! What the MongoDB source and `netsec load-data` share: where the URI comes from, how it is
//! shown (never with its password), connecting with a bounded wait, and turning the driver's
//! errors into messages that say what to do.

use std::time::Duration;

use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::config::MongoConfig;
use crate::error::InputError;

/// The environment variables a URI is taken from when none is given, in order: the usual
/// name, then the Python original's.
pub const URI_VARIABLES: [&str; 2] = ["MONGODB_URI", "MONGO_DB_URL"];

/// Whether a `--source` value names a MongoDB server.
pub fn is_uri(spec: &str) -> bool {
    spec.starts_with("mongodb://") || spec.starts_with("mongodb+srv://")
}

/// The URI given on the command line, else the first of [`URI_VARIABLES`] that is set.
pub fn resolve_uri(given: Option<&str>) -> Result<String, InputError> {
    let from_env = || URI_VARIABLES.iter().find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let uri = given.map(str::to_string).or_else(from_env).ok_or_else(|| {
        InputError::new("no MongoDB URI").hint(format!("pass --uri, or set {}", URI_VARIABLES.join(" or ")))
    })?;
    if !is_uri(&uri) {
        return Err(InputError::new(format!("`{}` is not a MongoDB URI", redact(&uri)))
            .hint("MongoDB URIs start with mongodb:// or mongodb+srv://"));
    }
    Ok(uri)
}

/// Where the user name and password of a URI are: the text between the scheme and the last
/// `@` before the options (a password may hold an unescaped `/` or `@`).
fn credentials_span(uri: &str) -> Option<(usize, usize)> {
    let start = uri.find("://")? + 3;
    let end = uri[start..].find('?').map_or(uri.len(), |i| start + i);
    let at = uri[start..end].rfind('@')? + start;
    Some((start, at))
}

/// The URI with its password replaced by `****`, for every message and log line.
pub fn redact(uri: &str) -> String {
    let Some((start, at)) = credentials_span(uri) else { return uri.to_string() };
    match uri[start..at].split_once(':') {
        Some((user, _password)) => format!("{}{user}:****{}", &uri[..start], &uri[at..]),
        None => uri.to_string(),
    }
}

/// The user name of a URI, for messages.
fn user(uri: &str) -> Option<String> {
    let (start, at) = credentials_span(uri)?;
    let user = uri[start..at].split(':').next()?;
    Some(crate::percent_decode(user))
}

/// `text` with the URI's password removed, in both its written and its decoded forms: the
/// driver's messages are shown to people, and nothing promises they never echo it.
pub fn scrub(text: &str, uri: &str) -> String {
    let Some((start, at)) = credentials_span(uri) else { return text.to_string() };
    let Some((_, password)) = uri[start..at].split_once(':') else { return text.to_string() };
    let mut text = text.to_string();
    for form in [password.to_string(), crate::percent_decode(password)] {
        if !form.is_empty() {
            text = text.replace(&form, "****");
        }
    }
    text
}

/// A collection on a server, as the settings name it.
#[derive(Clone)]
pub struct Target {
    /// The URI with its credentials: never shown, see [`Target::server`].
    uri: String,
    pub database: String,
    pub collection: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({} {}.{})", self.server(), self.database, self.collection)
    }
}

impl Target {
    pub fn new(uri: String, settings: &MongoConfig) -> Target {
        Target {
            uri,
            database: settings.database.clone(),
            collection: settings.collection.clone(),
            timeout: Duration::from_secs_f64(settings.timeout_seconds),
        }
    }

    /// The server, without the password.
    pub fn server(&self) -> String {
        redact(&self.uri)
    }

    /// `database.collection`, as MongoDB names a collection.
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.database, self.collection)
    }

    /// Connects, waiting at most the configured timeout for the URI's DNS records.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let parse = ClientOptions::parse(&self.uri);
        let mut options = match tokio::time::timeout(self.timeout, parse).await {
            Ok(parsed) => parsed.map_err(|e| self.explain(e))?,
            Err(_) => anyhow::bail!("resolving {} took longer than {:?}", self.server(), self.timeout),
        };
        options.server_selection_timeout = Some(self.timeout);
        options.connect_timeout = Some(self.timeout);
        options.app_name = Some("netsec".into());
        Client::with_options(options).map_err(|e| self.explain(e))
    }

    /// The names of the database's collections; an error saying so when the database does not
    /// exist (MongoDB lists no database without collections). This is the first round trip,
    /// so an unreachable server or refused credentials are reported from here.
    pub async fn collections(&self, client: &Client) -> anyhow::Result<Vec<String>> {
        let names = client.database(&self.database).list_collection_names().await.map_err(|e| self.explain(e))?;
        if names.is_empty() {
            return Err(InputError::new(format!("database `{}` does not exist on {}", self.database, self.server()))
                .hint("check the database name (--database or mongo.database), or load the data with netsec load-data")
                .into());
        }
        Ok(names)
    }

    /// A driver error as a message that names the server (without its password), the
    /// timeout when it matters, and what to do.
    pub fn explain(&self, error: mongodb::error::Error) -> anyhow::Error {
        let detail = scrub(&error.to_string(), &self.uri);
        let server = self.server();
        match error.kind.as_ref() {
            ErrorKind::ServerSelection { .. } => anyhow::anyhow!(
                "cannot reach the MongoDB server {server} within {:?} (mongo.timeout_seconds): {detail}\n  \
                 hint: check that the server is running and its host and port; a slow network needs a longer \
                 mongo.timeout_seconds (NETSEC_MONGO_TIMEOUT_SECONDS)",
                self.timeout
            ),
            ErrorKind::Authentication { .. } => {
                let user = user(&self.uri).unwrap_or_default();
                InputError::new(format!("MongoDB authentication failed for user `{user}` on {server}: {detail}"))
                    .hint("check the user name and password in the URI (and authSource, the database the user is defined in)")
                    .into()
            }
            ErrorKind::Command(command) if command.code == 13 => {
                InputError::new(format!("MongoDB refused an operation on {server}: {detail}"))
                    .hint("give credentials in the URI (mongodb://user:password@host/), for a user allowed to read and write the collection")
                    .into()
            }
            ErrorKind::InvalidArgument { .. } | ErrorKind::DnsResolve { .. } => {
                InputError::new(format!("bad MongoDB URI {server}: {detail}")).into()
            }
            _ => anyhow::anyhow!("MongoDB {server}: {detail}"),
        }
    }
}

/// A runtime for one blocking call into the async driver. The sources and the store are
/// synchronous, and may be called from a blocking thread of the service's runtime, where
/// a runtime of their own is allowed.
pub fn block_on<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_scrubbed_in_every_form() {
        let uri = "mongodb://netsec:p%40ss%2Fw0rd@db1:27017,db2/?authSource=admin";
        assert_eq!(redact(uri), "mongodb://netsec:****@db1:27017,db2/?authSource=admin");
        assert_eq!(user(uri).as_deref(), Some("netsec"));
        assert_eq!(scrub("bad p@ss/w0rd and p%40ss%2Fw0rd", uri), "bad **** and ****");
        assert_eq!(redact("mongodb+srv://a:b@c/d?x=@y"), "mongodb+srv://a:****@c/d?x=@y");
        assert_eq!(redact("mongodb://host:27017/db"), "mongodb://host:27017/db");
        assert_eq!(redact("mongodb://x509user@host/"), "mongodb://x509user@host/");
        // An unescaped `@` or `/` in the password still hides all of it.
        assert_eq!(redact("mongodb://u:a/b@c@host/db"), "mongodb://u:****@host/db");
    }

    #[test]
    fn the_uri_comes_from_the_flag_first() {
        assert_eq!(resolve_uri(Some("mongodb://h/")).unwrap(), "mongodb://h/");
        let error = resolve_uri(Some("http://u:secret@h/")).unwrap_err().to_string();
        assert!(error.contains("not a MongoDB URI") && !error.contains("secret"), "{error}");
    }
}
