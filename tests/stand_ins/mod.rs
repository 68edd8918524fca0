//! Helpers of the tests that talk to the local stand-ins `cargo xtask test` starts (SecantusDB
//! for MongoDB, moto for S3, Azurite for Azure Blob Storage). A test whose service is not there fails, saying how to start it:
//! it never passes without having run.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use mongodb::bson::Document;
use netsec::store::azure::{Account, AzureContainer};
use netsec::store::s3::client::S3;

/// The grid of these tests: one decision tree, enough to compare two runs.
pub const ONE_TREE: &str = "{decision_tree: {criterion: [gini]}}";

/// A variable the harness sets; a clear failure when it is not set.
pub fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `cargo xtask test`, which starts the local services they need")
    })
}

/// The MongoDB stand-in's URI, with its user and password.
pub fn mongodb_uri() -> String {
    required("NETSEC_TEST_MONGODB_URI")
}

/// The password in the stand-in's URI, decoded, to check that it is never printed.
pub fn mongodb_password() -> &'static str {
    "t3st:p@ss/w0rd"
}

/// The Azurite account's connection string, key included.
pub fn azure_connection_string() -> String {
    required("NETSEC_TEST_AZURE_CONNECTION_STRING")
}

/// A connection string for the Azurite account with an account SAS (blob service; container and
/// object resources; read, write, delete, list, add, create) expiring at `expiry` (ISO 8601),
/// signed as "Create an account SAS" (version 2020-12-06 and later) says.
pub fn azure_sas_connection_string(expiry: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let connection = azure_connection_string();
    let field = |name: &str| connection.split(';').find_map(|p| p.strip_prefix(name)).unwrap().to_string();
    let (account, key, endpoint) = (field("AccountName="), field("AccountKey="), field("BlobEndpoint="));
    let (version, permissions) = ("2024-11-04", "rwdlac");
    let text = [account.as_str(), permissions, "b", "co", "", expiry, "", "https,http", version, "", ""].join("\n");
    let key = base64::engine::general_purpose::STANDARD.decode(key).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(text.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let signature: String =
        percent_encoding::utf8_percent_encode(&signature, percent_encoding::NON_ALPHANUMERIC).to_string();
    let sas = format!("sv={version}&ss=b&srt=co&sp={permissions}&se={expiry}&spr=https,http&sig={signature}");
    format!("AccountName={account};BlobEndpoint={endpoint};SharedAccessSignature={sas}")
}

/// A new container on the Azurite stand-in.
pub fn azure_container(name: &str) -> AzureContainer {
    let account = Account::from_connection_string(&azure_connection_string()).unwrap();
    let container = AzureContainer::new(account, name).unwrap();
    container.create().unwrap();
    container
}

pub fn s3_endpoint() -> String {
    required("NETSEC_TEST_S3_ENDPOINT")
}

/// A name no other test (or earlier run against the same server) uses: lowercase, so it
/// is a valid bucket name too.
pub fn unique(stem: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 1_000_000_000;
    format!("{stem}-{}-{millis}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The netsec binary in `dir` with one tree, pointed at the stand-ins (S3 through
/// AWS_ENDPOINT_URL, as a user would), with a short MongoDB timeout.
pub fn netsec(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_netsec"));
    command.current_dir(dir).args(args).env("NETSEC_TRAIN_MODELS", ONE_TREE).env("NETSEC_MONGO_TIMEOUT_SECONDS", "5");
    // Always the stand-in: without it these tests would talk to AWS itself.
    command.env("AWS_ENDPOINT_URL", s3_endpoint()).env("AWS_EC2_METADATA_DISABLED", "true");
    command.env("AZURE_STORAGE_CONNECTION_STRING", azure_connection_string());
    command
}

/// Runs a command and asserts that it succeeded.
pub fn succeed(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?} failed:\n{}", text(&output.stderr));
    output
}

/// Runs a command that must fail with `code`; returns its stderr.
pub fn fail(command: &mut Command, code: i32) -> String {
    let output = command.output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{command:?}:\n{stderr}");
    stderr
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An S3 client on the stand-in, for setting up and inspecting buckets.
pub fn s3() -> S3 {
    S3::connect_to(Some(&s3_endpoint())).unwrap()
}

pub fn create_bucket(s3: &S3, bucket: &str) {
    s3.block_on(s3.client.create_bucket().bucket(bucket).send()).unwrap();
}

/// Runs `work` with a client of the MongoDB stand-in.
pub fn with_mongodb<T>(work: impl AsyncFnOnce(&mongodb::Client) -> T) -> T {
    netsec::source::mongo::client::block_on(async {
        let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
        work(&client).await
    })
    .unwrap()
}

/// Inserts documents into `database.collection`.
pub fn insert(database: &str, collection: &str, documents: Vec<Document>) {
    with_mongodb(async |client| {
        client.database(database).collection::<Document>(collection).insert_many(documents).await.unwrap();
    });
}

pub fn count(database: &str, collection: &str) -> u64 {
    with_mongodb(async |client| {
        client.database(database).collection::<Document>(collection).count_documents(Document::new()).await.unwrap()
    })
}

pub fn collection_names(database: &str) -> Vec<String> {
    with_mongodb(async |client| client.database(database).list_collection_names().await.unwrap())
}
